"""worker pools: the pool a job goes to and the node that runs it; a worker's pool and devices

Existing jobs and workers are in the default pool (NULL), as they were; a worker row's devices
start empty and are filled by its next heartbeat.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 20:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("pool", sa.String(length=64), nullable=True))
    op.add_column("jobs", sa.Column("node_id", sa.String(length=200), nullable=True))
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pool", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("devices", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.alter_column("devices", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_column("devices")
        batch_op.drop_column("pool")
    # In place (SQLite 3.35+ drops a column itself): a batch would copy jobs into a new table,
    # and dropping the old one trips the foreign keys of job_metrics and job_events.
    op.drop_column("jobs", "node_id")
    op.drop_column("jobs", "pool")

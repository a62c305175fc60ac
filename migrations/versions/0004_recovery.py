"""recovery: when a job's message was sent, draining workers, the reaper's leader lock

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 00:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("enqueued_at", app.models.base.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("draining", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.alter_column("draining", server_default=None)
    op.create_table(
        "leader_locks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leader_locks")),
    )


def downgrade() -> None:
    op.drop_table("leader_locks")
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_column("draining")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("enqueued_at")

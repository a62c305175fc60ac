"""checkpoint pointers: the job's kept checkpoints in the artifact store, with their sha256

A checkpoint is read only through this pointer, which the attempt commits with its epoch's
metrics after the object is stored: nothing half-written is ever resumed from, on any host.
Jobs from before start with none (NULL): one still running resumes from its first epoch.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("checkpoints", sa.JSON(), nullable=True))


def downgrade() -> None:
    # In place, as 0008's downgrade: a batch copy of jobs trips its children's foreign keys.
    op.drop_column("jobs", "checkpoints")

"""dataset names unique per project: a second upload of a name is a 409

Datasets that already share a name: the oldest keeps it, each later one is renamed to
'<name>-<first 8 characters of its id>' (the whole id if a user chose that name), so no
row is lost, no name a user chose is taken from them, and jobs (which name datasets by id)
are untouched.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

datasets = sa.table(
    "datasets",
    sa.column("id", sa.String),
    sa.column("project", sa.String),
    sa.column("name", sa.String),
    sa.column("created_at", sa.DateTime),
)


def upgrade() -> None:
    conn = op.get_bind()
    order = (datasets.c.created_at, datasets.c.id)
    rows = conn.execute(
        sa.select(datasets.c.id, datasets.c.project, datasets.c.name).order_by(*order)
    ).all()
    taken = {(project, name) for _, project, name in rows}  # never renamed onto a user's name
    kept: set[tuple[str, str]] = set()
    for dataset_id, project, name in rows:
        if (project, name) not in kept:
            kept.add((project, name))
            continue
        renamed = f"{name[:91]}-{dataset_id[:8]}"
        if (project, renamed) in taken:
            renamed = f"{name[:63]}-{dataset_id}"
        taken.add((project, renamed))
        conn.execute(datasets.update().where(datasets.c.id == dataset_id).values(name=renamed))
    op.create_index("uq_datasets_project_name", "datasets", ["project", "name"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_datasets_project_name", table_name="datasets")

"""base models: pretrained Hugging Face folders per project (or shared by the operator), and
the base a fine-tuned version was built on

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.base

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "base_models",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("folder", sa.String(length=500), nullable=False),
        sa.Column("family", sa.String(length=16), nullable=False),
        sa.Column("model_type", sa.String(length=64), nullable=False),
        sa.Column("parameters", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", app.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_base_models")),
        sa.UniqueConstraint("project", "name", name=op.f("uq_base_models_project_name")),
    )
    op.create_table(
        "version_bases",
        sa.Column("version_id", sa.String(length=36), nullable=False),
        sa.Column("base_model_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["base_model_id"],
            ["base_models.id"],
            name=op.f("fk_version_bases_base_model_id_base_models"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name=op.f("fk_version_bases_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_version_bases")),
    )
    with op.batch_alter_table("version_bases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_version_bases_base_model_id"), ["base_model_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("version_bases")
    op.drop_table("base_models")

"""registry per project: models keyed by (project, name), version ids that are never reused,
version numbers from a counter that never goes down, aliases that point at a version's row;
workers advertise their concurrency

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00.000000

Existing data moves to the new keys: each model keeps its project and name and gets an id;
each version gets a UUID; each model's counter starts at its highest version, so numbers of
versions deleted before this migration are not handed out again either (the highest ones, at
least: the old schema kept no record of deleted numbers above the current maximum).
"""

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import app.models.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = app.models.base.UTCDateTime(timezone=True)
VERSION_COLUMNS = (
    "version",
    "job_id",
    "task",
    "spec",
    "dataset",
    "metrics",
    "classes",
    "input_shape",
    "checkpoint_path",
    "checkpoint_sha256",
    "created_at",
)


def upgrade() -> None:
    models, versions, aliases = _read_old()
    op.drop_table("model_aliases")
    op.drop_table("model_versions")
    op.drop_table("models")
    new_models, new_versions, new_aliases = _create_new()
    ids = {m["name"]: str(uuid.uuid4()) for m in models}
    latest: dict[str, int] = {}
    for v in versions:
        latest[v["model_name"]] = max(latest.get(v["model_name"], 0), v["version"])
    op.bulk_insert(
        new_models,
        [
            {
                "id": ids[m["name"]],
                "project": m["project"],
                "name": m["name"],
                "last_version": latest.get(m["name"], 0),
                "created_at": m["created_at"],
            }
            for m in models
        ],
    )
    version_ids = {(v["model_name"], v["version"]): str(uuid.uuid4()) for v in versions}
    op.bulk_insert(
        new_versions,
        [
            {
                "id": version_ids[(v["model_name"], v["version"])],
                "model_id": ids[v["model_name"]],
                **{c: v[c] for c in VERSION_COLUMNS},
            }
            for v in versions
        ],
    )
    op.bulk_insert(
        new_aliases,
        [
            {
                "model_id": ids[a["model_name"]],
                "alias": a["alias"],
                "version_id": version_ids[(a["model_name"], a["version"])],
                "updated_at": a["updated_at"],
            }
            for a in aliases
            if (a["model_name"], a["version"]) in version_ids  # the old schema allowed dangling
        ],
    )
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("concurrency", sa.Integer(), nullable=False, server_default="1")
        )
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.alter_column("concurrency", server_default=None)


def _select(table: str, columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of `table`, read through the column types (JSON, UTC datetimes) as the ORM
    reads them."""
    query = sa.select(sa.table(table, *(sa.column(name, kind) for name, kind in columns.items())))
    return [dict(row._mapping) for row in op.get_bind().execute(query)]


def _version_columns() -> dict[str, Any]:
    json = ("spec", "dataset", "metrics", "classes", "input_shape")
    kinds = {c: sa.JSON() if c in json else sa.String() for c in VERSION_COLUMNS}
    return kinds | {"version": sa.Integer(), "created_at": UTC}


def _read_old() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    models = _select("models", {"name": sa.String(), "project": sa.String(), "created_at": UTC})
    versions = _select("model_versions", {"model_name": sa.String(), **_version_columns()})
    aliases = _select(
        "model_aliases",
        {
            "model_name": sa.String(),
            "alias": sa.String(),
            "version": sa.Integer(),
            "updated_at": UTC,
        },
    )
    return models, versions, aliases


def _create_new() -> tuple[sa.Table, sa.Table, sa.Table]:
    models = op.create_table(
        "models",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("project", "name", name=op.f("uq_models_project_name")),
    )
    versions = op.create_table(
        "model_versions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("model_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("task", sa.String(length=32), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("dataset", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=True),
        sa.Column("input_shape", sa.JSON(), nullable=False),
        sa.Column("checkpoint_path", sa.String(length=500), nullable=False),
        sa.Column("checkpoint_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_model_versions_job_id_jobs")
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_model_versions_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("job_id", name=op.f("uq_model_versions_job_id")),
        sa.UniqueConstraint("model_id", "version", name=op.f("uq_model_versions_model_id_version")),
    )
    aliases = op.create_table(
        "model_aliases",
        sa.Column("model_id", sa.String(length=36), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.String(length=36), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_model_aliases_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name=op.f("fk_model_aliases_version_id_model_versions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("model_id", "alias", name=op.f("pk_model_aliases")),
    )
    return models, versions, aliases


def downgrade() -> None:
    """Back to names that are global: refused if two projects have a model of one name.
    Version ids and counters are dropped (the old schema has neither)."""
    models = {
        m["id"]: m
        for m in _select(
            "models",
            {"id": sa.String(), "name": sa.String(), "project": sa.String(), "created_at": UTC},
        )
    }
    names = [m["name"] for m in models.values()]
    if len(names) != len(set(names)):
        raise RuntimeError("two projects have a model of the same name; cannot downgrade")
    versions = _select(
        "model_versions", {"id": sa.String(), "model_id": sa.String(), **_version_columns()}
    )
    aliases = _select(
        "model_aliases",
        {
            "model_id": sa.String(),
            "alias": sa.String(),
            "version_id": sa.String(),
            "updated_at": UTC,
        },
    )
    numbers = {v["id"]: v["version"] for v in versions}
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_column("concurrency")
    op.drop_table("model_aliases")
    op.drop_table("model_versions")
    op.drop_table("models")
    old_models, old_versions, old_aliases = _create_old()
    op.bulk_insert(
        old_models,
        [
            {"name": m["name"], "project": m["project"], "created_at": m["created_at"]}
            for m in models.values()
        ],
    )
    op.bulk_insert(
        old_versions,
        [
            {"model_name": models[v["model_id"]]["name"], **{c: v[c] for c in VERSION_COLUMNS}}
            for v in versions
        ],
    )
    op.bulk_insert(
        old_aliases,
        [
            {
                "model_name": models[a["model_id"]]["name"],
                "alias": a["alias"],
                "version": numbers[a["version_id"]],
                "updated_at": a["updated_at"],
            }
            for a in aliases
        ],
    )


def _create_old() -> tuple[sa.Table, sa.Table, sa.Table]:
    models = op.create_table(
        "models",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("project", sa.String(length=100), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_models")),
    )
    aliases = op.create_table(
        "model_aliases",
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_name"],
            ["models.name"],
            name=op.f("fk_model_aliases_model_name_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_name", "alias", name=op.f("pk_model_aliases")),
    )
    versions = op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("task", sa.String(length=32), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("dataset", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=True),
        sa.Column("input_shape", sa.JSON(), nullable=False),
        sa.Column("checkpoint_path", sa.String(length=500), nullable=False),
        sa.Column("checkpoint_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_model_versions_job_id_jobs")
        ),
        sa.ForeignKeyConstraint(
            ["model_name"],
            ["models.name"],
            name=op.f("fk_model_versions_model_name_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("job_id", name=op.f("uq_model_versions_job_id")),
        sa.UniqueConstraint(
            "model_name", "version", name=op.f("uq_model_versions_model_name_version")
        ),
    )
    return models, versions, aliases

"""Alembic owns the schema: it upgrades, downgrades and upgrades again on PostgreSQL, and the
migrations produce exactly the tables the ORM models declare."""

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.orm import Session

from app.core.db import make_engine
from app.core.errors import NotFound
from app.core.migrate import downgrade, upgrade
from app.models import Base, Job
from app.services import registry
from tests.support import pg_database

TABLES = {
    "api_keys",
    "jobs",
    "job_metrics",
    "job_events",
    "models",
    "model_versions",
    "model_aliases",
    "datasets",
    "workers",
    "leader_locks",
    "base_models",
    "version_bases",
}


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_on_postgres() -> None:
    with pg_database() as url:
        upgrade(url)
        assert _tables(url) == TABLES
        downgrade(url, "base")
        assert _tables(url) == set()
        upgrade(url)
        assert _tables(url) == TABLES


def test_migrations_match_the_models(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


@pytest.fixture(params=["postgresql", "sqlite"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at revision 0004 (the registry before projects) holding a registry."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        _fill_0004(url)
        yield url
        return
    with pg_database() as url:
        _fill_0004(url)
        yield url


def _fill_0004(url: str) -> None:
    upgrade(url, "0004")
    engine = make_engine(url)
    # as each backend's UTC column stores it
    stamp = "2026-11-30 12:00:00.000000" + ("+00:00" if url.startswith("postgresql") else "")
    with engine.begin() as conn:
        for job, model, project in [
            ("j1", "churn", "shop"),
            ("j2", "churn", "shop"),
            ("j3", "fraud", "bank"),
        ]:
            conn.execute(
                text(
                    "INSERT INTO jobs (id, model_name, project, status, spec, attempt, "
                    "max_attempts, cancel_requested, progress, metrics, report, created_at, "
                    "updated_at) VALUES (:id, :m, :p, 'succeeded', '{}', 1, 3, false, '{}', "
                    "'{}', '{}', :t, :t)"
                ),
                {"id": job, "m": model, "p": project, "t": stamp},
            )
        for model, project in [("churn", "shop"), ("fraud", "bank")]:
            conn.execute(
                text("INSERT INTO models (name, project, created_at) VALUES (:n, :p, :t)"),
                {"n": model, "p": project, "t": stamp},
            )
        # churn's version 2 was deleted before the migration
        for job, model, version in [("j1", "churn", 1), ("j2", "churn", 3), ("j3", "fraud", 1)]:
            conn.execute(
                text(
                    "INSERT INTO model_versions (model_name, version, job_id, task, spec, "
                    "dataset, metrics, classes, input_shape, checkpoint_path, "
                    "checkpoint_sha256, created_at) VALUES (:m, :v, :j, 'classification', "
                    "'{}', '{}', '{\"val_accuracy\": 0.9}', '[\"a\", \"b\"]', '[2]', :path, "
                    ":sha, :t)"
                ),
                {
                    "m": model,
                    "v": version,
                    "j": job,
                    "path": f"jobs/{job}/m",
                    "sha": job * 32,
                    "t": stamp,
                },
            )
        conn.execute(
            text(
                "INSERT INTO model_aliases (model_name, alias, version, updated_at) "
                "VALUES ('churn', 'production', 1, :t)"
            ),
            {"t": stamp},
        )
    engine.dispose()


def test_the_migration_moves_the_registry_to_project_keys(old_database: str) -> None:
    upgrade(old_database)
    engine = make_engine(old_database)
    try:
        with Session(engine) as session:
            churn = registry.get_model(session, "shop", "churn")
            assert churn.last_version == 3  # a number deleted before stays given out
            numbers = [v.version for v in registry.versions(session, churn)]
            assert numbers == [1, 3]
            assert registry.aliases(session, churn) == {"production": 1}
            assert registry.resolve(session, "shop", "churn", None).job_id == "j1"
            version = registry.get_version(session, "shop", "churn", 3)
            assert version.metrics == {"val_accuracy": 0.9} and version.classes == ["a", "b"]
            assert version.checkpoint_sha256 == "j2" * 32 and len(version.id) == 36
            assert registry.get_model(session, "bank", "fraud").last_version == 1
            with pytest.raises(NotFound):
                registry.get_model(session, "bank", "churn")
        with Session(engine) as session, session.begin():
            job = Job(id="j4", model_name="churn", project="shop", spec={}, progress={}, metrics={})
            session.add(job)
            session.flush()
            new = registry.register_version(
                session,
                project="shop",
                model_name="churn",
                job_id="j4",
                task="classification",
                spec={},
                dataset={},
                metrics={},
                classes=None,
                input_shape=[2],
                checkpoint_path="jobs/j4/m",
                checkpoint_sha256="0" * 64,
            )
            assert new.version == 4
    finally:
        engine.dispose()
    downgrade(old_database, "0004")  # and back, when no two projects share a name
    engine = make_engine(old_database)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT model_name, version FROM model_versions ORDER BY model_name, version")
            ).all()
            alias = conn.execute(text("SELECT model_name, alias, version FROM model_aliases")).one()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("churn", 1), ("churn", 3), ("churn", 4), ("fraud", 1)]
    assert tuple(alias) == ("churn", "production", 1)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_datasets_that_shared_a_name_keep_every_row_under_names_of_their_own(
    backend: str, tmp_path: Path
) -> None:
    """0007 makes dataset names unique per project: the oldest keeps its name, the later ones
    are renamed after their ids, and never onto a name a user had already chosen."""
    with contextlib.ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'names.db'}"
            if backend == "sqlite"
            else stack.enter_context(pg_database())
        )
        upgrade(url, "0006")
        engine = make_engine(url)
        rows = [
            ("aaaaaaaa-1", "shop", "houses", "2026-11-01"),
            ("bbbbbbbb-2", "shop", "houses", "2026-11-02"),
            ("cccccccc-3", "shop", "houses-bbbbbbbb", "2026-11-03"),
            ("dddddddd-4", "shop", "houses", "2026-11-04"),
            ("eeeeeeee-5", "bank", "houses", "2026-11-05"),
        ]
        suffix = "+00:00" if backend == "postgresql" else ""
        with engine.begin() as conn:
            for dataset_id, project, name, day in rows:
                conn.execute(
                    text(
                        "INSERT INTO datasets (id, name, project, format, kind, task, schema, "
                        "file_path, sha256, size_bytes, created_at) VALUES (:id, :n, :p, "
                        "'csv', 'tabular', 'classification', '{}', 'x', 'y', 1, :t)"
                    ),
                    {"id": dataset_id, "n": name, "p": project, "t": f"{day} 00:00:00{suffix}"},
                )
        engine.dispose()
        upgrade(url)
        engine = make_engine(url)
        with engine.connect() as conn:
            names = {i: n for i, n in conn.execute(text("SELECT id, name FROM datasets"))}
        engine.dispose()
        assert names == {
            "aaaaaaaa-1": "houses",
            "bbbbbbbb-2": "houses-bbbbbbbb-2",
            "cccccccc-3": "houses-bbbbbbbb",
            "dddddddd-4": "houses-dddddddd",
            "eeeeeeee-5": "houses",
        }
        downgrade(url, "0006")


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_worker_pools_migrate_up_and_down_keeping_jobs_and_workers(
    backend: str, tmp_path: Path
) -> None:
    """0008: jobs and workers from before are in the default pool (NULL), a worker's devices
    start empty until its next heartbeat; downgraded, the rows stay and the columns go."""
    with contextlib.ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'pools.db'}"
            if backend == "sqlite"
            else stack.enter_context(pg_database())
        )
        upgrade(url, "0007")
        stamp = "2026-11-30 12:00:00" + ("+00:00" if backend == "postgresql" else "")
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO jobs (id, model_name, project, status, spec, attempt, "
                    "max_attempts, cancel_requested, progress, metrics, report, created_at, "
                    "updated_at) VALUES ('j1', 'm', 'default', 'queued', '{}', 0, 3, false, "
                    "'{}', '{}', '{}', :t, :t)"
                ),
                {"t": stamp},
            )
            conn.execute(
                text(
                    "INSERT INTO workers (id, hostname, cuda_devices, concurrency, draining, "
                    "started_at, last_seen) VALUES ('h:1', 'h', 0, 2, false, :t, :t)"
                ),
                {"t": stamp},
            )
        engine.dispose()
        upgrade(url)
        engine = make_engine(url)
        with engine.connect() as conn:
            job = conn.execute(text("SELECT pool, node_id FROM jobs")).one()
            worker = conn.execute(text("SELECT pool, devices, concurrency FROM workers")).one()
        engine.dispose()
        assert tuple(job) == (None, None)
        devices = worker.devices if backend == "postgresql" else json.loads(worker.devices)
        assert (worker.pool, devices, worker.concurrency) == (None, [], 2)
        downgrade(url, "0007")
        engine = make_engine(url)
        try:
            columns = {c["name"] for c in inspect(engine).get_columns("jobs")}
            assert {"pool", "node_id"}.isdisjoint(columns)
            assert "devices" not in {c["name"] for c in inspect(engine).get_columns("workers")}
            with engine.connect() as conn:
                assert conn.scalar(text("SELECT count(*) FROM jobs")) == 1
                assert conn.scalar(text("SELECT count(*) FROM workers")) == 1
        finally:
            engine.dispose()

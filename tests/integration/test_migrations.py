"""Alembic owns the schema: it upgrades, downgrades and upgrades again on PostgreSQL, and the
migrations produce exactly the tables the ORM models declare."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.core.migrate import downgrade, upgrade
from app.models import Base
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

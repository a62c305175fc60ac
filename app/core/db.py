"""Engine and session scope. The caller of a service owns the transaction."""

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Engine,
    Executable,
    create_engine,
    event,
    func,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from app.core.config import get_settings
from app.models.base import UTCDateTime, utcnow


def make_engine(url: str, pool_size: int = 10, max_overflow: int = 20) -> Engine:
    if url.startswith("sqlite"):
        # API and workers are separate processes writing one file: WAL + a busy timeout.
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    return make_engine(settings.db_url, settings.db_pool_size, settings.db_max_overflow)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def execute_update(session: Session, statement: Executable) -> int:
    """Run a guarded UPDATE and return how many rows it changed (0: the guard did not match)."""
    result = cast(CursorResult[Any], session.execute(statement))
    return result.rowcount


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def db_now(session: Session, plus_s: float = 0.0) -> ColumnElement[datetime]:
    """The database's clock (+ plus_s), for leases judged across hosts: every host compares
    against one clock, not its own. SQLite lives on one host, so there it is this host's."""
    if _dialect(session) == "postgresql":
        now = func.now()  # the transaction's start; ours are short
        return now + timedelta(seconds=plus_s) if plus_s else now
    return literal(utcnow() + timedelta(seconds=plus_s), UTCDateTime())


def serialize(session: Session, name: str) -> None:
    """Hold the lock called `name` until this transaction ends, so transactions that take it
    run their next statements one after another. PostgreSQL: a transaction-level advisory
    lock. SQLite: nothing to take, once the transaction has written (as a caller must have
    by now): a writing transaction holds the whole database until it ends."""
    if _dialect(session) == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        session.execute(select(func.pg_advisory_xact_lock(key)))


def insert_or_ignore(
    session: Session, model: type[DeclarativeBase], values: dict[str, Any], keys: Sequence[str]
) -> bool:
    """INSERT one row unless a row with the same unique `keys` exists: one statement, so two
    requests racing for one key both succeed (the loser inserts nothing). True if inserted."""
    statement = _insert(session, model).values(**values).on_conflict_do_nothing(index_elements=keys)
    key = model.__table__.primary_key.columns  # type: ignore[attr-defined]
    return session.execute(statement.returning(*key)).first() is not None


def upsert(
    session: Session,
    model: type[DeclarativeBase],
    values: dict[str, Any],
    keys: Sequence[str],
    update: Sequence[str],
) -> None:
    """INSERT one row, or UPDATE the `update` columns of the row with the same unique `keys`."""
    statement = _insert(session, model).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=keys, set_={name: statement.excluded[name] for name in update}
    )
    session.execute(statement)


def _insert(session: Session, model: type[DeclarativeBase]) -> Any:
    dialect = postgresql if _dialect(session) == "postgresql" else sqlite
    return dialect.insert(model)

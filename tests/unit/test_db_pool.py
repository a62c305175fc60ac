"""Each process's PostgreSQL connections are bounded by two settings (docs/scaling.md counts
them against the server's max_connections); nothing connects until a session is used."""

import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.core.db import make_engine

URL = "postgresql+psycopg://nobody@127.0.0.1:1/none"


def test_the_pool_is_as_large_as_the_settings_say() -> None:
    settings = Settings(database_url=URL, db_pool_size=3, db_max_overflow=1)
    engine = make_engine(settings.db_url, settings.db_pool_size, settings.db_max_overflow)
    try:
        assert engine.pool.size() == 3
        assert engine.pool._max_overflow == 1  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_a_pool_of_nothing_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="db_pool_size"):
        Settings(db_pool_size=0)
    with pytest.raises(ValidationError, match="db_max_overflow"):
        Settings(db_max_overflow=-1)

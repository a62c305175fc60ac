"""Integration tier: the app in-process against real PostgreSQL and Redis, and real worker
processes. Settings come from the environment exactly as in production."""

import os
import secrets
from collections.abc import Iterator

import pytest
import redis

from app.core import db, queue
from app.core.config import get_settings
from app.core.migrate import upgrade
from tests.support import REDIS_URL, pg_database

ADMIN_KEY = f"ts_{secrets.token_urlsafe(24)}"


def reset_caches() -> None:
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    db.get_sessionmaker.cache_clear()
    queue.producer.cache_clear()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with pg_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def queue_name() -> Iterator[str]:
    name = f"trainserve-test-{secrets.token_hex(4)}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"*{name}*"):
        client.delete(key)


@pytest.fixture(scope="session")
def service_env(
    pg_url: str, queue_name: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return {
        "TRAINSERVE_DATABASE_URL": pg_url,
        "TRAINSERVE_BROKER_URL": REDIS_URL,
        "TRAINSERVE_QUEUE_NAME": queue_name,
        "TRAINSERVE_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "TRAINSERVE_API_KEY": ADMIN_KEY,
    }


@pytest.fixture(scope="session")
def configured(service_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Point this process's Settings at the test database and broker."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("TRAINSERVE_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(service_env)
    reset_caches()
    yield service_env
    for key in service_env:
        os.environ.pop(key, None)
    os.environ.update(saved)
    db.get_engine().dispose()
    reset_caches()

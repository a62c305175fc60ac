"""Integration tier: the app in-process against real PostgreSQL and Redis, and real worker
processes. Settings come from the environment exactly as in production."""

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from app.core import db
from app.core.config import get_settings
from app.core.migrate import upgrade
from app.main import create_app
from app.services import queue
from tests.support import BIN, REDIS_URL, Proc, base_env, pg_database, wait_until

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


@pytest.fixture(scope="session")
def worker(configured: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """One real `trainserve worker` process for the session, on the test database and queue."""
    proc = start_worker(configured, tmp_path_factory.mktemp("worker") / "worker.log")
    yield proc
    proc.stop()


def start_worker(env: dict[str, str], log: Path) -> Proc:
    proc = Proc([str(BIN), "worker"], base_env() | env, log)
    wait_until(lambda: "ready." in proc.output() or not proc.alive(), 90, "the worker to start")
    assert proc.alive(), proc.output()
    return proc


@pytest.fixture(scope="module")
def api(configured: dict[str, str]) -> Iterator[TestClient]:
    """The app in-process, with the admin key."""
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        client.headers.update({"Authorization": f"Bearer {ADMIN_KEY}"})
        yield client


@contextmanager
def settings_env(env: dict[str, str]) -> Iterator[None]:
    """This process's TRAINSERVE_* settings replaced by `env` for a while (engines and the
    producer are built again both ways)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("TRAINSERVE_")}
    db.get_engine().dispose()
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    reset_caches()
    try:
        yield
    finally:
        db.get_engine().dispose()
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)
        reset_caches()


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def backend(
    request: pytest.FixtureRequest,
    configured: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TestClient]:
    """The app in-process with the admin key, on PostgreSQL + Redis, then on the embedded
    default (SQLite, filesystem broker): promises about identity must hold on both."""
    if request.param == "postgresql":
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            client.headers.update({"Authorization": f"Bearer {ADMIN_KEY}"})
            yield client
        return
    embedded = {
        "TRAINSERVE_DATA_DIR": str(tmp_path_factory.mktemp("embedded")),
        "TRAINSERVE_API_KEY": ADMIN_KEY,
    }
    with settings_env(embedded), TestClient(create_app(), raise_server_exceptions=False) as client:
        client.headers.update({"Authorization": f"Bearer {ADMIN_KEY}"})
        yield client

"""The client tier: trainserve_client (clients/python/src, put on sys.path here, as a user's
install would) against a real stack: `trainserve api` on a socket and `trainserve worker`,
on their own PostgreSQL database and Redis queue, for this folder's tests."""

import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SRC = ROOT / "clients" / "python" / "src"
sys.path.insert(0, str(CLIENT_SRC))

from trainserve_client import Client  # noqa: E402

from app.core.migrate import upgrade  # noqa: E402
from tests.integration.conftest import ADMIN_KEY, start_worker  # noqa: E402
from tests.support import (  # noqa: E402
    BIN,
    REDIS_URL,
    Proc,
    base_env,
    free_port,
    pg_database,
    seed_spec,
    wait_http_ok,
)


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    api: Proc
    worker: Proc

    def logs(self) -> str:
        return f"--- api ---\n{self.api.output()[-4000:]}\n--- worker ---\n{self.worker.output()[-4000:]}"


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("client-stack")
    queue = f"trainserve-test-{secrets.token_hex(4)}"
    with pg_database() as db_url:
        upgrade(db_url)
        env = base_env(
            database_url=db_url,
            broker_url=REDIS_URL,
            queue_name=queue,
            data_dir=str(workdir / "data"),
            api_key=ADMIN_KEY,
        )
        port = free_port()
        api = Proc([str(BIN), "api", "--port", str(port)], env, workdir / "api.log")
        worker = start_worker(env, workdir / "worker.log")
        stack = Stack(f"http://127.0.0.1:{port}", env, api, worker)
        try:
            wait_http_ok(f"{stack.url}/readyz", api)
            yield stack
        finally:
            api.stop()
            worker.stop()
            broker = redis.Redis.from_url(REDIS_URL)
            for key in broker.scan_iter(f"*{queue}*"):
                broker.delete(key)


@pytest.fixture(scope="package")
def client(stack: Stack) -> Iterator[Client]:
    with Client(stack.url, ADMIN_KEY) as ts:
        yield ts


@pytest.fixture(scope="package")
def trained(client: Client, stack: Stack) -> dict[str, Any]:
    """A seed job on digits, trained by the real worker: model client-digits, version 1."""
    job = client.jobs.submit(seed_spec("client-digits", epochs=3))
    done = client.jobs.wait(job["id"], timeout=120)
    assert done["status"] == "succeeded", (done, stack.logs())
    return dict(done)

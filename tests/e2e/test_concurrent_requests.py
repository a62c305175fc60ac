"""The same request eight times at once, against a real server (uvicorn, PostgreSQL + Redis,
and the embedded default): every one is answered as if they had come one after another. In
process the race window was too narrow to show; over real sockets it gave 500s."""

import contextlib
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.support import (
    BIN,
    REDIS_URL,
    Proc,
    base_env,
    free_port,
    pg_database,
    seed_spec,
    wait_http_ok,
    wait_until,
)

ROUNDS = 5
TERMINAL = ("succeeded", "failed", "cancelled")


def at_once(clients: list[httpx.Client], call: Callable[[httpx.Client], Any]) -> list[Any]:
    barrier = threading.Barrier(len(clients))

    def run(client: httpx.Client) -> Any:
        barrier.wait()
        return call(client)

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(run, clients))


@pytest.fixture(params=["embedded_stack", "pg_redis_stack"])
def clients(request: pytest.FixtureRequest) -> list[httpx.Client]:
    stack: Stack = request.getfixturevalue(request.param)
    headers = {"Authorization": f"Bearer {stack.key}"}
    return [httpx.Client(base_url=stack.base_url, headers=headers, timeout=30) for _ in range(8)]


def test_eight_submissions_with_one_idempotency_key_make_one_job(
    clients: list[httpx.Client],
) -> None:
    for _ in range(ROUNDS):
        headers = {"Idempotency-Key": secrets.token_hex(8)}
        responses = at_once(
            clients,
            lambda c, h=headers: c.post("/v1/jobs", json=seed_spec("idem-race"), headers=h),
        )
        assert [r.status_code for r in responses] == [202] * 8, [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1


def test_eight_puts_of_one_new_alias_all_succeed(clients: list[httpx.Client]) -> None:
    name = f"alias-race-{secrets.token_hex(3)}"
    job = clients[0].post("/v1/jobs", json=seed_spec(name, epochs=1)).json()
    version = _wait_version(clients[0], job["id"])
    for round_ in range(ROUNDS):
        path = f"/v1/models/{name}/aliases/a{round_}"
        responses = at_once(clients, lambda c, p=path: c.put(p, json={"version": version}))
        assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]


def _wait_version(client: httpx.Client, job_id: str) -> int:
    job = wait_until(
        lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["status"] in TERMINAL and j,
        180,
        f"job {job_id}",
    )
    assert job["status"] == "succeeded", job
    return int(job["model_version"])


@pytest.fixture(params=["embedded", "postgresql"])
def limited_api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """`trainserve api` alone (no worker: every job stays queued) allowing 3 active jobs a
    project, on the embedded SQLite and on PostgreSQL."""
    settings = {
        "data_dir": str(tmp_path / "data"),
        "api_key": f"ts_{secrets.token_urlsafe(24)}",
        "max_active_jobs_per_project": "3",
    }
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            url = stack.enter_context(pg_database())
            settings |= {"database_url": url, "broker_url": REDIS_URL}
            settings["queue_name"] = f"trainserve-test-{secrets.token_hex(4)}"
            subprocess.run(
                [str(BIN), "db", "upgrade"], env=base_env(**settings), check=True, timeout=120
            )
        port = free_port()
        proc = Proc(
            [str(BIN), "api", "--port", str(port)], base_env(**settings), tmp_path / "api.log"
        )
        stack.callback(proc.stop)
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", proc)
        yield f"http://127.0.0.1:{port}|{settings['api_key']}"


def test_submissions_at_once_never_pass_the_active_jobs_limit(limited_api: str) -> None:
    """The count used to be read before the insert: eight at once all saw room and all got
    in. Now each counts after its own insert, under the project's lock."""
    url, admin = limited_api.split("|")
    for round_ in range(ROUNDS):  # a fresh project each round: its own limit of 3
        made = httpx.post(
            f"{url}/v1/keys",
            json={"name": "r", "scopes": ["jobs:write", "jobs:read"], "project": f"p{round_}"},
            headers={"Authorization": f"Bearer {admin}"},
        )
        headers = {"Authorization": f"Bearer {made.json()['key']}"}
        clients = [httpx.Client(base_url=url, headers=headers, timeout=30) for _ in range(16)]
        responses = at_once(clients, lambda c: c.post("/v1/jobs", json=seed_spec("limited")))
        codes = sorted(r.status_code for r in responses)
        assert codes == [202] * 3 + [429] * 13, [r.text for r in responses]
        assert len(clients[0].get("/v1/jobs").json()["items"]) == 3

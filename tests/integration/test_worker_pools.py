"""Worker pools on a real stack: a job that names a pool goes to that pool's queue and is
trained there, a pool with no live worker is refused at submission, the reaper resends and
requeues to the pool's queue, and GET /v1/workers shows what each worker has and runs.

One database for the module (its own, so which workers are live is known), the API in
process, two real workers (the default pool, and `--pool special --gpus 0`) started together.
"""

import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.migrate import upgrade
from app.main import create_app
from app.models import Job, JobStatus, WorkerNode
from app.models.base import utcnow
from app.services import reaper
from tests.integration.conftest import ADMIN_KEY, settings_env
from tests.support import (
    BIN,
    REDIS_URL,
    Proc,
    api_error,
    base_env,
    pg_database,
    seed_spec,
    wait_until,
)


@dataclass
class Stack:
    api: TestClient
    env: dict[str, str]
    workdir: Path
    workers: dict[str, Proc] = field(default_factory=dict)

    def start_workers(self, **extra: list[str]) -> None:
        """Start these workers at once (name → extra CLI arguments), then wait for each."""
        for name, args in extra.items():
            log = self.workdir / f"worker-{name}.log"
            self.workers[name] = Proc([str(BIN), "worker", *args], base_env() | self.env, log)
        for name in extra:
            proc = self.workers[name]
            wait_until(lambda p=proc: "ready." in p.output() or not p.alive(), 90, name)
            assert proc.alive(), proc.output()
            wait_until(lambda p=proc: _row(node(p)), 60, f"{name}'s row")

    def submit(self, **training: Any) -> Any:
        name = f"pools-{secrets.token_hex(3)}"
        return self.api.post("/v1/jobs", json=seed_spec(name, **training))


def node(proc: Proc) -> str:
    # `trainserve worker` execs Celery: its main process keeps the pid, and names the node
    return f"{socket.gethostname()}:{proc.popen.pid}"


def _row(node_id: str) -> WorkerNode | None:
    with session_scope() as session:
        return session.get(WorkerNode, node_id)


@pytest.fixture(scope="module")
def stack(configured: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("pools")
    queue = f"trainserve-test-{secrets.token_hex(4)}"
    with pg_database() as url:
        upgrade(url)
        env = {
            "TRAINSERVE_DATABASE_URL": url,
            "TRAINSERVE_BROKER_URL": REDIS_URL,
            "TRAINSERVE_QUEUE_NAME": queue,
            "TRAINSERVE_DATA_DIR": str(workdir / "data"),
            "TRAINSERVE_API_KEY": ADMIN_KEY,
        }
        with settings_env(env), TestClient(create_app(), raise_server_exceptions=False) as api:
            api.headers.update({"Authorization": f"Bearer {ADMIN_KEY}"})
            served = Stack(api, env, workdir)
            try:
                yield served
            finally:
                for proc in served.workers.values():
                    proc.stop()
                broker = redis.Redis.from_url(REDIS_URL)
                for key in broker.scan_iter(f"*{queue}*"):
                    broker.delete(key)


def test_without_workers_the_default_pool_queues_and_a_named_pool_is_refused(
    stack: Stack,
) -> None:
    queued = stack.submit()
    assert queued.status_code == 202 and queued.json()["status"] == "queued"  # as it always was
    error = api_error(stack.submit(pool="special"), 422, "validation_error")
    assert error["message"] == ("training.pool: no live worker in pool 'special'; live pools: none")
    assert error["details"][0]["field"] == "training.pool"
    error = api_error(stack.submit(device="cuda"), 422)
    assert error["message"].startswith(
        "training.device: no running worker has a CUDA GPU in pool 'default'"
    )
    assert stack.submit(pool="default").status_code == 202  # 'default' names the default pool


def test_a_pool_job_trains_on_its_pool_and_workers_show_what_they_run(stack: Stack) -> None:
    stack.start_workers(default=[], special=["--pool", "special", "--gpus", "0"])
    special, default = node(stack.workers["special"]), node(stack.workers["default"])
    error = api_error(stack.submit(pool="h200"), 422)
    assert error["message"] == (
        "training.pool: no live worker in pool 'h200'; "
        "live pools: default (1 worker), special (1 worker)"
    )
    # long enough to be seen running; cancelled once it has been
    response = stack.submit(pool="special", epochs=500)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    wait_until(lambda: stack.api.get(f"/v1/jobs/{job_id}").json()["status"] == "running", 60, "run")
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.pool == "special" and job.node_id == special

    page = stack.api.get("/v1/workers").json()
    assert page["next_cursor"] is None
    workers = {w["id"]: w for w in page["items"]}
    assert set(workers) == {special, default}
    assert workers[special]["pool"] == "special" and workers[default]["pool"] == "default"
    assert workers[special]["running"] == [job_id]
    assert job_id not in workers[default]["running"]
    for worker in workers.values():
        assert worker["state"] == "live" and worker["capacity"] == 1
        assert worker["hostname"] == socket.gethostname() and worker["devices"]
    only = stack.api.get("/v1/workers", params={"pool": "special"}).json()["items"]
    assert [w["id"] for w in only] == [special]
    first = stack.api.get("/v1/workers", params={"limit": 1}).json()
    rest = stack.api.get("/v1/workers", params={"limit": 1, "cursor": first["next_cursor"]})
    assert {first["items"][0]["id"], rest.json()["items"][0]["id"]} == {special, default}

    assert stack.api.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    wait_until(
        lambda: stack.api.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled", 60, "cancel"
    )


def test_a_reader_key_may_not_list_workers(stack: Stack) -> None:
    body = {"name": "reader", "scopes": ["jobs:read"]}
    reader = stack.api.post("/v1/keys", json=body).json()["key"]
    response = stack.api.get("/v1/workers", headers={"Authorization": f"Bearer {reader}"})
    api_error(response, 403, "insufficient_scope")


def test_gpus_sets_cuda_visible_devices_for_the_worker_and_its_probe(stack: Stack) -> None:
    proc = stack.workers["special"]
    assert b"CUDA_VISIBLE_DEVICES=0" in _environ(proc)
    assert b"CUDA_VISIBLE_DEVICES=0" not in _environ(stack.workers["default"])
    row = _row(node(proc))
    assert row is not None and row.pool == "special"
    # no GPU here: cpu; on a GPU machine, the one device it was given
    assert row.devices == ["cpu"] or (
        len(row.devices) == 1 and row.devices[0].startswith("cuda:0 ")
    )


def _all_ended() -> bool:
    with session_scope() as session:
        active = select(Job.id).where(Job.status.in_([JobStatus.queued, JobStatus.running]))
        return session.scalar(active.limit(1)) is None


def _environ(proc: Proc) -> list[bytes]:
    return Path(f"/proc/{proc.popen.pid}/environ").read_bytes().split(b"\0")


def test_the_reaper_resends_and_requeues_to_the_jobs_pool(stack: Stack) -> None:
    """Judged as if two hours later, so the workers' own reapers (on the database's clock)
    leave these rows alone: a live 'ghost' node with room, a queued ghost job whose message
    is owed, and a running one whose lease lapsed."""
    wait_until(_all_ended, 90, "the earlier jobs to end")  # else they would be reaped too
    later = utcnow() + timedelta(hours=2)
    spec = seed_spec("ghostly", pool="ghost")
    lost = Job(model_name="ghostly", spec=spec, pool="ghost", progress={}, metrics={})
    lapsed = Job(model_name="ghostly", spec=spec, pool="ghost", progress={}, metrics={})
    with session_scope() as session:
        ghost = WorkerNode(id="ghost:1", hostname="ghost", pool="ghost", last_seen=later)
        lost.enqueued_at = utcnow()
        lapsed.status, lapsed.attempt = JobStatus.running, 1
        lapsed.lease_expires_at = utcnow() + timedelta(hours=1)
        session.add_all([ghost, lost, lapsed])
    try:
        with session_scope() as session:
            done = reaper.reap(session, get_settings(), now=later)
        assert done.requeued == [lapsed.id] and done.resent == [lost.id]
        broker = redis.Redis.from_url(REDIS_URL)
        messages = broker.lrange(f"{stack.env['TRAINSERVE_QUEUE_NAME']}.pool.ghost", 0, -1)
        sent = sorted(
            m for m in (lost.id.encode(), lapsed.id.encode()) if any(m in x for x in messages)
        )
        assert len(messages) == 2 and len(sent) == 2
    finally:
        with session_scope() as session:
            session.execute(delete(Job).where(Job.id.in_([lost.id, lapsed.id])))
            session.execute(delete(WorkerNode).where(WorkerNode.id == "ghost:1"))


def test_a_stopped_worker_drops_out_and_a_killed_one_shows_as_gone(stack: Stack) -> None:
    stopped = stack.workers.pop("special")
    stopped.stop()
    ids = {w["id"] for w in stack.api.get("/v1/workers").json()["items"]}
    assert node(stopped) not in ids  # a graceful stop deletes its row
    error = api_error(stack.submit(pool="special"), 422)
    assert "live pools: default (1 worker)" in error["message"]
    with session_scope() as session:  # what a SIGKILLed worker leaves: a row whose beat lapsed
        stale = utcnow() - timedelta(minutes=5)
        session.add(WorkerNode(id="dead:1", hostname="dead", pool="old", last_seen=stale))
    try:
        items = stack.api.get("/v1/workers", params={"pool": "old"}).json()["items"]
        assert [(w["id"], w["state"]) for w in items] == [("dead:1", "gone")]
        api_error(stack.submit(pool="old"), 422)
    finally:
        with session_scope() as session:
            session.execute(delete(WorkerNode).where(WorkerNode.id == "dead:1"))

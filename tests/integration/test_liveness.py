"""Liveness, attacked the way the review did: a step longer than a lease, a worker SIGKILLed
with the default settings, a SIGTERM before the worker's first heartbeat, a job resumed after
its best epoch, a process that died between writing a checkpoint and recording its epoch.

Each test gets its own stack: a PostgreSQL database, a queue on the session's Redis, an API
process and real worker processes with the settings the test names."""

import os
import secrets
import signal
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, delete, func, select
from sqlalchemy.engine import Engine

from app.models import JobEvent, JobMetric, WorkerNode
from tests.support import (
    BIN,
    REDIS_URL,
    Api,
    Proc,
    base_env,
    free_port,
    pg_database,
    wait_http_ok,
    wait_until,
    worker_running,
)

TERMINAL = {"succeeded", "failed", "cancelled"}
LR = {"name": "sgd", "lr": 0.001, "momentum": 0.9}  # stable at batch size 1


class Stack:
    def __init__(self, tmp: Path, env: dict[str, str], engine: Engine) -> None:
        self.tmp, self.env, self.engine = tmp, env, engine
        self.procs: list[Proc] = []
        self.api = Api(env["URL"], env["TRAINSERVE_API_KEY"])

    def start(self, args: list[str], name: str) -> Proc:
        proc = Proc(args, base_env() | self.env, self.tmp / f"{name}-{len(self.procs)}.log")
        self.procs.append(proc)
        return proc

    def worker(self) -> Proc:
        proc = self.start([str(BIN), "worker"], "worker")
        wait_until(lambda: "ready." in proc.output() or not proc.alive(), 90, "a worker")
        assert proc.alive(), proc.output()[-3000:]
        return proc

    def running_on(self, job_id: str) -> Proc | None:
        """The worker whose pool child trains this job now."""
        return worker_running(self.engine, self.procs, job_id)

    def wait_terminal(self, job_id: str, timeout: float = 240) -> dict[str, Any]:
        return dict(
            wait_until(
                lambda: (j := self.api.job(job_id))["status"] in TERMINAL and j,
                timeout,
                f"job {job_id} to end",
                0.3,
            )
        )

    def events(self, job_id: str) -> list[dict[str, Any]]:
        return list(self.api.job(job_id)["events"])

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.output()[-3000:]}" for p in self.procs)


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[tuple[Stack, Any]] = []

    def make(**settings: str) -> Stack:
        database = pg_database()
        url = database.__enter__()
        port = free_port()
        env = base_env(
            database_url=url,
            broker_url=REDIS_URL,
            queue_name=f"trainserve-test-{secrets.token_hex(4)}",
            data_dir=str(tmp_path / f"data-{len(stacks)}"),
            api_key=f"ts_{secrets.token_urlsafe(24)}",
            **settings,
        )
        env = {k: v for k, v in env.items() if k.startswith("TRAINSERVE_")} | {
            "URL": f"http://127.0.0.1:{port}"
        }
        subprocess.run(
            [str(BIN), "db", "upgrade"], env=base_env() | env, check=True, capture_output=True
        )
        stack = Stack(tmp_path, env, create_engine(url))
        stacks.append((stack, database))
        api = stack.start([str(BIN), "api", "--port", str(port)], "api")
        wait_http_ok(f"{env['URL']}/readyz", api)
        return stack

    yield make
    for stack, database in stacks:
        for proc in stack.procs:
            if proc.alive():
                os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.stop()
        print(stack.logs())
        stack.engine.dispose()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"*{stack.env['TRAINSERVE_QUEUE_NAME']}*"):
            client.delete(key)
        database.__exit__(None, None, None)


def spec(name: str, epochs: int = 8, **training: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "dataset": {"builtin": "digits"},
        "model": {"hidden": [32]},
        "training": {"epochs": epochs, "batch_size": 1, "optimizer": LR, **training},
    }


def wait_epoch(stack: Stack, job_id: str, epoch: int) -> Proc:
    """The worker running the job once it is past `epoch`."""
    return wait_until(
        lambda: stack.api.job(job_id)["progress"]["epoch"] >= epoch and stack.running_on(job_id),
        180,
        f"job {job_id} past epoch {epoch}",
        0.1,
    )


def lease_events(events: list[dict[str, Any]]) -> list[str]:
    return [e["message"] for e in events if "lease lost" in e["message"]]


def test_a_step_longer_than_the_lease_keeps_its_worker(make_stack: Callable[..., Stack]) -> None:
    """Leases were renewed between steps only: a 4 s step under a 2 s lease looked like a dead
    worker, the job was claimed again while its first attempt ran on, and it failed as
    worker_lost with no worker dead. Here each epoch is one step, about twice the lease
    (a 2 s step against a 2 s lease was too close: on a quiet machine a step took 1.9998 s)."""
    lease_s = 1.0
    stack = make_stack(lease_s=str(lease_s), heartbeat_s="0.25", reaper_interval_s="0.5")
    stack.worker()
    stack.worker()  # a second worker that would take the job if its lease lapsed
    slow = {
        "model_name": "long-steps",
        "dataset": {"builtin": "digits"},
        "model": {"hidden": [4096, 4096, 4096]},
        "training": {"epochs": 2, "batch_size": 2048, "optimizer": LR},
    }
    done = stack.wait_terminal(stack.api.submit(slow)["id"])
    events = stack.events(done["id"])
    assert done["status"] == "succeeded" and done["attempt"] == 1, (events, stack.logs())
    assert lease_events(events) == []
    # the test proves something only if a step (one per epoch here) outlasted the lease
    seconds_per_step = 1617 / done["progress"]["samples_per_s"]
    assert seconds_per_step > lease_s, f"a step took {seconds_per_step:.2f} s; make it longer"


def test_a_sigkilled_workers_job_resumes_within_15_s_by_default(
    make_stack: Callable[..., Stack],
) -> None:
    """With the default lease, reaper and heartbeat settings (it used to take ~70 s)."""
    stack = make_stack()
    stack.worker()
    stack.worker()
    job = stack.api.submit(spec("killed-default", epochs=30))
    victim = wait_epoch(stack, job["id"], 1)
    os.killpg(victim.popen.pid, signal.SIGKILL)
    killed_at = datetime.now().astimezone()
    claimed = wait_until(
        lambda: next((e for e in stack.events(job["id"]) if e["attempt"] == 2), None),
        60,
        "attempt 2",
        0.2,
    )
    waited = (datetime.fromisoformat(claimed["time"]) - killed_at).total_seconds()
    print(f"resumed {waited:.1f} s after the SIGKILL")
    assert waited <= 15, stack.events(job["id"])
    stack.api.http.post(f"/v1/jobs/{job['id']}/cancel")


def test_sigterm_before_the_first_node_heartbeat_still_drains(
    make_stack: Callable[..., Stack],
) -> None:
    """The drain flag was an UPDATE of the worker's row, which its first heartbeat writes: a
    SIGTERM before that row existed reached no job, and the worker trained on."""
    stack = make_stack()
    worker = stack.worker()
    job = stack.api.submit(spec("early-sigterm", epochs=30))
    wait_epoch(stack, job["id"], 1)
    with stack.engine.begin() as conn:  # as before this worker's first heartbeat
        conn.execute(delete(WorkerNode))
    worker.popen.send_signal(signal.SIGTERM)
    assert worker.popen.wait(60) == 0, worker.output()[-3000:]
    requeued = [e for e in stack.events(job["id"]) if e["kind"] == "requeued"]
    assert requeued and requeued[0]["message"].startswith("worker shutting down"), stack.logs()
    stack.api.http.post(f"/v1/jobs/{job['id']}/cancel")


def test_a_resumed_job_registers_the_metrics_of_its_best_epoch(
    make_stack: Callable[..., Stack],
) -> None:
    """The best epoch (1 here: train_loss in mode max) was trained by attempt 1; the version
    registered by attempt 2 used to hold only `report`, with report.validation {}."""
    stack = make_stack()
    first = stack.worker()
    early = {"metric": "train_loss", "mode": "max", "patience": 50}
    job = stack.api.submit(spec("best-first", epochs=7, early_stopping=early))
    wait_epoch(stack, job["id"], 4)
    first.popen.send_signal(signal.SIGTERM)
    first.popen.wait(60)
    stack.worker()
    done = stack.wait_terminal(job["id"])
    assert done["status"] == "succeeded" and done["attempt"] == 2, stack.events(job["id"])
    version = stack.api.http.get(f"/v1/models/best-first/versions/{done['model_version']}").json()
    with stack.engine.connect() as conn:
        epoch_one = dict(
            conn.execute(
                select(JobMetric.name, JobMetric.value).where(
                    JobMetric.job_id == job["id"], JobMetric.epoch == 1
                )
            ).all()
        )
    assert version["metrics"]["report"]["best_epoch"] == 1
    assert version["metrics"]["report"]["validation"]["confusion_matrix"]
    assert {k: version["metrics"][k] for k in epoch_one} == epoch_one
    assert done["metrics"]["val_accuracy"] == epoch_one["val_accuracy"]


def test_an_epoch_checkpointed_but_not_recorded_is_recorded_on_resume(
    make_stack: Callable[..., Stack],
) -> None:
    """A worker killed between writing an epoch's checkpoint and recording its metrics left
    a gap in the history that no attempt filled: the resumed attempt starts after that epoch."""
    stack = make_stack(lease_s="3", heartbeat_s="0.5", reaper_interval_s="0.5")
    victim = stack.worker()
    job = stack.api.submit(spec("gap", epochs=6))
    wait_epoch(stack, job["id"], 3)
    os.killpg(victim.popen.pid, signal.SIGKILL)
    jobs_dir = Path(stack.env["TRAINSERVE_DATA_DIR"]) / "artifacts" / "jobs" / job["id"]
    newest = max(int(p.stem.split("-")[1]) for p in jobs_dir.glob("attempt-1/epoch-*"))
    with stack.engine.begin() as conn:  # what a kill between the two writes leaves
        conn.execute(
            delete(JobMetric).where(JobMetric.job_id == job["id"], JobMetric.epoch == newest)
        )
    stack.worker()
    done = stack.wait_terminal(job["id"])
    assert done["status"] == "succeeded" and done["attempt"] == 2
    with stack.engine.connect() as conn:
        epochs = conn.scalars(
            select(JobMetric.epoch)
            .where(JobMetric.job_id == job["id"], JobMetric.name == "train_loss")
            .order_by(JobMetric.epoch)
        ).all()
        resumed = conn.scalar(
            select(func.count()).where(JobEvent.job_id == job["id"], JobEvent.kind == "resumed")
        )
    assert list(epochs) == [1, 2, 3, 4, 5, 6] and resumed == 1

"""Chaos: every accepted job ends in exactly one terminal state, is never trained by two
workers at once, and survives the death of any one process by resuming from its last
checkpoint. Real processes throughout: an API, worker processes that get SIGKILLed, a
private redis-server that gets flushed and restarted, and PostgreSQL.

Leases are short here (3 s, renewed every 0.5 s; the reaper looks every second) so that
recovery happens within seconds. Every loop is bounded in count and time."""

import os
import random
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import torch
from safetensors.torch import load_file
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine

from app.ml import checkpoint
from app.models import Job, JobEvent, ModelVersion
from tests.dataset_files import csv_bytes
from tests.hf_models import tiny_bert
from tests.integration.test_pretrained_jobs import folder_zip
from tests.support import (
    BIN,
    Api,
    Proc,
    base_env,
    free_port,
    pg_database,
    unique_name,
    version_query,
    wait_http_ok,
    wait_until,
    worker_running,
)

TERMINAL = {"succeeded", "failed", "cancelled"}
LR = {"name": "sgd", "lr": 0.001, "momentum": 0.9}  # stable at batch size 1


@dataclass
class ChaosStack:
    tmp: Path
    env: dict[str, str]
    api: Api
    engine: Engine
    redis_port: int
    redis_proc: Proc | None = None
    workers: list[Proc] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)
    kills: int = 0

    def start_redis(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.redis_proc = self._proc(args, "redis")
        wait_until(lambda: _redis_up(self.redis_port), 20, "redis-server")

    def start_worker(self, wait: bool = True) -> Proc:
        proc = self._proc([str(BIN), "worker"], f"worker-{len(self.procs)}")
        if wait:
            wait_until(
                lambda: "ready." in proc.output() or not proc.alive(), 90, "a worker to start"
            )
            assert proc.alive(), proc.output()[-3000:]
        self.workers.append(proc)
        return proc

    def ensure_workers(self, n: int, wait: bool = True) -> None:
        self.workers = [w for w in self.workers if w.alive()]
        while len(self.workers) < n:
            self.start_worker(wait)

    def kill(self, worker: Proc) -> None:
        """SIGKILL a worker with its pool child: no warning, no cleanup."""
        os.killpg(worker.popen.pid, signal.SIGKILL)
        worker.popen.wait(10)
        self.workers.remove(worker)
        self.kills += 1

    def worker_running(self, job_id: str) -> Proc | None:
        """The worker process whose pool child is training this job right now."""
        return worker_running(self.engine, self.workers, job_id)

    def wait_terminal(self, job_id: str, timeout: float = 180) -> dict[str, Any]:
        return dict(
            wait_until(
                lambda: (j := self.api.job(job_id))["status"] in TERMINAL and j,
                timeout,
                f"job {job_id} to end",
                interval=0.3,
            )
        )

    def _proc(self, args: list[str], name: str) -> Proc:
        proc = Proc(args, base_env() | self.env, self.tmp / f"{name}-{len(self.procs)}.log")
        self.procs.append(proc)
        return proc


def _redis_up(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.ConnectionError:
        return False


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosStack]:
    tmp = tmp_path_factory.mktemp("chaos")
    redis_port, api_port = free_port(), free_port()
    with pg_database() as db_url:
        env = {
            "TRAINSERVE_DATABASE_URL": db_url,
            "TRAINSERVE_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "TRAINSERVE_DATA_DIR": str(tmp / "data"),
            "TRAINSERVE_API_KEY": f"ts_{secrets.token_urlsafe(24)}",
            "TRAINSERVE_QUEUE_NAME": "chaos",
            "TRAINSERVE_LEASE_S": "3",
            "TRAINSERVE_HEARTBEAT_S": "0.5",
            "TRAINSERVE_REAPER_INTERVAL_S": "1",
            "TRAINSERVE_REQUEUE_AFTER_S": "4",
            "TRAINSERVE_MAX_ATTEMPTS": "10",
        }
        engine = create_engine(db_url)
        stack = ChaosStack(
            tmp,
            env,
            Api(f"http://127.0.0.1:{api_port}", env["TRAINSERVE_API_KEY"]),
            engine,
            redis_port,
        )
        try:
            stack.start_redis()
            subprocess.run(
                [str(BIN), "db", "upgrade"], env=base_env() | env, check=True, capture_output=True
            )
            api = stack._proc([str(BIN), "api", "--port", str(api_port)], "api")
            wait_http_ok(f"http://127.0.0.1:{api_port}/readyz", api)
            stack.ensure_workers(2)
            yield stack
        finally:
            for proc in reversed(stack.procs):
                if proc.alive():
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.stop()
            engine.dispose()


def spec(name: str, epochs: int = 8, **training: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "dataset": {"builtin": "digits"},
        "model": {"hidden": [32]},
        "training": {"epochs": epochs, "batch_size": 1, "optimizer": LR, **training},
    }


def weights(stack: ChaosStack, name: str) -> dict[str, torch.Tensor]:
    with stack.engine.connect() as conn:
        path = conn.scalar(version_query(name).with_only_columns(ModelVersion.checkpoint_path))
    assert path is not None
    return load_file(str(Path(stack.env["TRAINSERVE_DATA_DIR"]) / "artifacts" / path))


def events(stack: ChaosStack, job_id: str) -> list[str]:
    return [f"{e['kind']}: {e['message']}" for e in stack.api.job(job_id)["events"]]


def kill_when_running(stack: ChaosStack, job_id: str, min_epoch: int) -> Proc:
    """Wait until the job is past min_epoch on some worker, then SIGKILL that worker."""

    def owner() -> Proc | None:
        return (
            stack.worker_running(job_id)
            if stack.api.job(job_id)["progress"]["epoch"] >= min_epoch
            else None
        )

    victim = wait_until(owner, 120, f"job {job_id} to pass epoch {min_epoch}", interval=0.1)
    stack.kill(victim)
    return victim


def test_sigkill_mid_epoch_resumes_with_the_weights_of_an_uninterrupted_run(
    chaos: ChaosStack,
) -> None:
    job = chaos.api.submit(spec("resumed"))
    kill_when_running(chaos, job["id"], min_epoch=2)
    chaos.ensure_workers(2)
    done = chaos.wait_terminal(job["id"])
    assert done["status"] == "succeeded" and done["attempt"] == 2, events(chaos, job["id"])
    assert any(
        e.startswith("resumed: resumed from the checkpoint of epoch")
        for e in events(chaos, job["id"])
    )

    reference = chaos.api.submit(spec("uninterrupted"))
    assert chaos.wait_terminal(reference["id"])["attempt"] == 1
    got, want = weights(chaos, "resumed"), weights(chaos, "uninterrupted")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_sigterm_hands_the_running_job_back_and_it_resumes_elsewhere(chaos: ChaosStack) -> None:
    job = chaos.api.submit(spec("drained", epochs=10))
    draining = wait_until(
        lambda: (
            chaos.api.job(job["id"])["progress"]["epoch"] >= 2 and chaos.worker_running(job["id"])
        ),
        120,
        "the job to run",
        0.1,
    )
    draining.popen.send_signal(signal.SIGTERM)  # the worker alone, as a supervisor stops it
    assert draining.popen.wait(30) == 0  # a warm shutdown that did not wait for the job to finish
    chaos.workers.remove(draining)
    chaos.ensure_workers(2)
    done = chaos.wait_terminal(job["id"])
    history = events(chaos, job["id"])
    assert done["status"] == "succeeded" and done["attempt"] == 2, history
    assert any(e.startswith("requeued: worker shutting down") for e in history), history
    assert any(e.startswith("resumed: resumed from the checkpoint of epoch") for e in history)


def test_a_torn_checkpoint_write_falls_back_to_the_previous_checkpoint(chaos: ChaosStack) -> None:
    job = chaos.api.submit(spec("torn"))
    kill_when_running(chaos, job["id"], min_epoch=3)
    folder = Path(chaos.env["TRAINSERVE_DATA_DIR"]) / "artifacts" / "jobs" / job["id"] / "attempt-1"
    newest = sorted(folder.glob("epoch-*.safetensors"))[-1]
    good_epoch = int(newest.stem.split("-")[1])
    # what a kill in the middle of the next write leaves: a half-written temp file, and (were the
    # write not atomic) a torn newest checkpoint
    torn = folder / f"epoch-{good_epoch + 1:04d}.safetensors"
    torn.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    (folder / f".{torn.name}.12345.tmp").write_bytes(b"\x00" * 100)
    chaos.ensure_workers(2)
    done = chaos.wait_terminal(job["id"])
    assert done["status"] == "succeeded", events(chaos, job["id"])
    assert f"resumed: resumed from the checkpoint of epoch {good_epoch}" in events(chaos, job["id"])


def test_redis_flushall_and_a_redis_restart_lose_no_job(chaos: ChaosStack) -> None:
    chaos.ensure_workers(2)
    ids = [chaos.api.submit(spec(f"flushed-{i}", epochs=3))["id"] for i in range(4)]
    wait_until(
        lambda: sum(chaos.api.job(i)["status"] == "running" for i in ids) >= 1, 60, "a running job"
    )
    redis.Redis(port=chaos.redis_port).flushall()  # queued messages and unacked deliveries are gone
    time.sleep(2)
    assert chaos.redis_proc is not None
    chaos.redis_proc.stop()  # and then the broker dies and comes back empty
    chaos.start_redis()
    finished = [chaos.wait_terminal(i, timeout=240) for i in ids]
    assert [j["status"] for j in finished] == ["succeeded"] * 4, [events(chaos, i) for i in ids]


def test_a_poison_job_fails_as_worker_lost_and_others_are_unaffected(chaos: ChaosStack) -> None:
    chaos.ensure_workers(2)
    poison = chaos.api.submit(spec("poison", epochs=50, max_runtime_s=600))
    with chaos.engine.begin() as conn:  # this one job gets 3 attempts, like the default
        conn.execute(text("UPDATE jobs SET max_attempts = 3 WHERE id = :id"), {"id": poison["id"]})
    healthy = chaos.api.submit(spec("healthy", epochs=3))
    for _ in range(3):  # it kills whichever worker runs it, each time
        victim = wait_until(
            lambda: chaos.worker_running(poison["id"]), 120, "the poison job to run", 0.1
        )
        chaos.kill(victim)
        chaos.ensure_workers(2)
    done = chaos.wait_terminal(poison["id"], timeout=60)
    assert done["status"] == "failed" and done["status_message"].startswith("worker_lost"), done
    assert done["attempt"] == 3
    assert chaos.wait_terminal(healthy["id"])["status"] == "succeeded"


def test_a_time_limit_and_a_diverging_loss_end_the_job_without_requeue(chaos: ChaosStack) -> None:
    chaos.ensure_workers(2)
    slow = chaos.api.submit(spec("too-slow", epochs=500, max_runtime_s=3))
    nan = chaos.api.submit(
        spec("nan", epochs=5, optimizer={"name": "sgd", "lr": 10.0, "momentum": 0.9})
    )
    timed_out, diverged = chaos.wait_terminal(slow["id"], 60), chaos.wait_terminal(nan["id"], 60)
    assert timed_out["status"] == "failed" and timed_out["status_message"].startswith("timeout:"), (
        timed_out
    )
    assert timed_out["attempt"] == 1 and timed_out["progress"]["epoch"] < 500
    assert diverged["status"] == "failed" and "diverged" in diverged["status_message"]
    assert "step" in diverged["status_message"] and diverged["attempt"] == 1


def test_storm(chaos: ChaosStack) -> None:
    """8 short jobs, 2 workers, a random worker SIGKILLed every 3-7 s for 30 s (5-8 kills,
    most mid-epoch), then drain."""
    chaos.ensure_workers(2)
    rng = random.Random(7)
    ids = [chaos.api.submit(spec(f"storm-{i}", epochs=8))["id"] for i in range(8)]
    kills_before, storm_end = chaos.kills, time.monotonic() + 30
    while time.monotonic() < storm_end and not all(
        chaos.api.job(i)["status"] in TERMINAL for i in ids
    ):
        time.sleep(rng.uniform(3, 7))
        chaos.kill(rng.choice(chaos.workers))
        chaos.ensure_workers(2, wait=False)  # the replacement starts while the storm goes on
    finished = {i: chaos.wait_terminal(i, timeout=300) for i in ids}

    with chaos.engine.connect() as conn:
        rows = conn.execute(
            select(ModelVersion.job_id, func.count())
            .where(ModelVersion.job_id.in_(ids))
            .group_by(ModelVersion.job_id)
        ).all()
        versions = {job_id: count for job_id, count in rows}
        resumes = conn.scalar(
            select(func.count()).where(JobEvent.job_id.in_(ids), JobEvent.kind == "resumed")
        )
        running = conn.scalar(
            select(func.count()).where(Job.status == "running", Job.lease_expires_at < func.now())
        )
    lost = [i for i, j in finished.items() if j["status"] != "succeeded"]
    duplicates = sum(n - 1 for n in versions.values() if n > 1)
    print(
        f"storm: kills {chaos.kills - kills_before}, resumes {resumes}, jobs lost {len(lost)}, "
        f"duplicate versions {duplicates}"
    )
    assert lost == [] and duplicates == 0 and running == 0
    assert all(versions.get(i) == 1 for i in ids)
    for job_id in ids:  # every latest checkpoint loads
        folder = Path(chaos.env["TRAINSERVE_DATA_DIR"]) / "artifacts" / "jobs" / job_id
        latest = sorted(
            folder.glob("attempt-*/epoch-*.safetensors"),
            key=lambda p: (int(p.parent.name.split("-")[1]), p.name),
        )
        assert latest and checkpoint.load(latest[-1]).meta["kind"] == "training"


def test_a_sigkilled_finetune_resumes_with_the_weights_of_an_uninterrupted_run(
    chaos: ChaosStack, tmp_path: Path
) -> None:
    """LoRA on a base model, a cosine schedule and the base's dropout: a SIGKILL mid-run and
    the resumed job registers exactly the adapters and head an uninterrupted run does."""
    archive = folder_zip(tiny_bert(tmp_path / "bert"))
    base = chaos.api.http.post(
        "/v1/base-models", files={"file": ("b.zip", archive)}, data={"name": "chaos-bert"}
    )
    assert base.status_code == 201, base.text
    words = [
        ("good film", "pos"),
        ("great plot", "pos"),
        ("bad film", "neg"),
        ("awful plot", "neg"),
    ]
    rows = [words[i % 4] for i in range(160)]
    data = csv_bytes({"text": [t for t, _ in rows], "label": [label for _, label in rows]})
    dataset = chaos.api.http.post(
        "/v1/datasets",
        files={"file": ("t.csv", data)},
        data={"name": unique_name("t"), "format": "text-csv"},
    )
    assert dataset.status_code == 201, dataset.text

    def finetune(name: str) -> dict[str, Any]:
        return {
            "model_name": name,
            "dataset": {"id": dataset.json()["id"]},
            "model": {"arch": "pretrained", "base": "chaos-bert", "finetune": "lora", "max_len": 8},
            "training": {
                "epochs": 5,
                "batch_size": 1,
                "optimizer": {"name": "adamw", "lr": 1e-3},
                "schedule": {"name": "cosine"},
            },
        }

    chaos.ensure_workers(1)
    job = chaos.api.submit(finetune("ft-resumed"))
    kill_when_running(chaos, job["id"], min_epoch=2)
    chaos.ensure_workers(1)
    done = chaos.wait_terminal(job["id"], timeout=300)
    assert done["status"] == "succeeded" and done["attempt"] == 2, events(chaos, job["id"])
    reference = chaos.api.submit(finetune("ft-uninterrupted"))
    assert chaos.wait_terminal(reference["id"], timeout=300)["attempt"] == 1
    got, want = weights(chaos, "ft-resumed"), weights(chaos, "ft-uninterrupted")
    assert any("lora_" in k for k in want)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)

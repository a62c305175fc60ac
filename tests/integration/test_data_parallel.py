"""Data parallel on a real stack: 2-rank gloo jobs trained by a real `trainserve worker` on
PostgreSQL and Redis. Rank 0 is the worker's pool child that claimed the job; rank 1 is a
process of its own. One stack for the module, with short leases (3 s, renewed every 0.5 s,
the reaper every second) so that a killed attempt is requeued within seconds, and ranks wait
8 s for each other (TRAINSERVE_DDP_TIMEOUT_S) so that a hung rank fails its job soon."""

import os
import secrets
import signal
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, delete, func, select

from app.models import Job, JobMetric, WorkerNode
from app.models.base import utcnow
from tests.support import Api, Served, api_and_worker, api_error, seed_spec, wait_until

KEY = f"ts_{secrets.token_urlsafe(24)}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Api, Engine]]:
    workdir = tmp_path_factory.mktemp("ddp")
    short = {"lease_s": "3", "heartbeat_s": "0.5", "reaper_interval_s": "1", "ddp_timeout_s": "8"}
    with api_and_worker(workdir, KEY, requeue_after_s="4", **short) as served:
        engine = create_engine(served.env["TRAINSERVE_DATABASE_URL"])
        try:
            yield served, Api(served.url, KEY), engine
        finally:
            engine.dispose()


def ddp_spec(name: str, **training: Any) -> dict[str, Any]:
    spec = seed_spec(name, **({"devices": 2} | training))
    spec["model"]["hidden"] = [32]
    return spec


def children(pid: int) -> list[int]:
    """The live processes whose parent is pid: rank 0's are its ranks 1..N-1."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def alive(pids: list[int]) -> list[int]:
    """Which of pids still run (a zombie has ended)."""
    live = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                live.append(pid)
        except OSError:
            continue
    return live


def run_dirs(job_id: str) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"trainserve-ddp-{job_id}-*"))


def claimer(engine: Engine, job_id: str) -> int | None:
    """The pid of the pool child that claimed the running job: rank 0."""
    with engine.connect() as conn:
        owner = conn.scalar(select(Job.worker_id).where(Job.id == job_id, Job.status == "running"))
    return int(owner.rsplit(":", 1)[1]) if owner else None


def events(api: Api, job_id: str) -> list[str]:
    return [f"{e['kind']}: {e['message']}" for e in api.job(job_id)["events"]]


def running_past(api: Api, engine: Engine, job_id: str, epoch: int = 0) -> tuple[int, list[int]]:
    """Wait until the job trains (past `epoch`, if given) with its rank 1 up; → (rank 0's
    pid, the other ranks' pids)."""

    def ready() -> tuple[int, list[int]] | None:
        pid = claimer(engine, job_id)
        pids = children(pid) if pid else []
        progress = api.job(job_id)["progress"]
        past = progress["epoch"] >= epoch and progress["step"] > 0
        return (pid, pids) if pid and pids and past else None

    return wait_until(ready, 90, f"job {job_id} past epoch {epoch}", interval=0.1)


def test_more_devices_than_any_worker_has_and_an_uneven_batch_are_refused(
    stack: tuple[Served, Api, Engine],
) -> None:
    _, api, engine = stack
    error = api_error(api.http.post("/v1/jobs", json=ddp_spec("big", devices=8)), 422)
    assert error["message"] == (
        "training.devices: 8 asked for; the live workers of pool 'default' have at most 0 "
        "CUDA GPUs, and a CPU worker runs at most 4 ranks (TRAINSERVE_MAX_CPU_RANKS)"
    )
    error = api_error(api.http.post("/v1/jobs", json=ddp_spec("odd", batch_size=63)), 422)
    assert error["details"][0]["field"] == "training.batch_size"
    assert "63 is not a multiple of 2 (e.g. 62 or 64)" in error["message"]
    now = utcnow()
    gpu_node = WorkerNode(
        id="gpu-host:1", hostname="gpu-host", pool="gpus", cuda_devices=2,
        devices=["cuda:0 X", "cuda:1 X"], started_at=now, last_seen=now + timedelta(hours=1),
    )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(WorkerNode.__table__.insert(), [gpu_node.__dict__ | {"draining": False}])
    try:
        spec = ddp_spec("gpu", devices=4, device="cuda", pool="gpus", batch_size=64)
        error = api_error(api.http.post("/v1/jobs", json=spec), 422)
        assert error["message"] == (
            "training.devices: 4 asked for; the live workers of pool 'gpus' have at most 2 "
            "CUDA GPUs"
        )
        spec["training"]["devices"] = 2
        assert api.http.post("/v1/jobs?dry_run=true", json=spec).status_code == 200
    finally:
        with engine.begin() as conn:
            conn.execute(delete(WorkerNode).where(WorkerNode.id == "gpu-host:1"))


def test_two_ranks_train_and_rank_0_alone_reports_and_registers(
    stack: tuple[Served, Api, Engine],
) -> None:
    served, api, engine = stack
    job = api.submit(ddp_spec("ddp-ok", epochs=2, test_split=0.1))
    done = api.wait_job(job["id"], timeout=120)
    history = events(api, job["id"])
    assert done["status"] == "succeeded", (done, history, served.logs())
    assert done["model_version"] == 1 and done["metrics"]["val_accuracy"] > 0.8
    assert "data_parallel: training on 2 CPU ranks" in history
    assert f"data_parallel: all 2 ranks ended after step {done['progress']['step']}" in history
    assert [e for e in history if e.startswith("checkpoint")] == [
        "checkpoint: checkpoint at epoch 1",
        "checkpoint: checkpoint at epoch 2",
    ]
    with engine.connect() as conn:
        rows = conn.execute(
            select(JobMetric.epoch, func.count())
            .where(JobMetric.job_id == job["id"], JobMetric.name == "val_loss")
            .group_by(JobMetric.epoch)
        ).all()
    assert sorted(rows) == [(1, 1), (2, 1)]  # once per epoch: rank 0 only
    folder = Path(served.env["TRAINSERVE_DATA_DIR"]) / "artifacts" / "jobs" / job["id"]
    assert sorted(p.name for p in folder.glob("attempt-1/epoch-*")) == [
        "epoch-0001.safetensors",
        "epoch-0002.safetensors",
    ]
    assert run_dirs(job["id"]) == []  # the rendezvous folder went with the attempt


def test_a_sigkilled_rank_0_takes_its_ranks_with_it_and_the_job_resumes(
    stack: tuple[Served, Api, Engine],
) -> None:
    served, api, engine = stack
    job = api.submit(ddp_spec("ddp-killed", epochs=2, batch_size=8))
    rank0, others = running_past(api, engine, job["id"], 1)
    os.kill(rank0, signal.SIGKILL)  # the claiming pool child alone: no cleanup, no warning
    wait_until(lambda: not alive(others), 10, "no orphan rank")
    done = api.wait_job(job["id"], timeout=120)
    history = events(api, job["id"])
    assert done["status"] == "succeeded" and done["attempt"] == 2, (history, served.logs())
    assert any(e.startswith("resumed: resumed from the checkpoint of epoch") for e in history)
    assert run_dirs(job["id"]) == []  # the killed attempt's folder, removed by the next one


def test_a_cancel_stops_both_ranks_after_the_same_step(stack: tuple[Served, Api, Engine]) -> None:
    served, api, engine = stack
    job = api.submit(ddp_spec("ddp-cancel", epochs=50, batch_size=8))
    _, others = running_past(api, engine, job["id"])
    assert api.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    done = api.wait_job(job["id"], timeout=60)
    history = events(api, job["id"])
    assert done["status"] == "cancelled", (history, served.logs())
    # rank 0 checks that every rank's last step was its own before it ends the attempt
    assert any(e.startswith("data_parallel: all 2 ranks ended after step") for e in history)
    assert alive(others) == []


def test_a_rank_that_dies_fails_the_attempt_naming_it(stack: tuple[Served, Api, Engine]) -> None:
    served, api, engine = stack
    job = api.submit(ddp_spec("ddp-rank-dies", epochs=50, batch_size=8))
    _, others = running_past(api, engine, job["id"])
    os.kill(others[0], signal.SIGKILL)
    done = api.wait_job(job["id"], timeout=60)
    assert done["status"] == "failed", (done, served.logs())
    assert done["status_message"] == "RankFailed: rank 1 was killed by SIGKILL (of 2 ranks)"


def test_a_rank_that_hangs_fails_the_attempt_after_the_timeout(
    stack: tuple[Served, Api, Engine],
) -> None:
    served, api, engine = stack
    job = api.submit(ddp_spec("ddp-rank-hangs", epochs=50, batch_size=8))
    _, others = running_past(api, engine, job["id"])
    os.kill(others[0], signal.SIGSTOP)  # alive, holding its sockets open, answering nothing
    done = api.wait_job(job["id"], timeout=60)
    assert done["status"] == "failed", (done, served.logs())
    message = done["status_message"]
    assert message.startswith(
        "RankFailed: a rank did not answer within TRAINSERVE_DDP_TIMEOUT_S (8 s): "
    ), message
    wait_until(lambda: not alive(others), 10, "the stopped rank to be killed")

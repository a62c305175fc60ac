"""Helpers for tests that start the real stack: processes, ports, databases, HTTP polling."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from app.core.migrate import upgrade

PG_ADMIN_DSN = os.environ.get(
    "TRAINSERVE_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
REDIS_URL = os.environ.get("TRAINSERVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
BIN = Path(sys.executable).parent / "trainserve"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def pg_database(name: str | None = None) -> Iterator[str]:
    """A fresh PostgreSQL database for one test (or session), dropped afterwards; `name`
    (default: a random trainserve_test_...) is a plain identifier."""
    name = name or f"trainserve_test_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = dict(p.split("=") for p in PG_ADMIN_DSN.split())
    try:
        yield f"postgresql+psycopg://{params['user']}@{params['host']}:{params['port']}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Proc:
    """A subprocess with its output in a log file, stopped with SIGTERM (then SIGKILL)."""

    def __init__(
        self, args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
    ) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


def base_env(**settings: str) -> dict[str, str]:
    """The test process's environment without any TRAINSERVE_* leaking in, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINSERVE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({f"TRAINSERVE_{k.upper()}": v for k, v in settings.items()})
    return env


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_http_ok(url: str, proc: Proc, timeout: float = 60) -> None:
    def ready() -> bool:
        assert proc.alive(), f"process exited early:\n{proc.output()[-4000:]}"
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, timeout, url)


class Api:
    """A small client for the service under test."""

    def __init__(self, base_url: str, key: str) -> None:
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def submit(self, spec: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        response = self.http.post("/v1/jobs", json=spec, **kwargs)
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        return body

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_job(
        self,
        job_id: str,
        timeout: float = 120,
        statuses: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
    ) -> dict[str, Any]:
        return wait_until(
            lambda: (j := self.job(job_id))["status"] in statuses and j,
            timeout,
            f"job {job_id} to reach {statuses}",
            interval=0.25,
        )

    def predict(self, name: str, inputs: list[Any], ref: str | None = None) -> httpx.Response:
        path = (
            f"/v1/models/{name}/predict"
            if ref is None
            else f"/v1/models/{name}/versions/{ref}/predict"
        )
        return self.http.post(path, json={"inputs": inputs})


def seed_spec(model_name: str = "digits-mlp", **training: Any) -> dict[str, Any]:
    """The seed document's job: MLP [128], SGD lr 0.01 momentum 0.9, batch 64, 10 epochs, digits."""
    return {
        "model_name": model_name,
        "dataset": {"builtin": "digits"},
        "model": {"arch": "mlp", "hidden": [128]},
        "training": {
            "epochs": 10,
            "batch_size": 64,
            "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
            **training,
        },
    }


def held_out_digits(
    validation_split: float = 0.1, seed: int = 0
) -> tuple[list[list[float]], list[Any]]:
    """The rows a seed job on digits held out, with their labels."""
    from worker.data.sklearn_builtins import load_builtin
    from worker.data.split import split_indices

    raw = load_builtin("digits")
    _, held = split_indices(raw.y, validation_split, seed, stratify=True)
    assert raw.classes is not None
    return raw.x[held].tolist(), [raw.classes[i] for i in raw.y[held]]


def identity_mlp(width: int = 2) -> Any:
    """An mlp (width → width → width) whose layers are identities: its logits equal relu(x)."""
    import torch

    from app.ml.zoo import build_model

    model = build_model("mlp", [width], width, {"hidden": [width], "dropout": 0.0})
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.copy_(torch.eye(width))
            layer.bias.zero_()
    return model


def tabular_bundle(model: Any, classes: list[Any], mean: list[float], std: list[float]) -> Any:
    """A classifier bundle over len(mean) standardized features, around a given model."""
    import torch

    from app.ml.bundle import ModelBundle
    from app.ml.preprocessing import Preprocessor, Standardizer

    scaler = Standardizer(torch.tensor(mean), torch.tensor(std))
    preprocessor = Preprocessor("tabular", [len(mean)], x_scaler=scaler)
    options = {"hidden": [len(mean)], "dropout": 0.0}
    return ModelBundle(
        "mlp", options, "classification", len(classes), classes, preprocessor, None, model
    )


def api_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    if code:
        assert error["code"] == code
    return error


def version_query(name: str, project: str = "default") -> Any:
    """SELECT the versions of the model (project, name)."""
    from sqlalchemy import select

    from app.models import ModelVersion, RegisteredModel

    return (
        select(ModelVersion)
        .join(RegisteredModel)
        .where(RegisteredModel.project == project, RegisteredModel.name == name)
    )


def fixed_model(
    name: str,
    data_dir: Path,
    project: str = "default",
    classes: tuple[str, str] = ("cat", "dog"),
) -> int:
    """Register a 2-2-2 MLP with identity weights (logits equal relu(x)) straight into the
    database and artifacts the current Settings point at, as a worker would."""
    from app.core.db import session_scope
    from app.models import Job, JobStatus
    from app.services import registry

    model = identity_mlp()
    bundle = tabular_bundle(model, list(classes), [0.0, 0.0], [1.0, 1.0])
    with session_scope() as session:
        job = Job(
            model_name=name,
            project=project,
            spec=seed_spec(name),
            status=JobStatus.succeeded,
            progress={},
            metrics={},
        )
        session.add(job)
        session.flush()
        rel = f"jobs/{job.id}/model.safetensors"
        sha = bundle.save(data_dir / "artifacts" / rel)
        row = registry.register_version(
            session,
            model_name=name,
            project=project,
            job_id=job.id,
            task="classification",
            spec=job.spec,
            dataset={"builtin": "none"},
            metrics={},
            classes=list(classes),
            input_shape=[2],
            checkpoint_path=rel,
            checkpoint_sha256=sha,
        )
        return row.version


def worker_running(engine: Any, procs: list[Proc], job_id: str) -> Proc | None:
    """The one of `procs` whose pool child trains this job now (its process group leads it)."""
    from sqlalchemy import select

    from app.models import Job

    with engine.connect() as conn:
        owner = conn.scalar(select(Job.worker_id).where(Job.id == job_id, Job.status == "running"))
    if not owner:
        return None
    try:
        group = os.getpgid(int(owner.rsplit(":", 1)[1]))
    except ProcessLookupError:
        return None
    return next((p for p in procs if p.popen.pid == group), None)


def unique_name(prefix: str) -> str:
    """A dataset (or other resource) name no other test in this database has taken: names
    are unique per project."""
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass
class Served:
    """`trainserve api` on a socket and `trainserve worker`, as api_and_worker started them."""

    url: str
    env: dict[str, str]  # the server's settings
    api: Proc
    worker: Proc

    def logs(self) -> str:
        return f"--- api ---\n{self.api.output()[-4000:]}\n--- worker ---\n{self.worker.output()[-4000:]}"


@contextmanager
def api_and_worker(workdir: Path, api_key: str, **settings: str) -> Iterator[Served]:
    """A real stack on its own PostgreSQL database (migrated, then dropped) and Redis queue
    (its keys deleted after): the API ready, the worker ready. `settings` are more TRAINSERVE_
    settings (lease_s="60", ...)."""
    queue = f"trainserve-test-{secrets.token_hex(4)}"
    with pg_database() as db_url:
        upgrade(db_url)
        env = base_env(
            database_url=db_url,
            broker_url=REDIS_URL,
            queue_name=queue,
            data_dir=str(workdir / "data"),
            api_key=api_key,
            **settings,
        )
        port = free_port()
        api = Proc([str(BIN), "api", "--port", str(port)], env, workdir / "api.log")
        worker = Proc([str(BIN), "worker"], env, workdir / "worker.log")
        try:
            served = Served(f"http://127.0.0.1:{port}", env, api, worker)
            wait_http_ok(f"{served.url}/readyz", api)
            wait_until(lambda: "ready." in worker.output() or not worker.alive(), 90, "the worker")
            assert worker.alive(), worker.output()
            yield served
        finally:
            api.stop()
            worker.stop()
            broker = redis.Redis.from_url(REDIS_URL)
            for key in broker.scan_iter(f"*{queue}*"):
                broker.delete(key)

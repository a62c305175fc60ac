"""The seed job through the service, next to the seed's own loop on the same rows.

Rows of the table it prints (bench/README.md says more):
  seed loop            the seed document's script: Net, DataLoader(batch_size=64, shuffle=True),
                       loss.item() every step; the baseline
  service loop         worker.training.loop.fit in this process, same tensors, no-op hooks
  service job, train   the job's finished_at - started_at, as `trainserve up` ran it
  service job, e2e     POST /v1/jobs until GET /v1/jobs/{id} says succeeded

Run from the repository root: .venv/bin/python bench/seed_job.py [--repeats 3] [--epochs 10]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from app.ml.preprocessing import Standardizer
from app.ml.zoo import build_mlp
from app.schemas.job import Task
from worker.data.sklearn_builtins import load_builtin
from worker.data.split import split_indices
from worker.training.loop import EpochResult, LoopOptions, Scoring, Splits, fit

# isort: split
# bench's own modules: the script's folder is first on sys.path (python bench/seed_job.py)
from common import (
    BATCH,
    LR,
    MOMENTUM,
    SEED,
    free_port,
    run_line,
    seed_spec,
    server_env,
    start_group,
    stop_group,
)

TRAINSERVE = Path(sys.executable).parent / "trainserve"
VALIDATION_SPLIT = 0.1


@dataclass(frozen=True)
class Digits:
    x_train: torch.Tensor  # (1617, 64) standardized on the train rows
    y_train: torch.Tensor  # (1617,) long
    x_val: torch.Tensor  # (180, 64)
    y_val: torch.Tensor  # (180,)


def load_digits() -> Digits:
    """The rows the service trains on: same split, same standardization (worker/data/prepare.py)."""
    raw = load_builtin("digits")
    train_idx, val_idx = split_indices(raw.y, VALIDATION_SPLIT, SEED, stratify=True)
    x, y = torch.from_numpy(raw.x), torch.from_numpy(raw.y).long()
    scaler = Standardizer.fit(x[train_idx])
    return Digits(scaler(x[train_idx]), y[train_idx], scaler(x[val_idx]), y[val_idx])


# --- the seed's own loop, in the seed's style ---------------------------------------------


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


def seed_loop(data: Digits, epochs: int) -> nn.Module:
    torch.manual_seed(SEED)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=BATCH, shuffle=True)
    for _ in range(epochs):
        model.train()
        running = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            running += loss.item()
    return model


# --- the service's loop, in this process ---------------------------------------------------


def service_loop(data: Digits, epochs: int) -> nn.Module:
    """What worker/training/runner.py runs, minus its hooks (lease, checkpoints, DB writes)."""
    torch.manual_seed(SEED)
    model = build_mlp([64], 10, hidden=[128])
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def on_epoch_end(_: EpochResult) -> None:
        pass

    fit(
        model,
        optimizer,
        nn.CrossEntropyLoss(),
        Splits(data.x_train, data.y_train, data.x_val, data.y_val),
        LoopOptions(Scoring(Task.classification, list(range(10))), epochs, BATCH),
        torch.Generator().manual_seed(SEED),
        on_step=lambda _rows: False,
        on_epoch_end=on_epoch_end,
    )
    return model


@torch.inference_mode()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).argmax(dim=1) == y).float().mean().item()


def time_in_process(
    loop: Callable[[Digits, int], nn.Module], data: Digits, epochs: int, repeats: int
) -> tuple[list[float], float]:
    """Wall seconds of each run (after one untimed 1-epoch warm-up), and the last val accuracy."""
    loop(data, 1)
    walls, model = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        model = loop(data, epochs)
        walls.append(time.perf_counter() - began)
    assert model is not None
    return walls, accuracy(model, data.x_val, data.y_val)


# --- the seed job through the service ------------------------------------------------------


@dataclass(frozen=True)
class JobRun:
    e2e_s: float  # POST until a poll saw "succeeded"
    train_s: float  # finished_at - started_at, by the job row
    setup_s: float  # started_at until epoch 1's metrics: data, model, epoch 1, checkpoint
    epochs_s: float  # epoch 1's metrics until the last epoch's
    register_s: float  # the last epoch's metrics until finished_at: model bundle, DB row
    last_epoch_samples_per_s: float  # progress.samples_per_s, the loop's own figure
    train_rows: int
    val_accuracy: float


class Service:
    """`trainserve up` in a temp dir, no TRAINSERVE_* settings: SQLite + filesystem broker."""

    def __init__(self, port: int, threads: int) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="trainserve-bench-")
        self.data_dir = Path(self.dir.name) / "data"
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = Path(self.dir.name) / "up.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        args = ["up", "--data-dir", str(self.data_dir), "--port", str(port), "--workers", "1"]
        # its own process group: SIGTERM reaches API and workers
        self.proc = start_group([str(TRAINSERVE), *args], server_env(threads), self._log)
        self.http = httpx.Client(base_url=self.base_url, timeout=30)
        self.early_404s = 0  # GET /v1/jobs/{id} answered 404 just after the POST's 202

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if self.http.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"no /readyz after {timeout}s:\n{self.log_tail()}")
        key = (self.data_dir / "admin.key").read_text().strip()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def train(self, spec: dict[str, Any], timeout: float = 300) -> tuple[dict[str, Any], float]:
        """Submit the spec and wait until it succeeded; → its job and seconds POST → done."""
        began = time.perf_counter()
        response = self.http.post("/v1/jobs", json=spec)
        response.raise_for_status()
        job_id = response.json()["id"]
        job = self._poll(job_id, began, timeout)
        if job["status"] != "succeeded":
            raise RuntimeError(f"job {job_id} {job['status']}: {job['status_message']}")
        return job, time.perf_counter() - began

    def epoch_times(self, job_id: str) -> tuple[str, str]:
        """When the job's first and last epochs' metrics were recorded."""
        points = self.http.get(f"/v1/jobs/{job_id}/metrics").raise_for_status().json()
        return min(p["time"] for p in points), max(p["time"] for p in points)

    def run_job(self, model_name: str, epochs: int, timeout: float = 300) -> JobRun:
        job, e2e = self.train(seed_spec(model_name, epochs, VALIDATION_SPLIT), timeout)
        version = self.http.get(f"/v1/models/{model_name}/versions/{job['model_version']}")
        first, last = self.epoch_times(job["id"])
        return JobRun(
            e2e_s=e2e,
            train_s=seconds_between(job["started_at"], job["finished_at"]),
            setup_s=seconds_between(job["started_at"], first),
            epochs_s=seconds_between(first, last),
            register_s=seconds_between(last, job["finished_at"]),
            last_epoch_samples_per_s=float(job["progress"]["samples_per_s"]),
            train_rows=int(version.raise_for_status().json()["dataset"]["train_rows"]),
            val_accuracy=float(job["metrics"]["val_accuracy"]),
        )

    def _poll(self, job_id: str, began: float, timeout: float) -> dict[str, Any]:
        """GET the job every 0.1 s until it ends."""
        while time.perf_counter() - began < timeout:
            response = self.http.get(f"/v1/jobs/{job_id}")
            if response.status_code == 404 and time.perf_counter() - began < 5:
                # The 202 can arrive before the job row is committed (README.md, "Surprises").
                self.early_404s += 1
            else:
                job: dict[str, Any] = response.raise_for_status().json()
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    return job
            self._check_alive()
            time.sleep(0.1)
        raise RuntimeError(f"job {job_id} did not end within {timeout}s")

    def stop(self) -> None:
        self.http.close()
        stop_group(self.proc, 30)
        self._log.close()
        self.dir.cleanup()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"`trainserve up` exited early:\n{self.log_tail()}")


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run_service_jobs(port: int, threads: int, epochs: int, repeats: int) -> list[JobRun]:
    service = Service(port, threads)
    try:
        service.wait_ready()
        jobs = [service.run_job(f"bench-seed-{i}", epochs) for i in range(repeats)]
    finally:
        service.stop()
    if service.early_404s:
        print(f"note: GET /v1/jobs/{{id}} said 404 right after a 202 ({service.early_404s} polls)")
    return jobs


# --- report --------------------------------------------------------------------------------


def print_table(rows: list[tuple[str, float, float]]) -> None:
    """rows: (name, wall s, samples/s); the first row is the baseline for both ratios."""
    _, base_wall, base_rate = rows[0]
    print(f"{'':38} {'wall s':>8} {'samples/s':>10} {'samples/s ÷ seed':>17} {'wall ÷ seed':>12}")
    for name, wall, rate in rows:
        print(
            f"{name:38} {wall:8.3f} {rate:10.0f} {rate / base_rate:16.2f}x "
            f"{wall / base_wall:11.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; medians reported")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--port", type=int, default=0, help="for `trainserve up`; 0 = a free one")
    # One thread by default: this MLP gains nothing from more, and on a shared machine two
    # OpenMP threads stall whenever another process holds a core (README.md, Results).
    parser.add_argument("--threads", type=int, default=1, help="torch threads, every row")
    args = parser.parse_args()
    if args.repeats < 1 or args.epochs < 1 or args.threads < 1:
        parser.error("--repeats, --epochs and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}; "
        f"digits, mlp [128], sgd lr {LR} momentum {MOMENTUM}, batch {BATCH}, "
        f"{args.epochs} epochs, {args.repeats} repeats (medians)"
    )

    data = load_digits()
    samples = data.x_train.shape[0] * args.epochs
    seed_walls, seed_acc = time_in_process(seed_loop, data, args.epochs, args.repeats)
    loop_walls, loop_acc = time_in_process(service_loop, data, args.epochs, args.repeats)
    jobs = run_service_jobs(args.port or free_port(), args.threads, args.epochs, args.repeats)
    rows = data.x_train.shape[0]
    if jobs[0].train_rows != rows:
        raise RuntimeError(f"the service trained on {jobs[0].train_rows} rows, this bench {rows}")

    seed_wall, loop_wall = statistics.median(seed_walls), statistics.median(loop_walls)
    train_wall = statistics.median(j.train_s for j in jobs)
    e2e_wall = statistics.median(j.e2e_s for j in jobs)
    print(f"train rows {rows} x {args.epochs} epochs = {samples} samples\n")
    print_table(
        [
            ("seed loop (baseline)", seed_wall, samples / seed_wall),
            ("service loop, in-process (fit)", loop_wall, samples / loop_wall),
            ("service job, started→finished", train_wall, samples / train_wall),
            ("service job, end-to-end POST→done", e2e_wall, samples / e2e_wall),
        ]
    )
    print(
        f"\nservice job progress.samples_per_s (last epoch, loop only): "
        f"{statistics.median(j.last_epoch_samples_per_s for j in jobs):.0f}"
    )
    print(
        f"val accuracy: service job {statistics.median(j.val_accuracy for j in jobs):.4f}, "
        f"seed loop {seed_acc:.4f}, service loop in-process {loop_acc:.4f}"
    )
    print(
        "service job window, medians (s): "
        f"start→epoch 1 done {statistics.median(j.setup_s for j in jobs):.3f}, "
        f"epochs 2..{args.epochs} {statistics.median(j.epochs_s for j in jobs):.3f}, "
        f"last epoch→finished {statistics.median(j.register_s for j in jobs):.3f}"
    )
    print("each run (s):")
    print(run_line("seed loop", seed_walls, 13))
    print(run_line("service loop", loop_walls, 13))
    print(run_line("job train", (j.train_s for j in jobs), 13))
    print(run_line("job e2e", (j.e2e_s for j in jobs), 13))


if __name__ == "__main__":
    main()

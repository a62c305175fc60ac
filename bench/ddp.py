"""Data parallel against one process: the same seed job (digits, mlp [128], SGD, global batch
64, seed 0, a test split) trained by the service with training.devices 1 and then 2 (two gloo
ranks on the CPU), side by side: final validation and test metrics, and wall times.

  started→finished   the job row's window: the claim, data, (2 ranks: starting rank 1 and
                     joining the group), every epoch, the test and the registered version
  epoch 1→last       first to last epoch's metrics: the epochs alone, without start-up

Run from the repository root: .venv/bin/python bench/ddp.py [--epochs 10] [--repeats 1]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import torch

# isort: split
# bench's own modules: the script's folder is first on sys.path (python bench/ddp.py)
from common import free_port, seed_spec, server_env, start_group, stop_group

TRAINSERVE = Path(sys.executable).parent / "trainserve"
RUNNING = ("queued", "running")
METRICS = ("val_loss", "val_accuracy", "test_loss", "test_accuracy", "train_loss")


def ddp_spec(name: str, epochs: int, devices: int) -> dict[str, Any]:
    """The seed job with a test split; only `devices` differs between the two columns."""
    return seed_spec(name, epochs, 0.1, test_split=0.1, devices=devices, device="cpu")


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


class Service:
    """`trainserve up --workers 1` in a temp dir on the embedded defaults (SQLite, the
    filesystem broker); the admin key from its data dir."""

    def __init__(self, threads: int) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="trainserve-bench-ddp-")
        data_dir, port = Path(self.dir.name) / "data", free_port()
        self._log = open(Path(self.dir.name) / "up.log", "wb")  # noqa: SIM115 - closed in stop()
        args = ["up", "--data-dir", str(data_dir), "--port", str(port), "--workers", "1"]
        self.proc = start_group([str(TRAINSERVE), *args], server_env(threads), self._log)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.monotonic() + 120
        while not self._ready():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"`trainserve up` did not start:\n{self.log_tail()}")
            time.sleep(0.2)
        key = (data_dir / "admin.key").read_text().strip()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def _ready(self) -> bool:
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def run(self, spec: dict[str, Any], timeout: float = 600) -> dict[str, float]:
        """Train one job; → its final metrics and its wall times."""
        job_id = self.http.post("/v1/jobs", json=spec).raise_for_status().json()["id"]
        deadline = time.monotonic() + timeout
        while (job := self.http.get(f"/v1/jobs/{job_id}").json())["status"] in RUNNING:
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} did not end within {timeout}s")
            time.sleep(0.1)
        if job["status"] != "succeeded":
            raise RuntimeError(f"job {job_id} {job['status']}: {job['status_message']}")
        points = self.http.get(f"/v1/jobs/{job_id}/metrics").raise_for_status().json()
        first, last = min(p["time"] for p in points), max(p["time"] for p in points)
        return {
            **{name: float(job["metrics"][name]) for name in METRICS},
            "started→finished s": _seconds(job["started_at"], job["finished_at"]),
            "epoch 1→last s": _seconds(first, last),
            "samples/s (last epoch)": float(job["progress"]["samples_per_s"]),
        }

    def stop(self) -> None:
        self.http.close()
        stop_group(self.proc, 30)
        self._log.close()
        self.dir.cleanup()

    def log_tail(self) -> str:
        return (Path(self.dir.name) / "up.log").read_text(errors="replace")[-4000:]


def print_columns(one: dict[str, float], two: dict[str, float]) -> None:
    print(f"{'':24} {'1 process':>12} {'2 ranks (gloo)':>15} {'2 ÷ 1':>9}")
    for name in one:
        print(f"{name:24} {one[name]:12.6g} {two[name]:15.6g} {two[name] / one[name]:9.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each; medians reported")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads per process")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, cpus {os.cpu_count()}, {args.threads} thread(s) per "
        f"process; digits, mlp [128], sgd, global batch 64, {args.epochs} epochs, "
        f"{args.repeats} repeat(s)\n"
    )
    service = Service(args.threads)
    try:
        runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        for i in range(args.repeats):
            for devices in (1, 2):
                spec = ddp_spec(f"bench-ddp-{devices}-{i}", args.epochs, devices)
                runs[devices].append(service.run(spec))
    finally:
        service.stop()
    medians = {
        devices: {name: statistics.median(r[name] for r in done) for name in done[0]}
        for devices, done in runs.items()
    }
    print_columns(medians[1], medians[2])


if __name__ == "__main__":
    main()

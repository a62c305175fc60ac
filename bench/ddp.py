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
from typing import Any

import torch

# isort: split
# bench's own modules: the script's folder is first on sys.path (python bench/ddp.py)
from common import free_port, seed_spec
from seed_job import Service, seconds_between

METRICS = ("val_loss", "val_accuracy", "test_loss", "test_accuracy", "train_loss")


def ddp_spec(name: str, epochs: int, devices: int) -> dict[str, Any]:
    """The seed job with a test split; only `devices` differs between the two columns."""
    return seed_spec(name, epochs, 0.1, test_split=0.1, devices=devices, device="cpu")


def measure(service: Service, spec: dict[str, Any], timeout: float = 600) -> dict[str, float]:
    """Train one job on the service; → its final metrics and its wall times."""
    job, _ = service.train(spec, timeout)
    first, last = service.epoch_times(job["id"])
    return {
        **{name: float(job["metrics"][name]) for name in METRICS},
        "started→finished s": seconds_between(job["started_at"], job["finished_at"]),
        "epoch 1→last s": seconds_between(first, last),
        "samples/s (last epoch)": float(job["progress"]["samples_per_s"]),
    }


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
    service = Service(free_port(), args.threads)  # `trainserve up --workers 1`, embedded
    try:
        service.wait_ready()
        runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        for i in range(args.repeats):
            for devices in (1, 2):
                spec = ddp_spec(f"bench-ddp-{devices}-{i}", args.epochs, devices)
                runs[devices].append(measure(service, spec))
    finally:
        service.stop()
    medians = {
        devices: {name: statistics.median(r[name] for r in done) for name in done[0]}
        for devices, done in runs.items()
    }
    print_columns(medians[1], medians[2])


if __name__ == "__main__":
    main()

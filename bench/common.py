"""Pieces the bench scripts share: the seed job's settings and spec, a free port, a server's
environment, process groups, and the "each run" line of a report."""

import os
import signal
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

# The seed document's training: mlp [128], SGD lr 0.01 momentum 0.9, batch 64, seed 0.
SEED, BATCH, LR, MOMENTUM = 0, 64, 0.01, 0.9


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(threads: int, **extra: str) -> dict[str, str]:
    """This process's environment without any TRAINSERVE_* variable (so a service started with
    it uses the embedded defaults), unbuffered, with `threads` OpenMP threads, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINSERVE_")}
    return env | {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads), **extra}


def start_group(
    args: list[str], env: dict[str, str], log: IO[bytes], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """`args` in a process group of its own, stdout and stderr into `log`."""
    return subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: SIGTERM to it reaches every child
    )


def stop_group(popen: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM to the process group, if it still runs; SIGKILL if it is not gone in `timeout` s."""
    if popen.poll() is None:
        os.killpg(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(5)


def run_line(label: str, walls: Iterable[float], width: int) -> str:
    """One line of a report's "each run" block: the label, then every run's wall seconds."""
    return f"  {label:{width}} " + " ".join(f"{w:.3f}" for w in walls)


def seed_spec(
    model_name: str, epochs: int, validation_split: float, **training: Any
) -> dict[str, Any]:
    """The seed job as a job spec (tests/support.py seed_spec, written out: bench does not
    import tests). `training` adds fields, e.g. compile."""
    return {
        "model_name": model_name,
        "dataset": {"builtin": "digits"},
        "model": {"arch": "mlp", "hidden": [128]},
        "training": {
            "epochs": epochs,
            "batch_size": BATCH,
            "optimizer": {"name": "sgd", "lr": LR, "momentum": MOMENTUM},
            "validation_split": validation_split,
            "seed": SEED,
            **training,
        },
    }

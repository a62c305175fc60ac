"""Pieces the bench scripts share: the seed job's settings and spec, a free port, a server's
environment, process groups and their CPU time, and the "each run" line of a report."""

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

# The repository root, for the scripts that start the stack with tests/support.py's helpers:
# `tests` is not an installed package.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

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


def tree_cpu_seconds(pid: int) -> float:
    """user + system CPU of the process `pid` and all its descendants (threads included)."""
    stats = _proc_stats()
    tree, frontier = set(), {pid}
    while frontier:
        tree |= frontier
        frontier = {p for p, (ppid, _) in stats.items() if ppid in frontier} - tree
    return sum(stats[p][1] for p in tree if p in stats)


def _proc_stats() -> dict[int, tuple[int, float]]:
    """pid → (ppid, user + system CPU seconds), from /proc/<pid>/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it exited meanwhile
        out[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return out


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

"""`trainserve up` runs the API and its workers in the foreground; Ctrl-C (SIGINT) or a
SIGTERM stops all of them, and a worker that dies is restarted."""

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support import BIN, Proc, base_env, free_port, wait_http_ok, wait_until


def worker_pids(parent: int) -> set[int]:
    out = subprocess.run(
        ["pgrep", "-P", str(parent), "-f", "celery"], capture_output=True, text=True
    )
    return {int(pid) for pid in out.stdout.split()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def start_up(tmp_path: Path, workers: int) -> Proc:
    port = free_port()
    args = [
        str(BIN),
        "up",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--data-dir",
        str(tmp_path / "d"),
    ]
    proc = Proc(args, base_env(), tmp_path / "up.log")
    wait_http_ok(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_up_stops_every_worker(tmp_path: Path, sig: signal.Signals) -> None:
    proc = start_up(tmp_path, workers=2)
    try:
        pids = wait_until(lambda: len(p := worker_pids(proc.popen.pid)) == 2 and p, 30, "2 workers")
        proc.popen.send_signal(
            sig
        )  # to `up` alone, as a supervisor or Ctrl-C in its terminal would
        proc.popen.wait(40)
        wait_until(lambda: not any(alive(p) for p in pids), 30, "the workers to exit")
    finally:
        proc.stop()


def test_a_dead_worker_is_restarted(tmp_path: Path) -> None:
    proc = start_up(tmp_path, workers=1)
    try:
        (first,) = wait_until(lambda: worker_pids(proc.popen.pid), 30, "the worker")
        os.killpg(first, signal.SIGKILL)
        replacement = wait_until(lambda: worker_pids(proc.popen.pid) - {first}, 30, "a new worker")
        assert len(replacement) == 1
        assert "restarting" in proc.output()
    finally:
        proc.stop()
        for pid in worker_pids(proc.popen.pid):
            os.killpg(pid, signal.SIGKILL)

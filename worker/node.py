"""This worker node: its one identity, and what runs beside the pool in its main process:
its row in `workers` (its pool, the devices it can train on, how many jobs it runs at once,
whether it is draining) kept fresh by a heartbeat, and the reaper, which runs in whichever
worker holds the reaper lock.

The device probe runs in a short-lived subprocess: asking torch in this (prefork parent)
process would initialize CUDA, and children forked after that cannot use it. The subprocess
inherits this process's CUDA_VISIBLE_DEVICES (`trainserve worker --gpus`), so it sees what
the pool children will.
"""

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time

from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.db import db_now, session_scope, upsert
from app.core.pools import pool_key
from app.models.base import utcnow
from app.models.worker import WorkerNode
from app.services import reaper
from app.storage import StoreError, store_for

log = logging.getLogger(__name__)
HEARTBEAT_S = 15.0
STORE_SWEEP_S = 3600.0
INCOMPLETE_AFTER_S = 24 * 3600.0
_node_id: str | None = None


def pin_node_id() -> str:
    """Fix this node's id: host and pid of Celery's main process. Called there at worker_init,
    before the pool forks, so every pool child inherits this value rather than rebuilding it
    from a pid of its own (its parent's pid is not the node under a solo pool, for one)."""
    global _node_id
    if _node_id is None:
        _node_id = f"{socket.gethostname()}:{os.getpid()}"
    return _node_id


def node_id() -> str:
    """This node's id: its row in `workers`, the reaper lock's holder, the drain a job watches."""
    if _node_id is None:
        raise RuntimeError("node id asked for before worker_init pinned it")
    return _node_id


def process_id() -> str:
    """The process training a job now (jobs.worker_id): a pool child of this node, found by
    its pid (operators and tests signal it)."""
    return f"{socket.gethostname()}:{os.getpid()}"


_PROBE = """
import json, torch
n = torch.cuda.device_count() if torch.cuda.is_available() else 0
print(json.dumps([f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(n)] or ["cpu"]))
"""


def probe_devices() -> list[str]:
    """What torch sees here: ["cpu"], or ["cuda:0 NVIDIA H200", ...]."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120
        )
        devices = json.loads(out.stdout.strip().splitlines()[-1])
        return [str(d) for d in devices] if isinstance(devices, list) and devices else ["cpu"]
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        log.warning("could not probe devices (%s); advertising cpu only", exc)
        return ["cpu"]


class NodeHeartbeat:
    def __init__(self, node_id: str, concurrency: int = 1, pool: str | None = None) -> None:
        self.node_id = node_id
        self.concurrency = concurrency
        self.pool = pool_key(pool)
        self.devices = ["cpu"]
        self._stop = threading.Event()

    def start(self) -> None:
        self.devices = probe_devices()
        threading.Thread(target=self._run, name="node-heartbeat", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        try:
            with session_scope() as session:
                session.execute(delete(WorkerNode).where(WorkerNode.id == self.node_id))
        except SQLAlchemyError as exc:
            log.warning("could not remove worker row %s: %s", self.node_id, exc)

    def drain(self) -> None:
        """A graceful shutdown began (SIGTERM): mark this node draining, the start of the one
        drain path. The running job is in a pool child, which Celery's warm shutdown waits
        for but does not signal; the child's lease renewal already reads the database every
        heartbeat_s, so it reads this row too (job_state.heartbeat), stops after its next step
        (worker/training/stop.py) and is requeued from its last checkpoint by the runner.
        An upsert, so a SIGTERM before this node's first heartbeat wrote its row still
        reaches the job."""
        with session_scope() as session:
            upsert(
                session,
                WorkerNode,
                self._row_values(session) | {"draining": True},
                ["id"],
                ["draining", "last_seen"],
            )

    def _run(self) -> None:
        while True:
            try:
                self._beat()
            except SQLAlchemyError as exc:  # the database may be restarting; try again next beat
                log.warning("worker heartbeat failed: %s", exc)
            if self._stop.wait(HEARTBEAT_S):
                return

    def _beat(self) -> None:
        """Insert or refresh this worker's row; never touches `draining` once it is set."""
        with session_scope() as session:
            upsert(
                session,
                WorkerNode,
                self._row_values(session),
                ["id"],
                ["pool", "cuda_devices", "devices", "concurrency", "last_seen"],
            )

    def _row_values(self, session: Session) -> dict[str, object]:
        # last_seen on the database's clock: the API and the reaper judge it on that clock
        return {
            "id": self.node_id,
            "hostname": socket.gethostname(),
            "pool": self.pool,
            "cuda_devices": sum(d.startswith("cuda:") for d in self.devices),
            "devices": self.devices,
            "concurrency": self.concurrency,
            "draining": False,
            "started_at": utcnow(),
            "last_seen": db_now(session),
        }


class ReaperLoop:
    """Reaps every reaper_interval_s while this worker holds the reaper lock."""

    def __init__(self, node_id: str, settings: Settings) -> None:
        self.node_id = node_id
        self.settings = settings
        self._stop = threading.Event()
        self._next_sweep = 0.0  # monotonic time of the next artifact store sweep

    def start(self) -> None:
        threading.Thread(target=self._run, name="reaper", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.reaper_interval_s):
            try:
                self.reap_once()
            except SQLAlchemyError as exc:  # the database may be restarting; try again next round
                log.warning("reaper round failed: %s", exc)

    def reap_once(self) -> reaper.Reaped | None:
        # The lease outlives a few missed rounds, so a busy holder keeps it.
        ttl = 3 * self.settings.reaper_interval_s
        with session_scope() as session:
            if not reaper.acquire(session, reaper.LOCK, self.node_id, ttl):
                return None
            done = reaper.reap(session, self.settings)
        if done.requeued or done.failed or done.resent:
            log.warning(
                "reaper: requeued %s, failed %s, resent %s", done.requeued, done.failed, done.resent
            )
        self._sweep_store()
        return done

    def _sweep_store(self) -> None:
        """What puts killed half-way left in the store (incomplete multipart uploads, staged
        files): never read, but they take space. Hourly, by the reaper's holder only, and only
        what is a day old, so no put that still runs is cut short."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + STORE_SWEEP_S
        try:
            removed = store_for(self.settings).clean_incomplete(INCOMPLETE_AFTER_S)
        except StoreError as exc:
            log.warning("reaper: the artifact store sweep failed: %s", exc)
            return
        if removed:
            log.warning("reaper: removed %d incomplete uploads from the artifact store", removed)

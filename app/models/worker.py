from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column, synonym

from app.models.base import Base, utcnow

# A worker whose row was not refreshed for this long (on the database's clock) is gone; its
# heartbeat refreshes it every 15 s.
WORKER_FRESH_S = 60.0


class WorkerNode(Base):
    """A running worker and what it can train on; refreshed by its heartbeat.

    The API reads it to refuse, at submission, a job for a pool or a device no live worker
    has, and lists it (GET /v1/workers); the reaper reads how many jobs each pool's live
    workers have room for. What a node runs is not stored here: the job rows say it
    (jobs.node_id of the running ones).
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # hostname:pid
    hostname: Mapped[str] = mapped_column(String(200))
    # the pool it consumes (app/core/pools.py); None: the default pool
    pool: Mapped[str | None] = mapped_column(String(64))
    cuda_devices: Mapped[int] = mapped_column(Integer, default=0)
    # what torch sees in its process: ["cpu"] or ["cuda:0 NVIDIA H200", ...]
    devices: Mapped[list[Any]] = mapped_column(default=list)
    # jobs it runs at once: the reaper resends a stale queued job's message only while some
    # live worker has room for it (otherwise the message is waiting in the queue, not lost)
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    # set on a graceful shutdown: its running job checkpoints and goes back to the queue
    draining: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    # the keyset pagination's order (app/services/pagination.py): oldest node last
    created_at = synonym("started_at")


class LeaderLock(Base):
    """A named lease that one process holds at a time (the reaper), taken over once it lapses."""

    __tablename__ = "leader_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime]

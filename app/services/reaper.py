"""The reaper: nothing accepted is ever lost.

- A running job whose lease lapsed (its worker died, or was cut off) goes back to the queue
  as the next attempt, which resumes from its last checkpoint; after max_attempts it fails
  with reason worker_lost.
- A queued job not claimed requeue_after_s after its message was sent (the broker lost it,
  or the process died between commit and publish) is sent again, to its pool's queue, but
  only while some live worker of that pool has room for it: while every worker is busy, its
  message is waiting in the queue, not lost, and sending it again would only pile up
  duplicates. A duplicate is harmless anyway: the claim is a guarded UPDATE, and the worker
  drops it before it takes a process.

Leases are judged on the database's clock, like the heartbeats that renew them, so hosts
whose clocks disagree do not reap each other's live jobs. One process reaps at a time: it
holds the `reaper` leader lock, a lease in the database.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.db import db_now, execute_update
from app.models import Job, JobStatus, LeaderLock, WorkerNode
from app.models.base import UTCDateTime, utcnow
from app.models.worker import WORKER_FRESH_S
from app.services import job_state
from app.services.queue import enqueue_job

LOCK = "reaper"
# A worker row not heard from in this long is forgotten: GET /v1/workers shows it "gone"
# until then, so a SIGKILLed or lost host stays visible for a day, and rows do not pile up.
FORGET_WORKERS_AFTER_S = 24 * 3600.0


@dataclass
class Reaped:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    forgotten: int = 0  # worker rows gone for FORGET_WORKERS_AFTER_S


def acquire(session: Session, name: str, holder: str, ttl_s: float) -> bool:
    """Take or renew the named lease; True while this holder has it."""
    taken = execute_update(
        session,
        update(LeaderLock)
        .where(
            LeaderLock.name == name,
            (LeaderLock.holder == holder) | (LeaderLock.expires_at < db_now(session)),
        )
        .values(holder=holder, expires_at=db_now(session, ttl_s)),
    )
    if taken:
        return True
    try:
        with session.begin_nested():
            session.add(
                LeaderLock(name=name, holder=holder, expires_at=utcnow() + timedelta(seconds=ttl_s))
            )
    except IntegrityError:
        return False  # another process holds it
    return True


def reap(session: Session, settings: Settings, now: datetime | None = None) -> Reaped:
    """One round. `now` stands in for the database's clock (tests judge rows as if later)."""
    clock = _Clock(session, now)
    result = Reaped()
    for job in _lapsed(session, clock):
        outcome = job_state.recover_lapsed(session, job, now=clock())
        if outcome is not None:
            (result.failed if outcome == "failed" else result.requeued).append(job.id)
    for job in _plausibly_lost(session, settings, clock):
        job.enqueued_at = clock()  # evaluated in the UPDATE
        enqueue_job(session, job.id, job.pool)
        job_state.add_event(
            session, job.id, job.attempt, "resent", "still queued; its message was sent again"
        )
        result.resent.append(job.id)
    result.forgotten = execute_update(
        session,
        delete(WorkerNode).where(WorkerNode.last_seen < clock(-FORGET_WORKERS_AFTER_S)),
    )
    return result


@dataclass(frozen=True)
class _Clock:
    session: Session
    now: datetime | None

    def __call__(self, plus_s: float = 0.0) -> ColumnElement[datetime]:
        if self.now is None:
            return db_now(self.session, plus_s)
        return literal(self.now + timedelta(seconds=plus_s), UTCDateTime())


def _plausibly_lost(session: Session, settings: Settings, clock: _Clock) -> list[Job]:
    """Queued jobs sent long ago, in each pool as many as its live workers have room for."""
    lost: list[Job] = []
    for pool, room in idle_capacity(session, clock).items():
        if room <= 0:
            continue
        query = (
            select(Job)
            .where(
                Job.status == JobStatus.queued,
                Job.enqueued_at < clock(-settings.requeue_after_s),
                _in_pool(pool),
            )
            .order_by(Job.enqueued_at)
            .limit(room)
        )
        lost.extend(session.scalars(query))
    return lost


def idle_capacity(session: Session, clock: _Clock | None = None) -> dict[str | None, int]:
    """Jobs each pool's live workers could take now (None: the default pool): their
    concurrency less the jobs running on them. A draining worker takes nothing new, so
    neither its slots nor its jobs count (its jobs would hide an idle worker's room)."""
    clock = clock or _Clock(session, None)
    taking = (WorkerNode.last_seen >= clock(-WORKER_FRESH_S)) & WorkerNode.draining.is_(False)
    slots = session.execute(
        select(WorkerNode.pool, func.sum(WorkerNode.concurrency))
        .where(taking)
        .group_by(WorkerNode.pool)
    )
    room: dict[str | None, int] = {pool: int(n or 0) for pool, n in slots}
    on_taking = select(WorkerNode.id).where(taking)
    running = session.execute(
        select(Job.pool, func.count())
        .where(Job.status == JobStatus.running, Job.node_id.in_(on_taking))
        .group_by(Job.pool)
    )
    for pool, n in running:
        if pool in room:
            room[pool] -= int(n)
    return room


def _in_pool(pool: str | None) -> ColumnElement[bool]:
    return Job.pool.is_(None) if pool is None else Job.pool == pool


def _lapsed(session: Session, clock: _Clock) -> list[Job]:
    query = select(Job).where(Job.status == JobStatus.running, Job.lease_expires_at < clock())
    return list(session.scalars(query))

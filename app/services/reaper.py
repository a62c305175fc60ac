"""The reaper: nothing accepted is ever lost.

- A running job whose lease lapsed (its worker died, or was cut off) goes back to the queue
  as the next attempt, which resumes from its last checkpoint; after max_attempts it fails
  with reason worker_lost.
- A queued job not claimed requeue_after_s after its message was sent (the broker lost it,
  or the process died between commit and publish) is sent again. A duplicate is harmless:
  the claim is a guarded UPDATE.

One process reaps at a time: it holds the `reaper` leader lock, a lease in the database.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.db import execute_update
from app.core.queue import TRAIN_TASK, enqueue_after_commit
from app.models import Job, JobStatus, LeaderLock
from app.models.base import utcnow
from app.services.job_state import add_event

LOCK = "reaper"


@dataclass
class Reaped:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)


def acquire(session: Session, name: str, holder: str, ttl_s: float) -> bool:
    """Take or renew the named lease; True while this holder has it."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl_s)
    taken = execute_update(
        session,
        update(LeaderLock)
        .where(
            LeaderLock.name == name, (LeaderLock.holder == holder) | (LeaderLock.expires_at < now)
        )
        .values(holder=holder, expires_at=expires),
    )
    if taken:
        return True
    try:
        with session.begin_nested():
            session.add(LeaderLock(name=name, holder=holder, expires_at=expires))
    except IntegrityError:
        return False  # another process holds it
    return True


def reap(session: Session, settings: Settings, now: datetime | None = None) -> Reaped:
    now = now or utcnow()
    result = Reaped()
    for job in _lapsed(session, now):
        _recover(session, job, now, result)
    cutoff = now - timedelta(seconds=settings.requeue_after_s)
    for job in session.scalars(
        select(Job).where(Job.status == JobStatus.queued, Job.enqueued_at < cutoff)
    ):
        job.enqueued_at = now
        enqueue_after_commit(session, TRAIN_TASK, [job.id])
        add_event(
            session, job.id, job.attempt, "resent", "still queued; its message was sent again"
        )
        result.resent.append(job.id)
    return result


def _lapsed(session: Session, now: datetime) -> list[Job]:
    query = select(Job).where(Job.status == JobStatus.running, Job.lease_expires_at < now)
    return list(session.scalars(query))


def _recover(session: Session, job: Job, now: datetime, result: Reaped) -> None:
    """Guarded on the lapsed lease too: a heartbeat that got in first keeps its job."""
    lost = f"lease lost (worker {job.worker_id}, attempt {job.attempt})"
    still_lapsed = update(Job).where(
        Job.id == job.id,
        Job.status == JobStatus.running,
        Job.attempt == job.attempt,
        Job.lease_expires_at < now,
    )
    if job.attempt >= job.max_attempts:
        message = f"worker_lost: {lost}; no attempts left of {job.max_attempts}"
        values = {"status": JobStatus.failed, "status_message": message, "finished_at": now}
        kind, bucket = "failed", result.failed
    else:
        message = f"{lost}; requeued as attempt {job.attempt + 1}"
        values = {"status": JobStatus.queued, "worker_id": None, "enqueued_at": now}
        kind, bucket = "requeued", result.requeued
    if not execute_update(
        session, still_lapsed.values(lease_expires_at=None, updated_at=now, **values)
    ):
        return
    add_event(session, job.id, job.attempt, kind, message)
    if kind == "requeued":
        enqueue_after_commit(session, TRAIN_TASK, [job.id])
    bucket.append(job.id)

"""The job state machine: queued → running → succeeded | failed | cancelled.

Every move is one guarded UPDATE, so a duplicate message, a stale worker or a race with
cancel changes nothing. A running job's writes are fenced by its attempt number: once a
job has moved on (reaped, cancelled, finished), the old attempt's updates match no row.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.db import execute_update
from app.core.queue import TRAIN_TASK, enqueue_after_commit
from app.models import Job, JobEvent, JobMetric, JobStatus, WorkerNode
from app.models.base import utcnow


class LeaseLost(Exception):
    """This attempt no longer owns the job; it must stop without writing anything."""


@dataclass(frozen=True)
class Claim:
    job_id: str
    attempt: int
    spec: dict[str, Any]
    started_at: datetime  # the first attempt's start: max_runtime_s counts from here


@dataclass(frozen=True)
class Control:
    """What a heartbeat learns: stop for a cancel, or hand the job back (worker draining)."""

    cancel_requested: bool
    draining: bool


def add_event(session: Session, job_id: str, attempt: int, kind: str, message: str) -> None:
    session.add(JobEvent(job_id=job_id, attempt=attempt, kind=kind, message=message))


def claim(session: Session, job_id: str, worker_id: str, lease_s: float) -> Claim | None:
    """Take a queued job. Returns None when it is not queued (a second delivery: a no-op)."""
    now = utcnow()
    job = session.get(Job, job_id)
    if job is None:
        return None
    attempt = job.attempt + 1
    claimed = execute_update(
        session,
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued, Job.attempt == job.attempt)
        .values(
            status=JobStatus.running,
            attempt=attempt,
            worker_id=worker_id,
            heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=lease_s),
            started_at=job.started_at or now,
            updated_at=now,
        ),
    )
    if not claimed:
        return None
    add_event(
        session, job_id, attempt, "claimed", f"claimed by worker {worker_id} (attempt {attempt})"
    )
    return Claim(job_id=job_id, attempt=attempt, spec=job.spec, started_at=job.started_at or now)


def _running(job_id: str, attempt: int) -> Any:
    return (Job.id == job_id) & (Job.status == JobStatus.running) & (Job.attempt == attempt)


def _update_running(session: Session, job_id: str, attempt: int, **values: Any) -> None:
    """One guarded UPDATE of a running attempt's row; LeaseLost once it no longer owns the job."""
    statement = update(Job).where(_running(job_id, attempt)).values(updated_at=utcnow(), **values)
    if not execute_update(session, statement):
        raise LeaseLost(job_id)


def heartbeat(
    session: Session,
    job_id: str,
    attempt: int,
    lease_s: float,
    progress: dict[str, Any],
    node_id: str | None = None,
) -> Control:
    """Renew the lease and publish progress; LeaseLost if this attempt no longer owns the job."""
    now = utcnow()
    _update_running(
        session,
        job_id,
        attempt,
        heartbeat_at=now,
        lease_expires_at=now + timedelta(seconds=lease_s),
        progress=progress,
    )
    cancel = bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
    draining = node_id is not None and bool(
        session.scalar(select(WorkerNode.draining).where(WorkerNode.id == node_id))
    )
    return Control(cancel, draining)


def requeue(session: Session, job_id: str, attempt: int, kind: str, reason: str) -> None:
    """Hand a running attempt's job back to the queue; the next claim resumes it."""
    _update_running(
        session,
        job_id,
        attempt,
        status=JobStatus.queued,
        worker_id=None,
        lease_expires_at=None,
        enqueued_at=utcnow(),
    )
    add_event(session, job_id, attempt, kind, f"{reason}; requeued as attempt {attempt + 1}")
    enqueue_after_commit(session, TRAIN_TASK, [job_id])


def record_epoch(
    session: Session,
    job_id: str,
    attempt: int,
    epoch: int,
    step: int,
    metrics: dict[str, float],
    report: dict[str, Any] | None = None,
) -> None:
    job = session.scalar(select(Job).where(_running(job_id, attempt)).with_for_update())
    if job is None:
        raise LeaseLost(job_id)
    now = utcnow()
    session.add_all(
        JobMetric(job_id=job_id, epoch=epoch, step=step, name=name, value=value, time=now)
        for name, value in metrics.items()
    )
    job.metrics = {**(job.metrics or {}), **metrics}
    if report:
        job.report = report


def finish(
    session: Session,
    job_id: str,
    attempt: int,
    status: JobStatus,
    message: str,
    model_version: int | None = None,
) -> None:
    """Move a running attempt to a terminal state; raise LeaseLost if it no longer owns the job."""
    _update_running(
        session,
        job_id,
        attempt,
        status=status,
        status_message=message,
        model_version=model_version,
        finished_at=utcnow(),
        lease_expires_at=None,
    )
    add_event(session, job_id, attempt, str(status), message)

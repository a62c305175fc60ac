"""The job state machine: queued → running → succeeded | failed | cancelled.

Every move is one guarded UPDATE, so a duplicate message, a stale worker or a race with
cancel changes nothing. A running job's writes are fenced by its attempt number: once a
job has moved on (reaped, cancelled, finished), the old attempt's updates match no row.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.core.db import db_now, execute_update
from app.models import Job, JobEvent, JobMetric, JobStatus, WorkerNode
from app.models.base import utcnow
from app.services import registry
from app.services.queue import enqueue_job


class LeaseLost(Exception):
    """This attempt no longer owns the job; it must stop without writing anything."""


@dataclass(frozen=True)
class Claim:
    job_id: str
    attempt: int
    spec: dict[str, Any]
    started_at: datetime  # the first attempt's start: max_runtime_s counts from here
    project: str = "default"  # where the spec's names (a warm start's model) resolve
    checkpoints: dict[str, Any] | None = None  # what earlier attempts committed (resume.py)


@dataclass(frozen=True)
class Control:
    """What a heartbeat learns: stop for a cancel, or hand the job back (worker draining)."""

    cancel_requested: bool
    draining: bool


def add_event(session: Session, job_id: str, attempt: int, kind: str, message: str) -> None:
    """An event written in a transaction that a guarded statement already decided."""
    session.add(JobEvent(job_id=job_id, attempt=attempt, kind=kind, message=message))


def attempt_event(session: Session, job_id: str, attempt: int, kind: str, message: str) -> None:
    """An event of a running attempt (resumed, compile skipped), fenced as its other writes
    are: LeaseLost once the attempt no longer owns the job, so a stale attempt writes none."""
    _update_running(session, job_id, attempt)
    add_event(session, job_id, attempt, kind, message)


def claim(
    session: Session, job_id: str, worker_id: str, lease_s: float, node_id: str | None = None
) -> Claim | None:
    """Take a queued job for a pool child (worker_id) of a node (node_id: what GET /v1/workers
    shows it running). Returns None when it is not queued (a second delivery: a no-op)."""
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
            node_id=node_id,
            heartbeat_at=db_now(session),
            lease_expires_at=db_now(session, lease_s),
            started_at=func.coalesce(Job.started_at, db_now(session)),
            updated_at=utcnow(),
        ),
    )
    if not claimed:
        return None
    session.refresh(job)
    add_event(
        session, job_id, attempt, "claimed", f"claimed by worker {worker_id} (attempt {attempt})"
    )
    assert job.started_at is not None
    return Claim(
        job_id=job_id,
        attempt=attempt,
        spec=job.spec,
        started_at=job.started_at,
        project=job.project,
        checkpoints=job.checkpoints,
    )


def is_queued(session: Session, job_id: str) -> bool:
    """Whether a message for this job has anything to do (the rest are duplicates)."""
    return session.scalar(select(Job.status).where(Job.id == job_id)) == JobStatus.queued


def _running(job_id: str, attempt: int) -> Any:
    return (Job.id == job_id) & (Job.status == JobStatus.running) & (Job.attempt == attempt)


def _update_running(session: Session, job_id: str, attempt: int, **values: Any) -> None:
    """The fence: one guarded UPDATE of a running attempt's row, LeaseLost once it no longer
    owns the job. It holds the row (PostgreSQL) or the database (SQLite) until the commit, so
    whatever the caller writes after it in the same transaction is fenced too: a reaper that
    comes in between waits, then finds the job moved on."""
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
    """Renew the lease on the database's clock and publish progress; LeaseLost if this attempt
    no longer owns the job."""
    _update_running(
        session,
        job_id,
        attempt,
        heartbeat_at=db_now(session),
        lease_expires_at=db_now(session, lease_s),
        progress=progress,
    )
    cancel = bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
    draining = node_id is not None and bool(
        session.scalar(select(WorkerNode.draining).where(WorkerNode.id == node_id))
    )
    return Control(cancel, draining)


def requeue(
    session: Session, job_id: str, attempt: int, kind: str, reason: str, delay_s: float = 0
) -> None:
    """Hand a running attempt's job back to the queue; the next claim resumes it (after
    delay_s, when retrying soon would only fail the same way)."""
    _update_running(
        session,
        job_id,
        attempt,
        status=JobStatus.queued,
        worker_id=None,
        node_id=None,
        lease_expires_at=None,
        enqueued_at=db_now(session, delay_s),
    )
    add_event(session, job_id, attempt, kind, f"{reason}; requeued as attempt {attempt + 1}")
    enqueue_job(session, job_id, _pool_of(session, job_id), countdown_s=delay_s)


def _pool_of(session: Session, job_id: str) -> str | None:
    return session.scalar(select(Job.pool).where(Job.id == job_id))


def retry_later(
    session: Session,
    job_id: str,
    attempt: int,
    reason: str,
    delay_s: float,
    kind: str = "storage_full",
) -> None:
    """A failure that is not the job's (storage full, the artifact store unreachable): requeue
    it as the next attempt after delay_s, resuming from its last checkpoint; once its attempts
    are spent, fail it saying why. Both behind the fence: LeaseLost if this attempt no longer
    owns the job. kind names the failure in the message and the event."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or attempt >= job.max_attempts:
        message = f"{kind}: {reason}; no attempts left"
        finish(session, job_id, attempt, JobStatus.failed, message)
        return
    retrying = f"{kind}: {reason}; retrying in {delay_s:.0f} s"
    requeue(session, job_id, attempt, kind, retrying, delay_s=delay_s)


def record_epoch(
    session: Session,
    job_id: str,
    attempt: int,
    epoch: int,
    step: int,
    metrics: dict[str, float],
    report: dict[str, Any] | None = None,
    progress: dict[str, Any] | None = None,
    checkpoints: dict[str, Any] | None = None,
) -> None:
    """One epoch's metrics (and the progress they mark, and the checkpoints kept once its own
    is stored), fenced: a reaped attempt writes none, so its checkpoints are never named."""
    values: dict[str, Any] = {"progress": progress} if progress else {}
    if checkpoints is not None:
        values["checkpoints"] = checkpoints
    _update_running(session, job_id, attempt, **values)
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    now = utcnow()
    session.add_all(
        JobMetric(job_id=job_id, epoch=epoch, step=step, name=name, value=value, time=now)
        for name, value in metrics.items()
    )
    job.metrics = {**(job.metrics or {}), **metrics}
    if report:
        job.report = report


def epoch_metrics(session: Session, job_id: str, epoch: int) -> dict[str, float]:
    """An epoch's recorded metrics, whichever attempt recorded them (the last value of each)."""
    query = (
        select(JobMetric.name, JobMetric.value)
        .where(JobMetric.job_id == job_id, JobMetric.epoch == epoch)
        .order_by(JobMetric.id)
    )
    return {name: value for name, value in session.execute(query)}


def finish(
    session: Session,
    job_id: str,
    attempt: int,
    status: JobStatus,
    message: str,
) -> None:
    """Move a running attempt to a terminal state; raise LeaseLost if it no longer owns the job."""
    _update_running(
        session,
        job_id,
        attempt,
        status=status,
        status_message=message,
        finished_at=utcnow(),
        lease_expires_at=None,
    )
    add_event(session, job_id, attempt, str(status), message)


def succeed(
    session: Session,
    job_id: str,
    attempt: int,
    result: dict[str, Any],
    lineage: dict[str, Any],
    message: Callable[[int], str],
) -> int:
    """Register the trained version and mark the job succeeded, in one transaction behind one
    fence: only the attempt that still owns the job registers, and exactly once. `result` is
    the job's final metrics and report; message(version) its status message."""
    _update_running(
        session,
        job_id,
        attempt,
        status=JobStatus.succeeded,
        finished_at=utcnow(),
        lease_expires_at=None,
        **result,
    )
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    row = registry.register_version(
        session, project=job.project, model_name=job.model_name, job_id=job_id, **lineage
    )
    job.model_version, job.status_message = row.version, message(row.version)
    add_event(session, job_id, attempt, str(JobStatus.succeeded), job.status_message)
    return row.version


def recover_lapsed(session: Session, job: Job, now: Any) -> Literal["failed", "requeued"] | None:
    """A running attempt whose lease lapsed (its worker died or lost the database): requeued
    as the next attempt, or failed when none is left. Guarded on the lapsed lease too: a
    heartbeat that got in first keeps its job (None). `now`: the database's clock
    (app/services/reaper.py), which judges the lease and stamps a requeue."""
    lost = f"lease lost (worker {job.worker_id}, attempt {job.attempt})"
    still_lapsed = update(Job).where(_running(job.id, job.attempt), Job.lease_expires_at < now)
    kind: Literal["failed", "requeued"]
    if job.attempt >= job.max_attempts:
        message = f"worker_lost: {lost}; no attempts left of {job.max_attempts}"
        values = {"status": JobStatus.failed, "status_message": message, "finished_at": utcnow()}
        kind = "failed"
    else:
        message = f"{lost}; requeued as attempt {job.attempt + 1}"
        values = {"status": JobStatus.queued, "worker_id": None, "node_id": None}
        values["enqueued_at"] = now
        kind = "requeued"
    statement = still_lapsed.values(lease_expires_at=None, updated_at=utcnow(), **values)
    if not execute_update(session, statement):
        return None
    add_event(session, job.id, job.attempt, kind, message)
    if kind == "requeued":
        enqueue_job(session, job.id, job.pool)
    return kind

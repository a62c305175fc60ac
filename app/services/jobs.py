"""Jobs as the API sees them: submit, read, list, cancel."""

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.db import db_now, execute_update, insert_or_ignore, serialize
from app.core.errors import Conflict, NotFound, TooManyRequests, invalid_field
from app.core.pools import pool_key
from app.models import TERMINAL, Job, JobEvent, JobMetric, JobStatus
from app.models.base import new_id, utcnow
from app.schemas.job import Arch, JobSpec
from app.services import spec_checks
from app.services.auth import Principal
from app.services.dataset_catalog import dataset_info
from app.services.job_state import add_event
from app.services.pagination import paginate
from app.services.pretrained_checks import check_pretrained
from app.services.queue import enqueue_job
from app.services.warm_start import check_init


def validate_spec(
    session: Session,
    spec: JobSpec,
    settings: Settings,
    tenant: str | None = None,
    project: str | None = None,
) -> JobSpec:
    """What the schema alone cannot check: datasets and base models that exist, fit, and the
    explicit limits. Returns the spec as the job keeps it (a base model pinned to its id);
    `project` is where names resolve (the caller's, when tenant spans every project)."""
    training = spec.training
    if training.epochs > settings.max_epochs:
        raise invalid_field("training.epochs", f"at most {settings.max_epochs} epochs per job")
    if (training.max_runtime_s or 0) > settings.max_job_runtime_s:
        raise invalid_field(
            "training.max_runtime_s", f"at most {settings.max_job_runtime_s} s per job"
        )
    if training.batch_size > settings.max_batch_size:
        raise invalid_field("training.batch_size", f"at most {settings.max_batch_size}")
    if len(spec.model.hidden) > settings.max_hidden_layers:
        raise invalid_field("model.hidden", f"at most {settings.max_hidden_layers} hidden layers")
    if any(h > settings.max_hidden_units for h in spec.model.hidden):
        raise invalid_field("model.hidden", f"at most {settings.max_hidden_units} units per layer")
    # The dataset: a builtin, or an upload that exists (422 naming dataset.builtin / dataset.id).
    info = dataset_info(session, spec.dataset, tenant)
    name = spec.dataset.builtin or spec.dataset.id or ""
    spec_checks.check_fit(spec, info.kind, info.task, info.classes, name)
    spec_checks.check_workers(session, training.pool, training.device)
    spec_checks.check_devices(session, training, settings.max_cpu_ranks)
    where = project or tenant or "default"
    if spec.model.arch == Arch.pretrained:
        spec = check_pretrained(session, spec, info, settings, where)
    else:
        spec_checks.check_footprint(spec, info, settings)
    return check_init(session, spec, info, where) if spec.init is not None else spec


def submit_job(
    session: Session,
    spec: JobSpec,
    principal: Principal,
    settings: Settings,
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """Create a queued job and send it after the commit. Returns (job, created).

    A retry with the same Idempotency-Key gets the first job back, also when the retries
    arrive all at once: the insert is one statement that does nothing on a taken key."""
    spec = validate_spec(session, spec, settings, principal.tenant, principal.project)
    body = spec.model_dump(mode="json")
    scoped_key = _scoped_key(principal, idempotency_key)
    if scoped_key is not None:
        existing = session.scalar(select(Job).where(Job.idempotency_key == scoped_key))
        if existing is not None:
            return _same_job(existing, body), False  # a retry is answered even at the limit
    job_id = _insert_job(session, spec, body, principal, settings, scoped_key)
    if job_id is None:
        existing = session.scalar(select(Job).where(Job.idempotency_key == scoped_key))
        assert existing is not None  # the request that won the race inserted it
        return _same_job(existing, body), False
    _check_active_limit(session, principal.project, settings.max_active_jobs_per_project)
    add_event(session, job_id, 0, "queued", "job accepted and queued")
    enqueue_job(session, job_id, pool_key(spec.training.pool))
    job = session.get(Job, job_id)
    assert job is not None
    return job, True


def _insert_job(
    session: Session,
    spec: JobSpec,
    body: dict[str, Any],
    principal: Principal,
    settings: Settings,
    scoped_key: str | None,
) -> str | None:
    """The new job's id, or None when another request took its Idempotency-Key first."""
    job_id = new_id()
    values = {
        "id": job_id,
        "model_name": spec.model_name,
        "spec": body,
        "pool": pool_key(spec.training.pool),
        "project": principal.project,
        "created_by": principal.key_id,
        "idempotency_key": scoped_key,
        "progress": {"epoch": 0, "epochs": spec.training.epochs, "step": 0, "samples_per_s": None},
        "max_attempts": settings.max_attempts,
        "enqueued_at": db_now(session),
    }
    inserted = insert_or_ignore(session, Job, values, ["idempotency_key"])
    return job_id if inserted else None


def _same_job(existing: Job, body: dict[str, Any]) -> Job:
    if existing.spec != body:
        raise Conflict(
            "this Idempotency-Key was used with a different job spec", code="idempotency_conflict"
        )
    return existing


def _check_active_limit(session: Session, project: str, limit: int) -> None:
    """Counted after the new job's INSERT, under the project's lock, so submissions arriving
    together are counted one after another: the limit holds exactly. Over it, the caller's
    transaction rolls back and the job was never there."""
    serialize(session, f"active-jobs:{project}")
    active = session.scalar(
        select(func.count()).where(
            Job.project == project, Job.status.in_([JobStatus.queued, JobStatus.running])
        )
    )
    if (active or 0) > limit:
        raise TooManyRequests(
            f"project '{project}' has {limit} queued or running jobs, the most allowed "
            "(TRAINSERVE_MAX_ACTIVE_JOBS_PER_PROJECT); retry when some have finished"
        )


def _scoped_key(principal: Principal, key: str | None) -> str | None:
    # Two keys may pick the same Idempotency-Key without seeing each other's jobs.
    if key is None:
        return None
    return f"{principal.key_id}:{key}"


def get_job(session: Session, job_id: str, tenant: str | None = None) -> Job:
    """Another project's job is a 404, exactly like one that does not exist."""
    job = session.get(Job, job_id)
    if job is None or (tenant is not None and job.project != tenant):
        raise NotFound(f"no job with id '{job_id}'")
    return job


def list_jobs(
    session: Session,
    status: JobStatus | None,
    limit: int,
    cursor: str | None,
    tenant: str | None = None,
) -> tuple[list[Job], str | None]:
    query = select(Job) if tenant is None else select(Job).where(Job.project == tenant)
    if status is not None:
        query = query.where(Job.status == status)
    return paginate(session, query, Job, limit, cursor)


def job_metrics(session: Session, job_id: str, tenant: str | None = None) -> list[JobMetric]:
    get_job(session, job_id, tenant)
    query = select(JobMetric).where(JobMetric.job_id == job_id).order_by(JobMetric.id)
    return list(session.scalars(query))


def job_events(session: Session, job_id: str) -> list[JobEvent]:
    query = select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
    return list(session.scalars(query))


def cancel_job(session: Session, job_id: str, tenant: str | None = None) -> Job:
    """A queued job is cancelled at once; a running one is flagged and stops at a step boundary."""
    job = get_job(session, job_id, tenant)
    now = utcnow()
    cancelled = execute_update(
        session,
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued)
        .values(
            status=JobStatus.cancelled,
            status_message="cancelled before it started",
            finished_at=now,
            updated_at=now,
            cancel_requested=True,
        ),
    )
    if cancelled:
        add_event(session, job_id, job.attempt, "cancelled", "cancelled while queued")
    else:
        flagged = execute_update(
            session,
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.running)
            .values(cancel_requested=True),
        )
        if not flagged:
            session.refresh(job)
            if job.status in TERMINAL:
                raise Conflict(f"job is already {job.status}", code="job_finished")
        add_event(
            session,
            job_id,
            job.attempt,
            "cancel_requested",
            "cancel requested; stopping at the next step",
        )
    session.refresh(job)
    return job

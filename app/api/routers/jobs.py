from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, StreamingResponse

from app.api.deps import Id, JobsRead, JobsWrite, SessionDep, SettingsDep
from app.api.events import job_event_stream
from app.api.openapi import KEYED, errors_for
from app.models import JobStatus
from app.schemas.job import (
    DryRunResult,
    JobDetail,
    JobEventPublic,
    JobPage,
    JobPublic,
    JobSpec,
    MetricPoint,
)
from app.services import job_stream, jobs

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=errors_for(*KEYED))
NO_JOB = {404: "No job with this id in the caller's project (not_found)"}
EVENTS = (
    "Server-Sent Events, oldest first, until the job ends. `status` {status, kind, attempt, "
    "message, time}: the job moved to queued, running, succeeded, failed or cancelled; "
    "`event` {kind, attempt, message, time}: anything else that happened (checkpoint, "
    "resumed, requeued, cancel_requested, ...); `metrics` {epoch, step, metrics: {name: "
    "value}}: an epoch's metrics; `end` {status, status_message, model_version}: the job "
    "ended, and so does the stream; `timeout` {message}: the stream closed after 6 hours, "
    "reconnect to go on. Each message but end and timeout has an id; send the last one as "
    "Last-Event-ID to resume after it. A comment line (`: keep-alive`) every 15 s of quiet."
)


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    responses={
        200: {"model": DryRunResult, "description": "dry_run: the spec is valid, as it would run"},
        202: {"description": "The job, queued"},
        **errors_for(
            409,
            413,
            429,
            when={
                409: "This Idempotency-Key was sent before with another spec "
                "(idempotency_conflict)",
                422: "The spec is invalid: a field out of range, an unknown field, a dataset "
                "that does not exist, an arch that does not fit the data, past a limit "
                "(validation_error, naming the field)",
                429: "The project has as many queued and running jobs as it may "
                "(too_many_requests; TRAINSERVE_MAX_ACTIVE_JOBS_PER_PROJECT)",
            },
        ),
    },
)
def submit_job(
    spec: JobSpec,
    session: SessionDep,
    settings: SettingsDep,
    principal: JobsWrite,
    dry_run: Annotated[
        bool, Query(description="Check the spec (and its dataset) and answer 200; queue nothing")
    ] = False,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            pattern=r"^[\x21-\x7e]+$",
            description="A retry with the same key and spec answers the job it created",
        ),
    ] = None,
) -> Any:
    """Validate a job spec, store the job and queue it for a worker. The spec is checked
    whole at submission (its fields, its dataset, the limits), so a job that is accepted
    does not fail for a typo later."""
    if dry_run:
        spec = jobs.validate_spec(session, spec, settings, principal.tenant, principal.project)
        result = DryRunResult(valid=True, spec=spec.model_dump(mode="json"))
        return JSONResponse(result.model_dump(mode="json"), status_code=200)
    job, _created = jobs.submit_job(session, spec, principal, settings, idempotency_key)
    return JobPublic.model_validate(job)


@router.get(
    "",
    response_model=JobPage,
    responses=errors_for(
        when={422: "A bad status, limit or cursor (validation_error, invalid_cursor)"}
    ),
)
def list_jobs(
    session: SessionDep,
    principal: JobsRead,
    status: Annotated[JobStatus | None, Query(description="Only the jobs in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Jobs per page")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the page before")
    ] = None,
) -> JobPage:
    """The caller's project's jobs, newest first, a page at a time."""
    items, next_cursor = jobs.list_jobs(session, status, limit, cursor, principal.tenant)
    return JobPage(items=[JobPublic.model_validate(j) for j in items], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobDetail, responses=errors_for(when=NO_JOB))
def get_job(job_id: Id, session: SessionDep, principal: JobsRead) -> JobDetail:
    """A job: its status, progress, latest metrics, report and history of events."""
    detail = JobDetail.model_validate(jobs.get_job(session, job_id, principal.tenant))
    detail.events = [JobEventPublic.model_validate(e) for e in jobs.job_events(session, job_id)]
    return detail


@router.get(
    "/{job_id}/metrics", response_model=list[MetricPoint], responses=errors_for(when=NO_JOB)
)
def get_metrics(job_id: Id, session: SessionDep, principal: JobsRead) -> list[MetricPoint]:
    """Every metric the job recorded, per epoch, in time order."""
    points = jobs.job_metrics(session, job_id, principal.tenant)
    return [MetricPoint.model_validate(m) for m in points]


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": EVENTS,
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **errors_for(
            when={
                **NO_JOB,
                400: "Last-Event-ID is not an id this job's stream sent "
                "(invalid_last_event_id), or a malformed project header (invalid_project)",
            }
        ),
    },
)
def stream_events(
    job_id: Id,
    session: SessionDep,
    principal: JobsRead,
    last_event_id: Annotated[
        str | None, Header(max_length=40, description="The id of the last message received")
    ] = None,
) -> StreamingResponse:
    """Follow a job live (`curl -N`): its status changes, events and per-epoch metrics as
    Server-Sent Events, from the start or after Last-Event-ID, ending when the job ends."""
    jobs.get_job(session, job_id, principal.tenant)
    after = job_stream.resume_from(session, job_id, last_event_id)
    return StreamingResponse(
        job_event_stream(job_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobPublic,
    responses=errors_for(
        when={
            **NO_JOB,
            409: "The job has ended already: succeeded, failed or cancelled (job_finished)",
        }
    ),
)
def cancel_job(job_id: Id, session: SessionDep, principal: JobsWrite) -> JobPublic:
    """Cancel a job: a queued one at once, a running one at its next step boundary (it keeps
    its last checkpoint)."""
    return JobPublic.model_validate(jobs.cancel_job(session, job_id, principal.tenant))

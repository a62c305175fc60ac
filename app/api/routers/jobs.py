from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, StreamingResponse

from app.api.deps import Id, JobsRead, JobsWrite, SessionDep, SettingsDep
from app.api.events import job_event_stream
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

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post(
    "", status_code=202, response_model=JobPublic, responses={200: {"model": DryRunResult}}
)
def submit_job(
    spec: JobSpec,
    session: SessionDep,
    settings: SettingsDep,
    principal: JobsWrite,
    dry_run: bool = False,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, pattern=r"^[\x21-\x7e]+$")
    ] = None,
) -> Any:
    if dry_run:
        spec = jobs.validate_spec(session, spec, settings, principal.tenant, principal.project)
        result = DryRunResult(valid=True, spec=spec.model_dump(mode="json"))
        return JSONResponse(result.model_dump(mode="json"), status_code=200)
    job, _created = jobs.submit_job(session, spec, principal, settings, idempotency_key)
    return JobPublic.model_validate(job)


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    principal: JobsRead,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobPage:
    items, next_cursor = jobs.list_jobs(session, status, limit, cursor, principal.tenant)
    return JobPage(items=[JobPublic.model_validate(j) for j in items], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobDetail)
def get_job(job_id: Id, session: SessionDep, principal: JobsRead) -> JobDetail:
    detail = JobDetail.model_validate(jobs.get_job(session, job_id, principal.tenant))
    detail.events = [JobEventPublic.model_validate(e) for e in jobs.job_events(session, job_id)]
    return detail


@router.get("/{job_id}/metrics", response_model=list[MetricPoint])
def get_metrics(job_id: Id, session: SessionDep, principal: JobsRead) -> list[MetricPoint]:
    points = jobs.job_metrics(session, job_id, principal.tenant)
    return [MetricPoint.model_validate(m) for m in points]


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events: status, event, metrics, then end (or timeout). "
            "Each message but end and timeout has an id; send the last one as Last-Event-ID "
            "to resume after it.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
def stream_events(
    job_id: Id,
    session: SessionDep,
    principal: JobsRead,
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
) -> StreamingResponse:
    jobs.get_job(session, job_id, principal.tenant)
    after = job_stream.resume_from(session, job_id, last_event_id)
    return StreamingResponse(
        job_event_stream(job_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/{job_id}/cancel", status_code=202, response_model=JobPublic)
def cancel_job(job_id: Id, session: SessionDep, principal: JobsWrite) -> JobPublic:
    return JobPublic.model_validate(jobs.cancel_job(session, job_id, principal.tenant))

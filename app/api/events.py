"""Server-Sent Events for one job: transitions and per-epoch metrics, live, in time order,
ending with the job.

The database is the only source: the stream polls it, so it works the same whichever
process trains the job. Every message but end and timeout has an id (a position in the history,
app/services/job_stream.py): a client that reconnects with it as Last-Event-ID gets what
followed, and one that reconnects without it sees the whole history again.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool

from app.core.db import session_scope
from app.models import TERMINAL, JobEvent
from app.services import jobs
from app.services.job_stream import Entry, EpochPoint, Position, entries_after

POLL_S = 0.5
MAX_STREAM_S = 6 * 3600.0
KEEPALIVE_S = 15.0
RETRY_MS = 1000  # how long an EventSource waits before it reconnects


def _sse(event: str, data: Any, position: Position | None = None) -> str:
    message = f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"
    return message if position is None else f"id: {position}\n{message}"


def _poll(job_id: str, after: Position) -> tuple[list[str], Position, bool]:
    """Messages new since `after`, the position after them, and whether the job has ended.
    The job is read first: once it has ended, everything it recorded is in the entries."""
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        entries = entries_after(session, job_id, after)
        out = [_message(entry) for entry in entries]
        ended = job.status in TERMINAL
        if ended:
            end = {
                "status": job.status,
                "status_message": job.status_message,
                "model_version": job.model_version,
            }
            out.append(_sse("end", end))
        return out, entries[-1].position if entries else after, ended


def _message(entry: Entry) -> str:
    if isinstance(entry.item, EpochPoint):
        point = entry.item
        body = {"epoch": point.epoch, "step": point.step, "metrics": point.metrics}
        return _sse("metrics", body, entry.position)
    return _event_message(entry.item, entry.position)


# Event kinds that move the job to a status; the others (checkpoint, resumed, resent,
# cancel_requested, ...) are sent as "event" messages.
STATUS_OF = {
    "queued": "queued",
    "claimed": "running",
    "requeued": "queued",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}


def _event_message(ev: JobEvent, position: Position) -> str:
    body = {
        "kind": ev.kind,
        "attempt": ev.attempt,
        "message": ev.message,
        "time": ev.time.isoformat(),
    }
    status = STATUS_OF.get(ev.kind)
    if status is None:
        return _sse("event", body, position)
    return _sse("status", {"status": status, **body}, position)


async def job_event_stream(job_id: str, after: Position) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    waited = idle = 0.0
    while waited < MAX_STREAM_S:
        messages, after, ended = await run_in_threadpool(_poll, job_id, after)
        for message in messages:
            yield message
        if ended:
            return
        idle = 0.0 if messages else idle + POLL_S
        if idle >= KEEPALIVE_S:
            idle = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_S)
        waited += POLL_S
    yield _sse(
        "timeout", {"message": f"stream closed after {MAX_STREAM_S:.0f} s; reconnect to go on"}
    )

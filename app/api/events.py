"""Server-Sent Events for one job: transitions and per-epoch metrics, live, ending with the job.

The database is the only source: the stream polls it, so it works the same whichever
process trains the job, and a client that reconnects sees the whole history again.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool

from app.core.db import session_scope
from app.models import TERMINAL
from app.services import jobs

POLL_S = 0.5
MAX_STREAM_S = 6 * 3600.0
KEEPALIVE_S = 15.0


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def _poll(job_id: str, cursor: dict[str, int]) -> tuple[list[str], bool]:
    """Messages new since the cursor, and whether the job has ended."""
    with session_scope() as session:
        job = jobs.get_job(session, job_id)
        out = []
        for ev in jobs.job_events(session, job_id, cursor["event"]):
            cursor["event"] = ev.id
            out.append(_event_message(ev))
        by_epoch: dict[int, dict[str, Any]] = {}
        for m in jobs.metrics_since(session, job_id, cursor["metric"]):
            cursor["metric"] = m.id
            point = by_epoch.setdefault(m.epoch, {"epoch": m.epoch, "step": m.step, "metrics": {}})
            point["metrics"][m.name] = m.value
        out += [_sse("metrics", point) for point in by_epoch.values()]
        ended = job.status in TERMINAL
        if ended:
            out.append(
                _sse(
                    "end",
                    {
                        "status": job.status,
                        "status_message": job.status_message,
                        "model_version": job.model_version,
                    },
                )
            )
        return out, ended


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


def _event_message(ev: Any) -> str:
    body = {
        "kind": ev.kind,
        "attempt": ev.attempt,
        "message": ev.message,
        "time": ev.time.isoformat(),
    }
    status = STATUS_OF.get(ev.kind)
    if status is None:
        return _sse("event", body)
    return _sse("status", {"status": status, **body})


async def job_event_stream(job_id: str) -> AsyncIterator[str]:
    cursor = {"event": 0, "metric": 0}
    waited = idle = 0.0
    while waited < MAX_STREAM_S:
        messages, ended = await run_in_threadpool(_poll, job_id, cursor)
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

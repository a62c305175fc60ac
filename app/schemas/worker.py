"""What the API shows of a worker node (GET /v1/workers)."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class WorkerPublic(BaseModel):
    id: str = Field(description="The node's id: host and pid of its Celery main process")
    hostname: str = Field(description="The host it runs on")
    pool: str = Field(description="The pool it takes jobs from ('default': jobs naming none)")
    devices: list[str] = Field(
        description="What its jobs can train on: ['cpu'] or ['cuda:0 NVIDIA H200', ...]"
    )
    capacity: int = Field(description="Jobs it runs at once (--concurrency)")
    running: list[str] = Field(description="The ids of the jobs it runs now")
    state: Literal["live", "draining", "gone"] = Field(
        description="live: takes jobs; draining: shutting down, its jobs checkpoint and go back "
        "to the queue; gone: no heartbeat for 60 s (killed, or cut off)"
    )
    started_at: datetime = Field(description="When it started (UTC)")
    last_seen: datetime = Field(description="Its last heartbeat, on the database's clock (UTC)")


class WorkerPage(BaseModel):
    items: list[WorkerPublic] = Field(description="This page's workers, newest first")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; none: last")

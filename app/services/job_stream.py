"""A job's history as one stream: its events and its per-epoch metrics merged in time order,
each entry carrying the position after it, so a client that reconnects from a position gets
exactly what followed it.

A position is a pair of ids, (last event id, last metric id): both tables are read by id, so a
pair says what a client has of each, whatever order the two were interleaved in.
"""

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.errors import BadRequest
from app.models import JobEvent, JobMetric

POSITION = re.compile(r"(\d{1,18})-(\d{1,18})", re.ASCII)


@dataclass(frozen=True, order=True)
class Position:
    event: int = 0
    metric: int = 0

    def __str__(self) -> str:
        return f"{self.event}-{self.metric}"


@dataclass(frozen=True)
class EpochPoint:
    """One epoch's metric rows (written together by one record_epoch)."""

    epoch: int
    step: int
    time: datetime
    last_id: int
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    position: Position  # what a client has once it got this entry
    item: JobEvent | EpochPoint


def resume_from(session: Session, job_id: str, last_event_id: str | None) -> Position:
    """Where a reconnecting client left off: its Last-Event-ID, an id this job's stream sent."""
    if not last_event_id or not last_event_id.strip():
        return Position()
    match = POSITION.fullmatch(last_event_id.strip())
    if match is None:
        raise BadRequest(
            "Last-Event-ID must be an id this stream sent: '<event id>-<metric id>'",
            code="invalid_last_event_id",
        )
    position = Position(int(match[1]), int(match[2]))
    owned = _owned(session, JobEvent, position.event, job_id) and _owned(
        session, JobMetric, position.metric, job_id
    )
    if not owned:
        raise BadRequest(
            f"Last-Event-ID '{position}' was not sent by this job's stream",
            code="invalid_last_event_id",
        )
    return position


def _owned(session: Session, table: type[JobEvent | JobMetric], row_id: int, job_id: str) -> bool:
    if row_id == 0:  # none of this table's rows yet
        return True
    return session.scalar(select(table.job_id).where(table.id == row_id)) == job_id


def entries_after(session: Session, job_id: str, after: Position) -> list[Entry]:
    """Everything recorded since `after`, oldest first, as of one moment (see _last_ids)."""
    last = _last_ids(session, job_id)
    events = session.scalars(
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.id > after.event, JobEvent.id <= last.event)
        .order_by(JobEvent.id)
    )
    rows = session.scalars(
        select(JobMetric)
        .where(JobMetric.job_id == job_id, JobMetric.id > after.metric, JobMetric.id <= last.metric)
        .order_by(JobMetric.id)
    )
    return merge(list(events), list(epoch_points(rows)), after)


def _last_ids(session: Session, job_id: str) -> Position:
    """Both tables' newest ids for the job, from one statement and so one snapshot: two separate
    reads could see the next epoch's metrics but not the event written before them, and a
    later read would then send that event after metrics newer than it."""
    newest_event = select(func.max(JobEvent.id)).where(JobEvent.job_id == job_id)
    newest_metric = select(func.max(JobMetric.id)).where(JobMetric.job_id == job_id)
    event, metric = session.execute(
        select(newest_event.scalar_subquery(), newest_metric.scalar_subquery())
    ).one()
    return Position(event or 0, metric or 0)


def epoch_points(rows: Any) -> Iterator[EpochPoint]:
    """Id-ordered metric rows, one point per run of rows of one epoch."""
    for _, group in groupby(rows, key=lambda m: m.epoch):
        ms = list(group)
        metrics = {m.name: m.value for m in ms}
        yield EpochPoint(ms[0].epoch, ms[0].step, ms[0].time, ms[-1].id, metrics)


def merge(events: list[JobEvent], points: list[EpochPoint], after: Position) -> list[Entry]:
    """Two id-ordered lists merged by time; each keeps its own order even where its times do
    not (clocks of different hosts). On a tie an epoch's metrics go first: a worker writes them
    before that epoch's checkpoint event, and a job's last metrics before its final status."""
    merged: Iterator[tuple[datetime, int, EpochPoint | JobEvent]] = heapq.merge(
        ((p.time, 0, p) for p in points),
        ((e.time, 1, e) for e in events),
        key=lambda item: item[:2],
    )
    entries, position = [], after
    for _, _, item in merged:
        if isinstance(item, EpochPoint):
            position = replace(position, metric=item.last_id)
            entries.append(Entry(position, item))
        else:
            position = replace(position, event=item.id)
            entries.append(Entry(position, item))
    return entries

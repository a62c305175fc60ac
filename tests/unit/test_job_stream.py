"""Merging a job's events and epoch metrics into one stream (app/services/job_stream.py)."""

from datetime import UTC, datetime, timedelta

from app.models import JobEvent
from app.services.job_stream import Entry, EpochPoint, Position, merge

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(row_id: int, seconds: float) -> JobEvent:
    return JobEvent(id=row_id, kind=f"e{row_id}", time=T0 + timedelta(seconds=seconds))


def point(last_id: int, epoch: int, seconds: float) -> EpochPoint:
    return EpochPoint(epoch, epoch, T0 + timedelta(seconds=seconds), last_id, {"loss": 1.0})


def labels(entries: list[Entry]) -> list[str]:
    return [f"m{e.item.epoch}" if isinstance(e.item, EpochPoint) else e.item.kind for e in entries]


def test_each_tables_order_is_kept_even_where_its_clock_went_back() -> None:
    """Event 2 carries an earlier time than event 1 (another host's clock): it still follows it."""
    entries = merge([event(1, 5), event(2, 1)], [point(10, 1, 2), point(12, 2, 6)], Position())
    assert labels(entries) == ["m1", "e1", "e2", "m2"]
    assert [str(e.position) for e in entries] == ["0-10", "1-10", "2-10", "2-12"]


def test_metrics_go_before_an_event_of_the_same_instant_and_positions_start_after() -> None:
    entries = merge([event(7, 3)], [point(20, 4, 3)], Position(6, 19))
    assert labels(entries) == ["m4", "e7"]
    assert [e.position for e in entries] == [Position(6, 20), Position(7, 20)]

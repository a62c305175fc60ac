"""The reaper on PostgreSQL: lapsed leases go back to the queue (then fail as worker_lost),
lost messages are sent again, live jobs are left alone, and one process reaps at a time.

Times are set an hour ahead of the clock and the reaper is given that future `now`, so a
worker's own reaper running in the same session never touches these rows."""

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import delete

from app.core.config import Settings
from app.core.db import session_scope
from app.models import Job, JobEvent, JobStatus, WorkerNode
from app.models.base import utcnow
from app.services import job_state, reaper
from tests.support import seed_spec, unique_name

LATER = utcnow() + timedelta(hours=1)


def make_job(configured: dict[str, str], status: JobStatus, attempt: int, **fields: object) -> str:
    with session_scope() as session:
        job = Job(
            model_name="reaped",
            spec=seed_spec("reaped"),
            progress={},
            metrics={},
            status=status,
            attempt=attempt,
            max_attempts=3,
            **fields,
        )
        session.add(job)
        session.flush()
        return job.id


def row(job_id: str) -> Job:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def reap(at: object = None) -> reaper.Reaped:
    with session_scope() as session:
        return reaper.reap(
            session, Settings(requeue_after_s=60), now=at or LATER + timedelta(minutes=1)
        )


def test_a_lapsed_lease_is_requeued_as_the_next_attempt(configured: dict[str, str]) -> None:
    job_id = make_job(configured, JobStatus.running, 1, worker_id="w1", lease_expires_at=LATER)
    live = make_job(
        configured,
        JobStatus.running,
        1,
        worker_id="w2",
        lease_expires_at=LATER + timedelta(hours=1),
    )
    result = reap()
    assert job_id in result.requeued and live not in result.requeued + result.failed
    job = row(job_id)
    assert job.status == JobStatus.queued and job.worker_id is None and job.lease_expires_at is None
    assert row(live).status == JobStatus.running
    with session_scope() as session:
        claim = job_state.claim(session, job_id, "w3", lease_s=30)
        assert claim is not None and claim.attempt == 2
        kinds = [e.message for e in session.query(JobEvent).filter_by(job_id=job_id)]
    assert any("lease lost (worker w1, attempt 1); requeued as attempt 2" in m for m in kinds)


def test_the_last_attempt_fails_as_worker_lost(configured: dict[str, str]) -> None:
    job_id = make_job(configured, JobStatus.running, 3, worker_id="w1", lease_expires_at=LATER)
    assert job_id in reap().failed
    job = row(job_id)
    assert job.status == JobStatus.failed and job.status_message is not None
    assert job.status_message.startswith("worker_lost:") and job.finished_at is not None


@pytest.fixture
def idle_worker(configured: dict[str, str]) -> Iterator[None]:
    """A live worker, as the reaper judges at LATER, with room for many jobs."""
    node = WorkerNode(
        id=f"idle-{utcnow().timestamp()}",
        hostname="test",
        concurrency=100,
        last_seen=LATER + timedelta(minutes=1),
    )
    with session_scope() as session:
        session.add(node)
    yield
    with session_scope() as session:
        session.execute(delete(WorkerNode).where(WorkerNode.id == node.id))


def test_a_queued_job_whose_message_was_lost_is_sent_again(
    configured: dict[str, str], idle_worker: None
) -> None:
    stale = make_job(configured, JobStatus.queued, 0, enqueued_at=LATER - timedelta(minutes=5))
    fresh = make_job(configured, JobStatus.queued, 0, enqueued_at=LATER + timedelta(seconds=30))
    result = reap()
    assert stale in result.resent and fresh not in result.resent
    assert row(stale).enqueued_at == LATER + timedelta(minutes=1)


def test_terminal_jobs_are_never_touched(configured: dict[str, str]) -> None:
    done = make_job(configured, JobStatus.succeeded, 1, lease_expires_at=LATER)
    result = reap()
    assert done not in result.requeued + result.failed + result.resent
    assert row(done).status == JobStatus.succeeded


def test_one_reaper_at_a_time(configured: dict[str, str]) -> None:
    name = f"test-lock-{utcnow().timestamp()}"
    with session_scope() as session:
        assert reaper.acquire(session, name, "a", ttl_s=0.5)
    with session_scope() as session:
        assert not reaper.acquire(session, name, "b", ttl_s=0.5)
        assert reaper.acquire(session, name, "a", ttl_s=0.5)  # the holder renews
    time.sleep(0.6)
    with session_scope() as session:
        assert reaper.acquire(session, name, "b", ttl_s=5)  # a lapsed lease is taken over
    with session_scope() as session:
        assert not reaper.acquire(session, name, "a", ttl_s=5)


def test_a_heartbeat_that_renewed_in_time_keeps_its_job(configured: dict[str, str]) -> None:
    job_id = make_job(configured, JobStatus.running, 1, worker_id="w1", lease_expires_at=LATER)
    with session_scope() as session:
        job_state.heartbeat(session, job_id, 1, lease_s=3 * 3600, progress={})
    assert job_id not in reap().requeued
    assert row(job_id).status == JobStatus.running


def test_no_message_is_sent_again_while_every_worker_is_busy(configured: dict[str, str]) -> None:
    """A job waiting behind a busy worker is in the queue, not lost: sending its message again
    every requeue_after_s only piled up duplicates (27 for 5 waiting jobs)."""
    node = f"busy-{utcnow().timestamp()}"
    with session_scope() as session:
        session.add(
            WorkerNode(id=node, hostname="t", concurrency=1, last_seen=LATER + timedelta(minutes=1))
        )
    # At LATER this is the only live worker, and its one slot is taken.
    running = [
        make_job(
            configured,
            JobStatus.running,
            1,
            lease_expires_at=LATER + timedelta(hours=1),
            node_id=node,
        )
    ]
    waiting = [
        make_job(configured, JobStatus.queued, 0, enqueued_at=LATER - timedelta(minutes=5))
        for _ in range(5)
    ]
    try:
        assert not set(waiting) & set(reap().resent)
    finally:
        with session_scope() as session:
            session.execute(delete(WorkerNode).where(WorkerNode.id == node))
            session.execute(delete(Job).where(Job.id.in_(running + waiting)))


def test_a_draining_worker_has_no_room(configured: dict[str, str]) -> None:
    """A draining worker takes nothing new: its slot is not room (a resend to it would wait),
    and a job it still runs uses none of another worker's; the idle worker beside it gets one
    resend, the longest waiting job."""
    seen, pool = LATER + timedelta(minutes=1), unique_name("drain")  # no other test's jobs
    draining, idle = f"draining-{pool}", f"idle-{pool}"
    with session_scope() as session:
        session.add_all(
            [
                WorkerNode(id=draining, hostname="t", pool=pool, last_seen=seen, draining=True),
                WorkerNode(id=idle, hostname="t", pool=pool, last_seen=seen),
            ]
        )
    waiting = [
        make_job(
            configured,
            JobStatus.queued,
            0,
            enqueued_at=LATER - timedelta(minutes=5 + i),
            pool=pool,
        )
        for i in range(3)
    ]
    try:
        assert set(waiting) & set(reap().resent) == {waiting[2]}
        until = LATER + timedelta(hours=1)
        make_job(  # the draining worker still runs a job: the idle worker's room stays
            configured, JobStatus.running, 1, lease_expires_at=until, node_id=draining, pool=pool
        )
        assert set(waiting) & set(reap(LATER + timedelta(minutes=2)).resent) == {waiting[1]}
    finally:
        with session_scope() as session:
            session.execute(delete(WorkerNode).where(WorkerNode.id.in_([draining, idle])))
            session.execute(delete(Job).where(Job.pool == pool))


def test_leases_are_judged_on_the_databases_clock(
    configured: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker host whose clock is an hour behind renewed leases that had lapsed before they
    were written, and the reaper of a host with the right time took its live job. On
    PostgreSQL (several hosts) the lease is the database's now() plus LEASE_S."""
    job_id = make_job(configured, JobStatus.queued, 0)
    with session_scope() as session:
        claim = job_state.claim(session, job_id, "w-skewed", lease_s=30)
    assert claim is not None
    behind = utcnow() - timedelta(hours=1)
    monkeypatch.setattr("app.core.db.utcnow", lambda: behind)
    monkeypatch.setattr("app.services.job_state.utcnow", lambda: behind)
    with session_scope() as session:
        job_state.heartbeat(session, claim.job_id, claim.attempt, 30, {})
    monkeypatch.undo()
    with session_scope() as session:  # a reaper on a host with the right time
        assert claim.job_id not in reaper.reap(session, Settings()).requeued
    with session_scope() as session:
        job = session.get(Job, claim.job_id)
        assert job is not None and job.status == JobStatus.running
        assert job.lease_expires_at is not None and job.lease_expires_at > utcnow()


def test_worker_rows_gone_for_a_day_are_forgotten(configured: dict[str, str]) -> None:
    """A SIGKILLed host's row stays (GET /v1/workers: gone) for a day, then goes."""
    stamp = unique_name("w")
    long_gone, recently = f"long-gone-{stamp}", f"recent-{stamp}"
    forget_s = reaper.FORGET_WORKERS_AFTER_S
    with session_scope() as session:
        session.add_all(
            [
                WorkerNode(
                    id=long_gone, hostname="t", last_seen=LATER - timedelta(seconds=forget_s + 60)
                ),
                WorkerNode(id=recently, hostname="t", last_seen=LATER - timedelta(hours=23)),
            ]
        )
    try:
        assert reap().forgotten >= 1
        with session_scope() as session:
            assert session.get(WorkerNode, long_gone) is None
            assert session.get(WorkerNode, recently) is not None
    finally:
        with session_scope() as session:
            session.execute(delete(WorkerNode).where(WorkerNode.id.in_([long_gone, recently])))

"""Every write of a running attempt is fenced by one guarded statement, on PostgreSQL and on
SQLite, where a read followed by a write is not atomic (pysqlite runs the read outside any
transaction, and SELECT ... FOR UPDATE means nothing there). The interleavings the review
forced, forced again: a reap landing between an attempt's check and its write."""

import threading
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from app.core.config import Settings
from app.core.db import session_scope
from app.models import Job, JobEvent, JobMetric, JobStatus
from app.models.base import utcnow
from app.services import job_state, reaper
from app.services.job_state import LeaseLost
from tests.support import seed_spec, version_query

LINEAGE = {
    "task": "classification",
    "spec": {},
    "dataset": {},
    "metrics": {},
    "classes": ["a", "b"],
    "input_shape": [2],
    "checkpoint_path": "jobs/x/model.safetensors",
    "checkpoint_sha256": "0" * 64,
}


def running_job(name: str) -> job_state.Claim:
    with session_scope() as session:
        job = Job(model_name=name, spec=seed_spec(name), progress={}, metrics={})
        session.add(job)
        session.flush()
        job_id = job.id
    with session_scope() as session:
        claim = job_state.claim(session, job_id, "w1", lease_s=60)
    assert claim is not None
    return claim


def lapse(job_id: str) -> None:
    """As if its worker stopped renewing an hour ago."""
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(lease_expires_at=utcnow() - timedelta(hours=1))
        )


def reap() -> reaper.Reaped:
    with session_scope() as session:
        return reaper.reap(session, Settings())


def versions(name: str) -> int:
    with session_scope() as session:
        return len(session.scalars(version_query(name)).all())


def test_a_reaped_attempt_registers_nothing(backend: TestClient) -> None:
    claim = running_job("fenced-register")
    lapse(claim.job_id)
    reap()  # the reap lands before the attempt's write
    with session_scope() as session:
        assert session.get(Job, claim.job_id).status == JobStatus.queued  # type: ignore[union-attr]
    with session_scope() as session, pytest.raises(LeaseLost):
        job_state.succeed(session, claim.job_id, claim.attempt, {}, LINEAGE, str)
    assert versions("fenced-register") == 0


def test_a_reap_during_registration_waits_and_changes_nothing(backend: TestClient) -> None:
    """The registering attempt's fence holds the row (PostgreSQL) or the database (SQLite)
    until it commits: a reaper that comes in between waits, then finds the job succeeded."""
    claim = running_job("fenced-while-registering")
    lapse(claim.job_id)
    result: list[reaper.Reaped] = []
    with session_scope() as session:
        job_state.succeed(session, claim.job_id, claim.attempt, {}, LINEAGE, str)
        thread = threading.Thread(target=lambda: result.append(reap()))
        thread.start()
        time.sleep(0.5)  # the reaper is blocked on the fence now
    thread.join(30)
    assert result and claim.job_id not in result[0].requeued + result[0].failed
    with session_scope() as session:
        job = session.get(Job, claim.job_id)
        assert job is not None and job.status == JobStatus.succeeded and job.model_version == 1
    assert versions("fenced-while-registering") == 1


def test_a_reaped_attempt_records_no_metrics(backend: TestClient) -> None:
    claim = running_job("fenced-epoch")
    lapse(claim.job_id)
    reap()
    with session_scope() as session, pytest.raises(LeaseLost):
        job_state.record_epoch(session, claim.job_id, claim.attempt, 1, 10, {"train_loss": 1.0})
    with session_scope() as session:
        count = session.scalar(select(func.count()).where(JobMetric.job_id == claim.job_id))
    assert count == 0


def test_a_heartbeat_after_the_reap_loses_the_lease(backend: TestClient) -> None:
    claim = running_job("fenced-beat")
    lapse(claim.job_id)
    reap()
    with session_scope() as session, pytest.raises(LeaseLost):
        job_state.heartbeat(session, claim.job_id, claim.attempt, 60, {})


def test_a_reaped_attempt_writes_no_events_of_its_own(backend: TestClient) -> None:
    """ "resumed" and "compile skipped" come from the attempt: fenced as its other writes."""
    claim = running_job("fenced-event")
    with session_scope() as session:
        job_state.attempt_event(session, claim.job_id, claim.attempt, "resumed", "while it held")
    lapse(claim.job_id)
    reap()
    with session_scope() as session, pytest.raises(LeaseLost):
        job_state.attempt_event(session, claim.job_id, claim.attempt, "resumed", "after the reap")
    with session_scope() as session:
        messages = session.scalars(
            select(JobEvent.message).where(JobEvent.job_id == claim.job_id)
        ).all()
    assert "while it held" in messages and "after the reap" not in messages


def test_a_heartbeat_that_renews_first_keeps_its_job_from_the_reaper(backend: TestClient) -> None:
    """The reaper's recovery is guarded on the lapsed lease (job_state.recover_lapsed): a job
    read as lapsed but renewed before the reaper's write stays with its attempt."""
    claim = running_job("fenced-renewed")
    lapse(claim.job_id)
    with session_scope() as session:
        job = session.get(Job, claim.job_id)
        assert job is not None
        with session_scope() as other:  # the attempt renews between the read and the write
            job_state.heartbeat(other, claim.job_id, claim.attempt, 60, {})
        assert job_state.recover_lapsed(session, job, now=utcnow()) is None
    with session_scope() as session:
        job = session.get(Job, claim.job_id)
        assert job is not None and job.status == JobStatus.running
        assert job.attempt == claim.attempt

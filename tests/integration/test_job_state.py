"""The state machine on PostgreSQL: atomic claims, fenced writes, forward-only moves."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from app.core.db import session_scope
from app.models import Job, JobStatus
from app.services import job_state
from app.services.job_state import LeaseLost
from tests.support import seed_spec


@pytest.fixture
def queued_job(configured: dict[str, str]) -> str:
    with session_scope() as session:
        job = Job(model_name="state-test", spec=seed_spec("state-test"), progress={}, metrics={})
        session.add(job)
        session.flush()
        return job.id


def _claim(job_id: str, worker: str) -> job_state.Claim | None:
    with session_scope() as session:
        return job_state.claim(session, job_id, worker, lease_s=30)


def test_concurrent_claims_give_the_job_to_exactly_one_worker(queued_job: str) -> None:
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda i: _claim(queued_job, f"w{i}"), range(8)))
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1
    assert winners[0].attempt == 1
    with session_scope() as session:
        job = session.get(Job, queued_job)
        assert job is not None and job.status == JobStatus.running and job.attempt == 1


def test_a_second_delivery_is_a_no_op(queued_job: str) -> None:
    assert _claim(queued_job, "first") is not None
    assert _claim(queued_job, "second") is None


def test_writes_are_fenced_by_the_attempt(queued_job: str) -> None:
    claim = _claim(queued_job, "w")
    assert claim is not None
    with session_scope() as session, pytest.raises(LeaseLost):
        job_state.heartbeat(session, queued_job, claim.attempt + 1, 30, {})
    with session_scope() as session, pytest.raises(LeaseLost):
        job_state.record_epoch(session, queued_job, claim.attempt - 1, 1, 1, {"train_loss": 1.0})
    with session_scope() as session:
        job_state.finish(session, queued_job, claim.attempt, JobStatus.succeeded, "done")
    # terminal states never change
    with session_scope() as session, pytest.raises(LeaseLost):
        job_state.finish(session, queued_job, claim.attempt, JobStatus.failed, "late")
    with session_scope() as session:
        job = session.get(Job, queued_job)
        assert (
            job is not None and job.status == JobStatus.succeeded and job.status_message == "done"
        )


def test_heartbeat_reports_a_cancel_request(queued_job: str) -> None:
    claim = _claim(queued_job, "w")
    assert claim is not None
    with session_scope() as session:
        assert not job_state.heartbeat(
            session, queued_job, claim.attempt, 30, {"epoch": 1}
        ).cancel_requested
    with session_scope() as session:
        session.get(Job, queued_job).cancel_requested = True  # type: ignore[union-attr]
    with session_scope() as session:
        assert job_state.heartbeat(
            session, queued_job, claim.attempt, 30, {"epoch": 2}
        ).cancel_requested


def test_a_storage_retry_requeues_while_attempts_are_left_then_fails(queued_job: str) -> None:
    with session_scope() as session:
        session.get(Job, queued_job).max_attempts = 2  # type: ignore[union-attr]
    first = _claim(queued_job, "w")
    assert first is not None
    with session_scope() as session:
        job_state.retry_later(session, queued_job, first.attempt, "disk", delay_s=0)
    with session_scope() as session, pytest.raises(LeaseLost):  # the requeued attempt is stale
        job_state.retry_later(session, queued_job, first.attempt, "disk", delay_s=0)
    second = _claim(queued_job, "w")
    assert second is not None and second.attempt == 2
    with session_scope() as session:
        job_state.retry_later(session, queued_job, second.attempt, "disk", delay_s=0)
    with session_scope() as session:
        job = session.get(Job, queued_job)
        assert job is not None and job.status == JobStatus.failed
        assert job.status_message == "storage_full: disk; no attempts left"

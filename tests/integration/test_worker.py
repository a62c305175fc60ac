"""A real `trainserve worker` process on PostgreSQL and Redis: claims, duplicates, cancelled jobs."""

import os
import signal
import time
from pathlib import Path

from app.core.config import get_settings
from app.core.db import session_scope
from app.models import Job
from app.schemas.job import JobSpec
from app.services import jobs
from app.services.auth import Principal
from app.services.queue import TRAIN_TASK, send_task
from tests.integration.conftest import start_worker
from tests.support import Proc, seed_spec, version_query, wait_until

ADMIN = Principal(key_id="test", project="default", scopes=frozenset({"admin"}))


def submit(name: str, **training: object) -> str:
    with session_scope() as session:
        job, _ = jobs.submit_job(
            session,
            JobSpec.model_validate(seed_spec(name, **training)),
            ADMIN,
            get_settings(),
            None,
        )
        return job.id


def status(job_id: str) -> Job:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def versions_of(name: str) -> int:
    with session_scope() as session:
        return len(session.scalars(version_query(name)).all())


def test_worker_trains_a_job_sent_after_commit(worker: Proc) -> None:
    job_id = submit("w-basic", epochs=3)
    done = wait_until(
        lambda: (j := status(job_id)).status in {"succeeded", "failed"} and j, 120, "the job"
    )
    assert done.status == "succeeded", worker.output()[-3000:]
    assert done.model_version == 1 and versions_of("w-basic") == 1


def test_an_idle_worker_starts_the_next_job_at_once(worker: Proc) -> None:
    """Each job has a fresh pool child; the one after a job must be ready in well under the
    pool's own 5 s retry (celery_app.REPLACE_CHILD_S), so back-to-back jobs do not wait."""
    waits = []
    for i in range(3):
        job_id = submit(f"w-next-{i}", epochs=1)
        done = lambda job_id=job_id: (j := status(job_id)).finished_at is not None and j  # noqa: E731
        job = wait_until(done, 60, "the job")
        assert job.status == "succeeded", worker.output()[-3000:]
        assert job.started_at is not None
        waits.append((job.started_at - job.created_at).total_seconds())
    assert max(waits) < 2.5, waits


def test_a_duplicate_message_trains_nothing_twice(worker: Proc) -> None:
    job_id = submit("w-dup", epochs=2)
    send_task(TRAIN_TASK, [job_id])  # the same id delivered again (e.g. a redelivery)
    wait_until(lambda: status(job_id).status == "succeeded", 120, "the job")
    send_task(TRAIN_TASK, [job_id])  # and once more after it ended
    wait_until(
        lambda: worker.output().count(f"job {job_id} is not queued") >= 2, 60, "both duplicates"
    )
    job = status(job_id)
    assert job.status == "succeeded" and job.attempt == 1
    assert versions_of("w-dup") == 1


def test_duplicates_cost_milliseconds_not_a_process(worker: Proc) -> None:
    """Each job runs in a fresh pool child; a duplicate that reached the pool cost a process
    start (~0.9 s each), so a burst of them held up the next real job for seconds."""
    done = submit("w-burst", epochs=1)
    wait_until(lambda: status(done).status == "succeeded", 120, "the job")
    started = time.monotonic()
    for _ in range(20):
        send_task(TRAIN_TASK, [done])
    fresh = submit("w-after-burst", epochs=1)
    wait_until(lambda: status(fresh).attempt == 1, 60, "the next job to be claimed")
    assert time.monotonic() - started < 6, worker.output()[-3000:]
    assert worker.output().count(f"job {done} is not queued") >= 20


def test_a_job_cancelled_while_queued_never_starts(worker: Proc) -> None:
    with session_scope() as session:
        job, _ = jobs.submit_job(
            session, JobSpec.model_validate(seed_spec("w-cancel")), ADMIN, get_settings(), None
        )
        session.flush()
        jobs.cancel_job(session, job.id)
        job_id = job.id
    # the message is published after the commit above; the worker must find nothing to do
    wait_until(lambda: f"job {job_id} is not queued" in worker.output(), 60, "the worker to see it")
    job = status(job_id)
    assert job.status == "cancelled" and job.started_at is None and job.attempt == 0


def test_worker_stops_on_sigterm(configured: dict[str, str], tmp_path: Path) -> None:
    own = start_worker(configured, tmp_path / "worker.log")
    os.killpg(own.popen.pid, signal.SIGTERM)
    assert own.popen.wait(30) == 0

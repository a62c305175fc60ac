"""Celery tasks: thin edges that turn an id into one call of the training code."""

import logging

from celery.worker.request import Request
from sqlalchemy.exc import SQLAlchemyError

from app.core.config import get_settings
from app.core.db import session_scope
from app.services import job_state
from app.services.queue import TRAIN_TASK
from worker.celery_app import celery

log = logging.getLogger(__name__)


class TrainRequest(Request):
    """Drops a message whose job is not queued (a duplicate, or one for a job that has moved
    on) in the worker's main process, before it takes a pool child: each job gets a fresh
    child, so a duplicate that reached the pool would cost a process start (~1 s), not a
    database read. Celery treats a dropped message as revoked: acknowledged, never run."""

    def revoked(self) -> bool:
        if super().revoked():
            return True
        if _has_work(self.args):
            return False
        log.info("job %s is not queued; dropping its message (a duplicate)", _job_of(self.args))
        self._announce_revoked("not queued", terminated=False, signum=None, expired=False)
        return True


def _job_of(args: list[object]) -> str:
    return str(args[0]) if args else "?"


def _has_work(args: list[object]) -> bool:
    try:
        with session_scope() as session:
            return bool(args) and job_state.is_queued(session, _job_of(args))
    except SQLAlchemyError as exc:  # unsure: let the child decide, as it did before
        log.warning("could not check the job of a message: %s", exc)
        return True


@celery.task(name=TRAIN_TASK, ignore_result=True, Request=TrainRequest)
def train(job_id: str) -> None:
    from worker.training.runner import run_job  # torch loads in the child, never in the parent

    run_job(job_id, get_settings())

"""Job transport. The API sends tasks by name, after the commit, carrying ids only, to the
queue of the job's worker pool (app/core/pools.py).

The database is the truth: a message that is lost is recovered from the job row, so a
failed publish is logged, not raised into a request whose transaction already committed.
"""

import logging
from functools import lru_cache
from typing import Any

from celery import Celery
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.core.pools import queue_for

log = logging.getLogger(__name__)

TRAIN_TASK = "trainserve.train"
_PENDING = "trainserve_pending_tasks"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Configuration shared by the producer (API) and the worker."""
    return {
        "broker_url": settings.broker,
        "broker_transport_options": settings.broker_transport_options(),
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 5,
        # JSON only: nothing a message carries is ever unpickled.
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "task_default_queue": settings.queue_name,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


@lru_cache
def producer() -> Celery:
    return Celery(
        "trainserve-api", set_as_current=False, config_source=celery_config(get_settings())
    )


def send_task(name: str, args: list[Any], countdown_s: float = 0, pool: str | None = None) -> None:
    """Send to the pool's queue (the default pool: the settings' queue_name)."""
    producer().send_task(
        name,
        args=args,
        queue=queue_for(get_settings().queue_name, pool),
        countdown=countdown_s or None,
        retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.1, "interval_step": 0.5},
    )


def enqueue_after_commit(
    session: Session, name: str, args: list[Any], countdown_s: float = 0, pool: str | None = None
) -> None:
    """Send the task to the pool's queue once this session's transaction has committed, never
    before (and to be run no sooner than countdown_s after)."""
    session.info.setdefault(_PENDING, []).append((name, args, countdown_s, pool))


def enqueue_job(session: Session, job_id: str, pool: str | None, countdown_s: float = 0) -> None:
    """A job's training task, to its pool's queue, after the commit: every send of a job (the
    submission, a requeue, the reaper's resend) comes through here with the job's pool."""
    enqueue_after_commit(session, TRAIN_TASK, [job_id], countdown_s, pool)


@event.listens_for(Session, "after_commit")
def _publish_pending(session: Session) -> None:
    for name, args, countdown_s, pool in session.info.pop(_PENDING, []):
        try:
            send_task(name, args, countdown_s, pool)
        except Exception:
            log.exception("could not publish %s%s; the job row keeps it queued", name, args)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)

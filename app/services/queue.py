"""Job transport. The API sends tasks by name, after the commit, carrying ids only.

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


def send_task(name: str, args: list[Any], countdown_s: float = 0) -> None:
    producer().send_task(
        name,
        args=args,
        countdown=countdown_s or None,
        retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.1, "interval_step": 0.5},
    )


def enqueue_after_commit(
    session: Session, name: str, args: list[Any], countdown_s: float = 0
) -> None:
    """Send the task once this session's transaction has committed, never before (and to be
    run no sooner than countdown_s after)."""
    session.info.setdefault(_PENDING, []).append((name, args, countdown_s))


@event.listens_for(Session, "after_commit")
def _publish_pending(session: Session) -> None:
    for name, args, countdown_s in session.info.pop(_PENDING, []):
        try:
            send_task(name, args, countdown_s)
        except Exception:
            log.exception("could not publish %s%s; the job row keeps it queued", name, args)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)

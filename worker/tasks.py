"""Celery tasks: thin edges that turn an id into one call of the training code."""

from app.core.config import get_settings
from app.core.queue import TRAIN_TASK
from worker.celery_app import celery


@celery.task(name=TRAIN_TASK, ignore_result=True)
def train(job_id: str) -> None:
    from worker.training.runner import run_job  # torch loads in the child, never in the parent

    run_job(job_id, get_settings())

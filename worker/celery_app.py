"""The Celery app of the worker. Transport only: the job row, not the message, is the truth.

torch is not imported here or in tasks.py at module level: the prefork parent must never
touch CUDA, and each job runs in a fresh child (max_tasks_per_child=1) so its GPU memory
is returned when it ends.
"""

from celery import Celery

from app.core.config import get_settings
from app.core.queue import celery_config


def create_celery() -> Celery:
    settings = get_settings()
    settings.ensure_dirs()
    app = Celery("trainserve")
    app.conf.update(celery_config(settings))
    app.conf.update(worker_max_tasks_per_child=1, worker_concurrency=1)
    app.conf.include = ["worker.tasks"]
    return app


celery = create_celery()

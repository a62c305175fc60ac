"""The Celery app of the worker. Transport only: the job row, not the message, is the truth.

Each job runs in a fresh pool child (max_tasks_per_child=1), so its GPU memory is returned
when it ends. The parent imports the training code once, before it forks (worker_init), so
a child starts in milliseconds instead of re-importing torch per job; the parent never
calls into CUDA, so forked children can still use it.
"""

from typing import Any

from celery import Celery, signals

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


@signals.worker_init.connect
def _preload_training_code(**_: Any) -> None:
    import torch

    from worker.training import runner  # noqa: F401  (torch, sklearn and the loop)

    # Building an optimizer imports torch._dynamo (~1 s); do it here once, on CPU.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)

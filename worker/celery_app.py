"""The Celery app of the worker. Transport only: the job row, not the message, is the truth.

Each job runs in a fresh pool child (max_tasks_per_child=1), so its GPU memory is returned
when it ends. The parent imports the training code once, before it forks (worker_init), so
a child starts in milliseconds instead of re-importing torch per job; the parent never
calls into CUDA, so forked children can still use it.
"""

from typing import Any

from celery import Celery, signals

from app.core.config import get_settings
from app.core.db import get_engine
from app.core.pools import queue_for
from app.services.queue import celery_config
from worker.node import NodeHeartbeat, ReaperLoop, node_id, pin_node_id


def create_celery() -> Celery:
    settings = get_settings()
    settings.ensure_dirs()
    app = Celery("trainserve")
    app.conf.update(celery_config(settings))
    app.conf.update(worker_max_tasks_per_child=1, worker_concurrency=1)
    # What this worker consumes without -Q: its pool's queue (TRAINSERVE_WORKER_POOL).
    app.conf.task_default_queue = queue_for(settings.queue_name, settings.worker_pool)
    app.conf.include = ["worker.tasks"]
    return app


celery = create_celery()


@signals.worker_init.connect
def _pin_node_id(**_: Any) -> None:
    pin_node_id()  # in the main process, before the pool forks: its children inherit it


@signals.worker_init.connect
def _preload_training_code(**_: Any) -> None:
    import torch

    from worker.training import runner  # noqa: F401  (torch, sklearn and the loop)

    # Building an optimizer imports torch._dynamo (~1 s); do it here once, on CPU.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


_heartbeat: NodeHeartbeat | None = None
_reaper: ReaperLoop | None = None


# How soon a finished job's pool child is replaced. The pool replaces an exited child when
# its sentinel fires, but the child is often not reaped yet at that moment (waitpid finds it
# still exiting), and the pool's own retry timer runs every 5 s: a job sent to an idle worker
# waited up to 5 s (bench/scale.py: queue→start p50 4.9 s). Checking every 0.2 s costs a
# waitpid(WNOHANG) per child.
REPLACE_CHILD_S = 0.2


@signals.worker_ready.connect
def _replace_children_promptly(sender: Any = None, **_: Any) -> None:
    hub, pool = getattr(sender, "hub", None), getattr(sender, "pool", None)
    maintain = getattr(pool, "maintain_pool", None)
    if hub is not None and maintain is not None:  # the prefork pool on the event loop
        hub.call_repeatedly(REPLACE_CHILD_S, maintain)


@signals.worker_ready.connect
def _start_supervision(sender: Any = None, **_: Any) -> None:
    global _heartbeat, _reaper
    _heartbeat = NodeHeartbeat(node_id(), _pool_size(sender), get_settings().worker_pool)
    _heartbeat.start()
    _reaper = ReaperLoop(node_id(), get_settings())
    _reaper.start()


def _pool_size(consumer: Any) -> int:
    """How many jobs this worker runs at once (--concurrency), advertised to the reaper."""
    pool = getattr(consumer, "pool", None)
    return int(getattr(pool, "num_processes", None) or celery.conf.worker_concurrency or 1)


@signals.worker_shutting_down.connect
def _drain(**_: Any) -> None:
    # Warm shutdown (SIGTERM): the pool child ends soon and nothing is lost (NodeHeartbeat.drain).
    if _heartbeat is not None:
        _heartbeat.drain()


@signals.worker_shutdown.connect
def _stop_supervision(**_: Any) -> None:
    if _reaper is not None:
        _reaper.stop()
    if _heartbeat is not None:
        _heartbeat.stop()


@signals.worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    # The parent's heartbeat thread uses pooled connections; a forked child must not share
    # them (SQLAlchemy: dispose(close=False) after fork).
    get_engine().dispose(close=False)

"""The worker nodes as the API sees them: which pools have live workers (submission refuses a
job no live pool can run), and each node's pool, devices, capacity and running jobs
(GET /v1/workers).

A node is live while its heartbeat is fresh (WORKER_FRESH_S, on the database's clock) and it
is not draining; draining while fresh; gone once its heartbeat lapsed. A worker that stops
gracefully deletes its row, so it drops out of the list; a killed one shows as gone.
"""

import re
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from app.core.db import db_now
from app.core.pools import pool_key, pool_label
from app.models import Job, JobStatus, WorkerNode
from app.models.worker import WORKER_FRESH_S
from app.services.pagination import paginate

NODE_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,200}$")  # hostname:pid
State = Literal["live", "draining", "gone"]


@dataclass(frozen=True)
class NodeView:
    node: WorkerNode
    state: State
    running: list[str]


def _fresh(session: Session) -> ColumnElement[bool]:
    return WorkerNode.last_seen >= db_now(session, -WORKER_FRESH_S)


def live(session: Session) -> ColumnElement[bool]:
    """Nodes that take new jobs: a fresh heartbeat, not draining."""
    return _fresh(session) & WorkerNode.draining.is_(False)


def live_pools(session: Session, cuda: bool = False) -> dict[str, int]:
    """Live workers per pool label ('default' for the default pool); with cuda, only those
    with a CUDA GPU."""
    where = live(session) & (WorkerNode.cuda_devices > 0) if cuda else live(session)
    query = select(WorkerNode.pool, func.count()).where(where).group_by(WorkerNode.pool)
    return {pool_label(pool): count for pool, count in session.execute(query)}


def live_gpu_counts(session: Session, pool: str | None) -> list[int]:
    """The CUDA GPUs of each live worker of one pool (its key: None for the default pool)."""
    where = WorkerNode.pool.is_(None) if pool is None else WorkerNode.pool == pool
    return list(session.scalars(select(WorkerNode.cuda_devices).where(live(session) & where)))


def describe(pools: dict[str, int]) -> str:
    """'cpu (2 workers), default (1 worker)', or 'none'."""
    said = [f"{name} ({n} worker{'s' if n != 1 else ''})" for name, n in sorted(pools.items())]
    return ", ".join(said) or "none"


def list_workers(
    session: Session, limit: int, cursor: str | None, pool: str | None = None
) -> tuple[list[NodeView], str | None]:
    """Every node with a row, newest first; `pool` ('default' for the default pool) filters."""
    query = select(WorkerNode)
    if pool is not None:
        key = pool_key(pool)
        query = query.where(WorkerNode.pool.is_(None) if key is None else WorkerNode.pool == key)
    rows, next_cursor = paginate(session, query, WorkerNode, limit, cursor, ids=NODE_ID)
    fresh = _states(session, [row.id for row in rows])
    running = _running(session, [row.id for row in rows])
    views = [NodeView(row, _state(row, row.id in fresh), running.get(row.id, [])) for row in rows]
    return views, next_cursor


def _state(node: WorkerNode, fresh: bool) -> State:
    if not fresh:
        return "gone"
    return "draining" if node.draining else "live"


def _states(session: Session, ids: list[str]) -> set[str]:
    """Which of these nodes have a fresh heartbeat, judged on the database's clock."""
    query = select(WorkerNode.id).where(WorkerNode.id.in_(ids), _fresh(session))
    return set(session.scalars(query))


def _running(session: Session, ids: list[str]) -> dict[str, list[str]]:
    """The running jobs of these nodes, oldest claim first: the job rows are the truth."""
    query = (
        select(Job.node_id, Job.id)
        .where(Job.status == JobStatus.running, Job.node_id.in_(ids))
        .order_by(Job.started_at, Job.id)
    )
    found: dict[str, list[str]] = {}
    for node_id, job_id in session.execute(query):
        found.setdefault(node_id or "", []).append(job_id)
    return found


def node_fields(view: NodeView) -> dict[str, Any]:
    """The public fields of a node (app/schemas/worker.py)."""
    node = view.node
    return {
        "id": node.id,
        "hostname": node.hostname,
        "pool": pool_label(node.pool),
        "devices": list(node.devices or []),
        "capacity": node.concurrency,
        "running": view.running,
        "state": view.state,
        "started_at": node.started_at,
        "last_seen": node.last_seen,
    }

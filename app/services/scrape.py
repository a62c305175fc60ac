"""What /metrics answers: job counts read from the database and the model cache's totals,
set when it is scraped, then the exposition text of every series."""

from typing import Protocol

from prometheus_client import Gauge, generate_latest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.prometheus import REGISTRY, WithoutTenants, all_processes
from app.models import Job, JobStatus


class CacheTotals(Protocol):
    """What a model cache counts (app/serving/cache.py ModelCache)."""

    loads: int
    evictions: int

    @property
    def loaded_bytes(self) -> int: ...


# multiprocess_mode: how `api --processes N` adds up the processes' values (ignored otherwise).
# Job counts come from the database, so any process's latest reading is the answer; the
# caches are per process, so theirs add up.
JOBS = Gauge(
    "trainserve_jobs",
    "Jobs by status",
    ["status"],
    registry=REGISTRY,
    multiprocess_mode="mostrecent",
)
CACHE_LOADS = Gauge(
    "trainserve_model_cache_loads",
    "Model versions loaded from disk",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
CACHE_EVICTIONS = Gauge(
    "trainserve_model_cache_evictions",
    "Model versions evicted",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
CACHE_BYTES = Gauge(
    "trainserve_model_cache_bytes",
    "Bytes of loaded model versions",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)


def render(session: Session, cache: CacheTotals, open_endpoint: bool) -> bytes:
    """The exposition text. An open endpoint (no key asked) names no tenant: per-model series
    are summed over their models."""
    counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    for status in JobStatus:
        JOBS.labels(status.value).set(counts.get(status.value, 0))
    CACHE_LOADS.set(cache.loads)
    CACHE_EVICTIONS.set(cache.evictions)
    CACHE_BYTES.set(cache.loaded_bytes)
    source = all_processes()
    return generate_latest(WithoutTenants(source) if open_endpoint else source)

"""Prometheus metrics: HTTP traffic (from middleware) and job and model state (read at scrape)."""

import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from app.models import Job, JobStatus
from app.serving.cache import ModelCache
from app.serving.metrics import REGISTRY

REQUESTS = Counter(
    "trainserve_http_requests", "HTTP requests", ["method", "route", "status"], registry=REGISTRY
)
LATENCY = Histogram(
    "trainserve_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
JOBS = Gauge("trainserve_jobs", "Jobs by status", ["status"], registry=REGISTRY)
CACHE_LOADS = Gauge(
    "trainserve_model_cache_loads", "Model versions loaded from disk", registry=REGISTRY
)
CACHE_EVICTIONS = Gauge(
    "trainserve_model_cache_evictions", "Model versions evicted", registry=REGISTRY
)
CACHE_BYTES = Gauge(
    "trainserve_model_cache_bytes", "Bytes of loaded model versions", registry=REGISTRY
)


async def record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    start = time.perf_counter()
    response = await call_next(request)
    # The route template, not the raw path, keeps label cardinality bounded.
    route = getattr(request.scope.get("route"), "path", "unmatched")
    LATENCY.labels(request.method, route).observe(time.perf_counter() - start)
    REQUESTS.labels(request.method, route, str(response.status_code)).inc()
    return response


def render(session: Session, cache: ModelCache) -> bytes:
    counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    for status in JobStatus:
        JOBS.labels(status.value).set(counts.get(status.value, 0))
    CACHE_LOADS.set(cache.loads)
    CACHE_EVICTIONS.set(cache.evictions)
    CACHE_BYTES.set(cache.loaded_bytes)
    return generate_latest(REGISTRY)

"""Prometheus metrics: HTTP traffic (from middleware) and job and model state (read at scrape)."""

import os
import time
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.models import Job, JobStatus
from app.serving.cache import ModelCache
from app.serving.metrics import REGISTRY, TENANT_LABELS

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


class HttpMetrics:
    """Requests and latency per route, as plain ASGI middleware: Starlette's
    BaseHTTPMiddleware runs each request through a task group and a stream, which cost a tenth
    of a small predict request's CPU."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets when the app fails before it answers

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The route template, not the raw path, keeps label cardinality bounded.
            route = getattr(scope.get("route"), "path", "unmatched")
            latency, requests = self._series(scope["method"], route, status)
            latency.observe(time.perf_counter() - start)
            requests.inc()

    def _series(self, method: str, route: str, status: int) -> tuple[Histogram, Counter]:
        """The labelled children, looked up once per (method, route, status): `.labels()`
        takes a lock and formats the labels on every call. Bounded as the labels are."""
        key = (method, route, status)
        found = self._children.get(key)
        if found is None:
            found = LATENCY.labels(method, route), REQUESTS.labels(method, route, str(status))
            self._children[key] = found
        return found


def render(session: Session, cache: ModelCache, open_endpoint: bool) -> bytes:
    """The exposition text. An open endpoint (no key asked) names no tenant: per-model series
    are summed over their models."""
    counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    for status in JobStatus:
        JOBS.labels(status.value).set(counts.get(status.value, 0))
    CACHE_LOADS.set(cache.loads)
    CACHE_EVICTIONS.set(cache.evictions)
    CACHE_BYTES.set(cache.loaded_bytes)
    source = _all_processes()
    return generate_latest(WithoutTenants(source) if open_endpoint else source)


def _all_processes() -> Collector:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # `api --processes N`: every process's values
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


class WithoutTenants:
    """Another collector's metrics with the tenant labels (TENANT_LABELS) summed away."""

    def __init__(self, source: Collector) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            yield _summed_over_tenants(family)


def _summed_over_tenants(family: Metric) -> Metric:
    """Counts, sums, buckets and gauges add up across models; a `_created` sample (when a
    series began) keeps the earliest. Samples keep their order, so buckets stay in order."""
    if not any(TENANT_LABELS & sample.labels.keys() for sample in family.samples):
        return family
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for sample in family.samples:
        labels = tuple((k, v) for k, v in sample.labels.items() if k not in TENANT_LABELS)
        key = (sample.name, labels)
        if key not in values:
            values[key] = sample.value
        elif sample.name.endswith("_created"):
            values[key] = min(values[key], sample.value)
        else:
            values[key] += sample.value
    summed = Metric(family.name, family.documentation, family.type, family.unit)
    for (name, labels), value in values.items():
        summed.add_sample(name, dict(labels), value)
    return summed

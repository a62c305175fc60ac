"""HTTP requests and latency per route, from middleware."""

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.prometheus import REGISTRY

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

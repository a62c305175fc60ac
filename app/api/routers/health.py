from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import Authorization, SessionDep, SettingsDep
from app.api.openapi import errors_for
from app.core.config import get_settings
from app.core.version import VERSION
from app.schemas.key import Scope
from app.schemas.operations import Health, Readiness, Root
from app.services import health, scrape
from app.services.auth import authenticate

router = APIRouter(tags=["operations"])


@router.get("/", response_model=Root, summary="Where to go")
def root() -> dict[str, object]:
    """Where to go from here (the docs, the health checks, the lists): no key needed,
    nothing about any project."""
    return {
        "name": "trainserve",
        "version": VERSION,
        "links": {
            "dashboard": "/ui/",
            "docs": "/docs",
            "redoc": "/redoc",
            "openapi": "/openapi.json",
            "health": "/healthz",
            "ready": "/readyz",
            "metrics": "/metrics",
            "jobs": "/v1/jobs",
            "models": "/v1/models",
            "datasets": "/v1/datasets",
            "base_models": "/v1/base-models",
        },
    }


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz() -> dict[str, str]:
    """The process is alive: it answers, whatever its database and broker do. No key."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "A check failed: not ready"}},
)
def readyz(session: SessionDep) -> JSONResponse:
    """Whether the database, the broker and the artifact store are reachable and the data
    dir has room: 200 when all are, else 503 with what failed. No key."""
    checks = health.readiness(session, get_settings())
    ready = all(c == "ok" for c in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


def scraper(
    session: SessionDep,
    settings: SettingsDep,
    authorization: Authorization,
) -> None:
    """/metrics shows every project's model names and traffic, so it takes a key with the
    metrics (or admin) scope, unless the operator opened it (TRAINSERVE_METRICS_OPEN)."""
    if not settings.metrics_open:
        authenticate(session, authorization).require(Scope.metrics)


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(scraper)],
    summary="Prometheus metrics",
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        },
        **errors_for(
            when={
                401: "No key, or a bad one (missing_key, invalid_key), unless the operator "
                "opened /metrics (TRAINSERVE_METRICS_OPEN)",
                403: "The key has neither the metrics nor the admin scope (insufficient_scope)",
            }
        ),
    },
)
def prometheus(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """HTTP series per route and status, per-model predict series, jobs by status, for a
    Prometheus scraper: a key with the metrics scope unless TRAINSERVE_METRICS_OPEN."""
    body = scrape.render(session, request.app.state.serving.cache, settings.metrics_open)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import SessionDep, SettingsDep
from app.core.config import get_settings
from app.core.version import VERSION
from app.schemas.key import Scope
from app.services import health, scrape
from app.services.auth import authenticate

router = APIRouter(tags=["operations"])


@router.get("/")
def root() -> dict[str, object]:
    """Where to go from here: no key needed, nothing about any project."""
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


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(session: SessionDep) -> JSONResponse:
    checks = health.readiness(session, get_settings())
    ready = all(c == "ok" for c in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


def scraper(
    session: SessionDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """/metrics shows every project's model names and traffic, so it takes a key with the
    metrics (or admin) scope, unless the operator opened it (TRAINSERVE_METRICS_OPEN)."""
    if not settings.metrics_open:
        authenticate(session, authorization).require(Scope.metrics)


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(scraper)],
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
def prometheus(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    body = scrape.render(session, request.app.state.serving.cache, settings.metrics_open)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

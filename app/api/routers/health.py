from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from app.api import metrics
from app.api.deps import SessionDep
from app.core.config import get_settings
from app.services import health

router = APIRouter(tags=["operations"])


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


@router.get("/metrics", response_class=Response)
def prometheus(request: Request, session: SessionDep) -> Response:
    body = metrics.render(session, request.app.state.serving.cache)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

"""create_app(): lifespan, middleware, routers, and the one error handler."""

import fcntl
import gc
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from app.api import docs, errors, http_metrics
from app.api.limits import BodySizeLimit
from app.api.routers import (
    base_models,
    datasets,
    generate,
    health,
    jobs,
    keys,
    models,
    open_inference,
    ui,
    workers,
)
from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.core.migrate import upgrade
from app.core.version import VERSION
from app.services import base_model_catalog
from app.services.auth import ensure_key
from app.serving import front_door
from app.serving.runtime import Serving

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Train PyTorch models and serve them behind one API.\n\n"
    "Every route but `/`, `/healthz`, `/readyz` and these docs takes "
    "`Authorization: Bearer <key>` (**Authorize** above); an admin key may act in another "
    "project with `X-Trainserve-Project`. Errors on /v1 are "
    '`{"error": {"code", "message", "details"}}`; on /v2, `{"error": "..."}`.'
)
TAGS = [
    {"name": "jobs", "description": "Submit a job spec, watch it train, cancel it"},
    {"name": "datasets", "description": "Upload datasets to train on (or name a builtin one)"},
    {"name": "models", "description": "The registry: versions, aliases, exports, and predict"},
    {"name": "generate", "description": "Text from a fine-tuned generator"},
    {"name": "base models", "description": "Pretrained Hugging Face folders to fine-tune"},
    {"name": "keys", "description": "API keys and their scopes (admin)"},
    {"name": "open inference protocol", "description": "KServe V2 on the same models"},
    {"name": "operations", "description": "Where to go, liveness, readiness, Prometheus"},
]


def prepare(settings: Settings) -> None:
    """Start-up work both `up` and `api` need: folders, the embedded schema, the bootstrap key,
    the operator's base models (TRAINSERVE_BASE_MODELS_DIR).
    One process at a time (`api --processes N` starts N at once): both steps read, then write."""
    settings.ensure_dirs()
    with open(settings.data_dir / ".prepare.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if settings.db_url.startswith("sqlite"):
            upgrade(settings.db_url)
        if settings.api_key:
            with session_scope() as session:
                ensure_key(session, settings.api_key)
        if settings.base_models_dir is not None:
            with session_scope() as session:
                base_model_catalog.sync_operator_dir(session, settings)


def _freeze_startup_objects() -> None:
    """Move what start-up built (torch, FastAPI, the routes: ~10^6 objects) out of the cyclic
    garbage collector's reach. Each full collection walked all of it, 0.3-0.5 s with the event
    loop stopped, every few seconds under predict load: the p99.9 of every request. gc.freeze()
    is made for this (CPython docs: call it once start-up is done). Once per process: an app
    started again in the same process (tests) has nothing new of that size to freeze."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def _telemetry(settings: Settings) -> dict[str, Any]:
    """FastAPI's native OpenTelemetry (recent releases) looks for a configured provider on
    every request, which cost ~5% of a small predict request's CPU. It is on only when
    TRAINSERVE_OTEL is set; /metrics does not depend on it."""
    if settings.otel or "telemetry" not in inspect.signature(FastAPI).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def _document_front_door(app: FastAPI) -> None:
    """/openapi.json: FastAPI's routes, and predict's paths from the front door's own table."""
    fastapi_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            front_door.document(fastapi_openapi())  # FastAPI keeps it as app.openapi_schema
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prepare(settings)
        _freeze_startup_objects()
        yield
        await app.state.serving.close()

    app = FastAPI(
        title="trainserve",
        version=VERSION,
        lifespan=lifespan,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        docs_url=None,  # app/api/docs.py serves both pages with local assets
        redoc_url=None,
        **_telemetry(settings),
    )
    app.state.serving = Serving(settings)
    errors.install(app)
    # Outermost last: the body limit, then metrics, then predict's front door, then the app.
    app.add_middleware(
        front_door.FrontDoor, serving=app.state.serving, handler_for=errors.handler_for
    )
    app.add_middleware(http_metrics.HttpMetrics)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_json_body_bytes,
        rows_bytes=settings.max_request_bytes,
        uploads={
            ("POST", "/v1/datasets"): settings.max_upload_bytes,
            ("POST", "/v1/base-models"): settings.max_base_model_upload_bytes,
        },
    )
    for router in (
        health.router,
        jobs.router,
        models.router,
        datasets.router,
        base_models.router,
        generate.router,
        keys.router,
        workers.router,
        open_inference.router,
        ui.router,
    ):
        app.include_router(router)
    docs.install(app)
    _document_front_door(app)
    return app

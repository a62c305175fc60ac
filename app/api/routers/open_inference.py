"""The Open Inference Protocol (KServe V2) on the same models, so standard clients
(tritonclient, KServe) work unchanged: health and model metadata here; infer is a predict
path, served by app/serving/front_door.py. Errors on /v2 are {"error": "..."}."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from app.api.deps import (
    ModelName,
    Predict,
    ServingDep,
    SessionDep,
    SettingsDep,
    VersionRef,
    get_principal,
)
from app.api.openapi import KEYED, v2_errors_for
from app.schemas.open_inference import Live, ModelMetadata, ModelReady, Ready
from app.services import health, registry
from app.services.auth import Principal
from app.serving import open_inference
from app.serving.runtime import Serving

router = APIRouter(prefix="/v2", tags=["open inference protocol"], responses=v2_errors_for(*KEYED))
NO_MODEL = {404: "No such model in the caller's project, or no such version or alias (not_found)"}
Authenticated = Annotated[Principal, Depends(get_principal)]


@router.get("/health/live", response_model=Live, summary="Server live")
def live(_: Authenticated) -> dict[str, bool]:
    """The server answers."""
    return {"live": True}


@router.get(
    "/health/ready",
    response_model=Ready,
    summary="Server ready",
    responses={503: {"model": Ready, "description": "The database or broker is unreachable"}},
)
def ready(session: SessionDep, settings: SettingsDep, _: Authenticated) -> JSONResponse:
    """The database and broker are reachable: 200 {"ready": true}, else 503."""
    ok = all(c == "ok" for c in health.readiness(session, settings).values())
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


METADATA = "A model's versions, and the input and output tensors infer takes and gives, of {what}."
READY = (
    "Load {what} into this process's model cache (if it is not yet) and say it is ready: "
    "the next infer does not wait for the load."
)
DEFAULT = "its production alias, else its latest version"
MODEL_READY = v2_errors_for(
    when={
        **NO_MODEL,
        409: "The version's checkpoint is missing, corrupt or altered (model_unavailable)",
    }
)


# Two routes each, with and without a version: a path parameter cannot be optional.
@router.get(
    "/models/{name}",
    response_model=ModelMetadata,
    summary="Model metadata",
    description=METADATA.format(what=DEFAULT),
    responses=v2_errors_for(when=NO_MODEL),
)
def model_metadata(name: ModelName, session: SessionDep, principal: Predict) -> ModelMetadata:
    return _metadata(session, principal, name, None)


@router.get(
    "/models/{name}/versions/{ref}",
    response_model=ModelMetadata,
    summary="Model metadata of a version or alias",
    description=METADATA.format(what="`ref`: a version number or an alias"),
    responses=v2_errors_for(when=NO_MODEL),
)
def version_metadata(
    name: ModelName, ref: VersionRef, session: SessionDep, principal: Predict
) -> ModelMetadata:
    return _metadata(session, principal, name, ref)


def _metadata(session: Session, principal: Principal, name: str, ref: str | None) -> ModelMetadata:
    version = registry.resolve(session, principal.project, name, ref)
    return open_inference.metadata(name, registry.versions(session, version.model), version)


@router.get(
    "/models/{name}/ready",
    response_model=ModelReady,
    summary="Model ready",
    description=READY.format(what=DEFAULT),
    responses=MODEL_READY,
)
async def model_ready(name: ModelName, serving: ServingDep, principal: Predict) -> dict[str, Any]:
    return await _ready(serving, principal, name, None)


@router.get(
    "/models/{name}/versions/{ref}/ready",
    response_model=ModelReady,
    summary="Model ready, of a version or alias",
    description=READY.format(what="`ref`: a version number or an alias"),
    responses=MODEL_READY,
)
async def version_ready(
    name: ModelName, ref: VersionRef, serving: ServingDep, principal: Predict
) -> dict[str, Any]:
    return await _ready(serving, principal, name, ref)


async def _ready(
    serving: Serving, principal: Principal, name: str, ref: str | None
) -> dict[str, Any]:
    await serving.load(await serving.resolve(principal.project, name, ref))
    return {"name": name, "ready": True}

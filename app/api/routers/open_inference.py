"""The Open Inference Protocol (KServe V2) on the same models, so standard clients
(tritonclient, KServe) work unchanged: health and model metadata here; infer is a predict
path, served by app/serving/front_door.py. Errors on /v2 are {"error": "..."}."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from app.api.deps import (
    ModelName,
    Predict,
    ServingDep,
    SessionDep,
    SettingsDep,
    VersionRef,
    get_principal,
)
from app.schemas.open_inference import ModelMetadata
from app.services import health, registry
from app.services.auth import Principal
from app.serving import open_inference

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
Authenticated = Annotated[Principal, Depends(get_principal)]
Ref = VersionRef


@router.get("/health/live")
def live(_: Authenticated) -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready")
def ready(session: SessionDep, settings: SettingsDep, _: Authenticated) -> JSONResponse:
    ok = all(c == "ok" for c in health.readiness(session, settings).values())
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get("/models/{name}", response_model=ModelMetadata)
@router.get("/models/{name}/versions/{ref}", response_model=ModelMetadata)
def model_metadata(
    name: ModelName, session: SessionDep, principal: Predict, ref: Ref | None = None
) -> ModelMetadata:
    version = registry.resolve(session, principal.project, name, ref)
    return open_inference.metadata(name, registry.versions(session, version.model), version)


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{ref}/ready")
async def model_ready(
    name: ModelName, serving: ServingDep, principal: Predict, ref: Ref | None = None
) -> dict[str, Any]:
    await serving.load(await serving.resolve(principal.project, name, ref))
    return {"name": name, "ready": True}

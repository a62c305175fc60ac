"""The Open Inference Protocol (KServe V2) on the same models, so standard clients
(tritonclient, KServe) work unchanged. Errors on /v2 are {"error": "..."}."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
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
from app.api.routers.predict import json_body_openapi, model_path, parse_body, path_openapi
from app.schemas.v2 import InferRequest, InferResponse, ModelMetadata
from app.services import health, registry
from app.services.auth import Principal
from app.serving import v2
from app.serving.service import Serving

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
    return v2.metadata(name, registry.versions(session, version.model), version)


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{ref}/ready")
async def model_ready(
    name: ModelName, serving: ServingDep, principal: Predict, ref: Ref | None = None
) -> dict[str, Any]:
    await serving.load(await serving.resolve(principal.project, name, ref))
    return {"name": name, "ready": True}


@router.post(
    "/models/{name}/infer",
    response_model=InferResponse,
    response_model_exclude_none=True,
    openapi_extra=path_openapi("name") | json_body_openapi(InferRequest),
)
@router.post(
    "/models/{name}/versions/{ref}/infer",
    response_model=InferResponse,
    response_model_exclude_none=True,
    include_in_schema=False,
)
async def infer(request: Request) -> Response:
    """Like predict (app/api/routers/predict.py), a hot path: the request alone, no FastAPI
    parameters or dependencies; app/api/lane.py sends it here straight."""
    serving: Serving = request.app.state.serving
    principal = await serving.principal(request.headers, "predict")
    name, ref = model_path(request.path_params)
    header_length = request.headers.get("inference-header-content-length")
    max_rows = serving.settings.max_predict_rows
    body, rows = await parse_body(
        await request.body(), lambda raw: v2.read_request(raw, header_length, max_rows)
    )
    answer = await serving.handle(principal.project, name, ref, rows)
    wanted = {o.name for o in body.outputs} if body.outputs else None
    response = InferResponse(
        model_name=name,
        model_version=str(answer.model_version),
        id=body.id,
        outputs=v2.outputs(answer.prediction, wanted),
    )
    return Response(response.model_dump_json(exclude_none=True), media_type="application/json")

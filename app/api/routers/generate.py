from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from app.api.deps import ModelName, ServingDep, predict_principal
from app.schemas.generate import GenerateRequest, GenerateResponse
from app.services.auth import Principal
from app.serving.model_metrics import model_label

router = APIRouter(tags=["generate"])
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post(
    "/v1/models/{name}/generate",
    response_model=GenerateResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def generate(
    name: ModelName,
    body: GenerateRequest,
    serving: ServingDep,
    principal: Annotated[Principal, Depends(predict_principal)],
) -> Any:
    """Continue a prompt with a fine-tuned generator (a pretrained decoder, head causal-lm).
    With `stream`, Server-Sent Events: `token` per token, then `done` with the totals."""
    ref = str(body.version) if body.version is not None else None
    version = await serving.resolve(principal.project, name, ref)
    bundle = await serving.load(version)
    job = serving.generations.prepare(bundle, body, model_label(principal.project, name))
    if not body.stream:
        return await serving.generations.complete(job, name, version.version)
    slot = serving.generations.slot()
    events = serving.generations.stream(job, name, version.version, slot)
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers=STREAM_HEADERS,
        background=BackgroundTask(slot.release),
    )

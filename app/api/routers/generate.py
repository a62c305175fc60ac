from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from app.api.deps import ModelName, ServingDep, predict_principal
from app.api.openapi import KEYED, errors_for
from app.schemas.generate import GenerateRequest, GenerateResponse
from app.services.auth import Principal
from app.serving.model_metrics import model_label

router = APIRouter(tags=["generate"])
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


TOKENS = (
    "The generated text (stream false: JSON), or with stream true, Server-Sent Events: "
    "`token` {index, token, text}, one per new token as it is sampled, then `done` "
    "{model_name, model_version, text, tokens, prompt_tokens, finish_reason}: the whole "
    "answer, as the JSON one, after which the stream ends."
)


@router.post(
    "/v1/models/{name}/generate",
    response_model=GenerateResponse,
    responses={
        200: {
            "description": TOKENS,
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **errors_for(
            *KEYED,
            413,
            when={
                404: "No such model in the caller's project, or no such version or alias "
                "(not_found)",
                409: "The version's checkpoint is missing, corrupt or altered (model_unavailable)",
                422: "A field out of range, a prompt or max_new_tokens past the server's "
                "limits, or a model that does not generate text (validation_error, "
                "not_a_generator)",
                429: "As many generations as TRAINSERVE_MAX_CONCURRENT_GENERATIONS are "
                "streaming in this process (too_many_requests; Retry-After)",
            },
        ),
    },
)
async def generate(
    name: ModelName,
    body: GenerateRequest,
    serving: ServingDep,
    principal: Annotated[Principal, Depends(predict_principal)],
) -> Any:
    """Continue a prompt with a fine-tuned generator (a pretrained decoder, head causal-lm),
    from its production alias, else its latest version, or the `version` asked for.
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

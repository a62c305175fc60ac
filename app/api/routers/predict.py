"""POST /v1/models/{name}/predict and /v1/models/{name}/versions/{ref}/predict.

The service's hot path. Its endpoint takes the request alone and reads the path, the key and
the body itself: FastAPI's parameter and dependency machinery, and its JSON decoding with the
standard library, cost more CPU per request than a small model's whole prediction
(bench/README.md). app/api/lane.py sends these requests straight to it. Errors keep the
shapes the rest of the API gives them (app/api/errors.py).
"""

import re
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from app.core.errors import AppError
from app.schemas.job import NAME_PATTERN
from app.schemas.model import REF_PATTERN, PredictRequest, PredictResponse
from app.serving.predictor import check_json_containers
from app.serving.service import Serving

router = APIRouter(prefix="/v1/models", tags=["models"])

JSON_TYPES = ("/json", "+json")
PATH_PATTERNS = {"name": re.compile(NAME_PATTERN), "ref": re.compile(REF_PATTERN)}
# Bodies up to this size are parsed on the event loop, past it in a thread (parse_body).
INLINE_BYTES = 64 * 1024
T = TypeVar("T")


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"


def path_openapi(*params: str) -> dict[str, Any]:
    """What FastAPI would document for path parameters it was not told about."""
    return {
        "parameters": [
            {
                "name": param,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": PATH_PATTERNS[param].pattern},
            }
            for param in params
        ]
    }


def json_body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """What FastAPI would document for a body model the endpoint reads itself."""
    return {
        "requestBody": {
            "content": {"application/json": {"schema": model.model_json_schema()}},
            "required": True,
        }
    }


@router.post(
    "/{name}/predict",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    openapi_extra=path_openapi("name") | json_body_openapi(PredictRequest),
)
@router.post(
    "/{name}/versions/{ref}/predict",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    openapi_extra=path_openapi("name", "ref") | json_body_openapi(PredictRequest),
)
async def predict(request: Request) -> Response:
    """Rows in, labels and probabilities out, from the version the name (production, else
    the latest) or `ref` (a version number or an alias) points to now."""
    serving: Serving = request.app.state.serving
    principal = await serving.principal(request.headers, "predict")
    name, ref = model_path(request.path_params)
    inputs = await _inputs(request)
    answer = await serving.handle(principal.project, name, ref, inputs)
    # orjson writes the PredictResponse fields several times faster than the response model.
    return Response(orjson.dumps(answer.body()), media_type="application/json")


def model_path(params: dict[str, Any]) -> tuple[str, str | None]:
    """The model name and version ref of a request's path, checked as FastAPI would."""
    errors = [
        {
            "type": "string_pattern_mismatch",
            "loc": ("path", field),
            "msg": f"String should match pattern '{pattern.pattern}'",
            "input": params[field],
        }
        for field, pattern in PATH_PATTERNS.items()
        if field in params and not pattern.match(params[field])
    ]
    if errors:
        raise RequestValidationError(errors)
    return params["name"], params.get("ref")


async def parse_body(raw: bytes, parse: Callable[[bytes], T]) -> T:
    """parse(raw), inline for a small body: the hot path, where a thread hop would cost more
    than the parse. A large one is parsed in a thread, so that while a body of megabytes is
    parsed and checked, the event loop goes on answering other requests."""
    if len(raw) <= INLINE_BYTES:
        return parse(raw)
    return await run_in_threadpool(parse, raw)


async def _inputs(request: Request) -> list[Any]:
    media_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if not media_type.lower().endswith(JSON_TYPES):
        raise UnsupportedMediaType(f"send the body as application/json, not '{media_type[:100]}'")
    raw = await request.body()
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    max_rows = request.app.state.serving.settings.max_predict_rows
    return await parse_body(raw, lambda raw: _parse_inputs(raw, max_rows))


def _parse_inputs(raw: bytes, max_rows: int) -> list[Any]:
    """The body's `inputs`. orjson parses it; a body that is not exactly {"inputs": [...]}
    is validated again by PredictRequest, for the errors every other route gives."""
    check_json_containers(raw, max_rows)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None  # pydantic says where, below
    inputs = body.get("inputs") if type(body) is dict and len(body) == 1 else None
    if type(inputs) is list and inputs:
        return inputs
    try:
        return PredictRequest.model_validate_json(raw).inputs
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None

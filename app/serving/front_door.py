"""The one way in for predict requests: the table of predict's POST paths, and the whole of
a request in order: key → path → body → parse → resolve, decode, batch, predict
(Serving.handle) → encode → response. Its OpenAPI comes from the same table.

It is ASGI middleware at the head of the app, inside the body limit and the HTTP metrics
(app/main.py), not a FastAPI route: a request walking the route list (a regex per route) and
FastAPI's exception, exit-stack and request layers cost more CPU than a small model's whole
prediction (bench/README.md; plain Starlette Routes at the head of the router measured 5%
more CPU per request than this). So no FastAPI route declares these paths, and nothing
declared on one (a dependency, a response model) could be silently skipped. Errors become
responses through the app's own handlers, handed in by app/main.py, so they look as they do
anywhere else; another method on a predict path is a 405 in the same shape.
"""

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL, Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.schemas.error import WHEN, ErrorResponse, OpenInferenceError
from app.schemas.job import NAME_PATTERN
from app.schemas.model import REF_PATTERN
from app.services.auth import BEARER_SCHEME
from app.serving.codecs import Codec, OpenInference, Parsed, PredictJson
from app.serving.runtime import Serving

Handler = Callable[[Request, Exception], Awaitable[Response]]
PATH_PATTERNS = {"name": re.compile(NAME_PATTERN), "ref": re.compile(REF_PATTERN)}
# Bodies up to this size are parsed on the event loop, past it in a thread (_parse).
INLINE_BYTES = 64 * 1024
JSON_HEADERS = [(b"content-type", b"application/json")]
T = TypeVar("T")


@dataclass(frozen=True)
class Door:
    path: str  # the template; HTTP metrics label requests by it (scope["route"].path)
    codec: Codec
    tag: str
    summary: str
    description: str
    errors: Mapping[int, str]  # what it can answer, and when (for the docs)
    error_model: type[BaseModel] = ErrorResponse  # /v2: the Open Inference Protocol's
    regex: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path)
        object.__setattr__(self, "regex", re.compile(f"^{pattern}$"))

    @property
    def params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)


_PREDICT = (
    "Rows in, labels and probabilities out, from the version the name points to now: "
    "its production alias, else its latest version{ref}. A row is a list of numbers in "
    "feature order, an object of named features, a string for text models, or an image "
    "(base64 PNG/JPEG, or its pixel values) for image models."
)
_INFER = (
    "The Open Inference Protocol (KServe V2) on the same models{ref}: one input tensor, in "
    "JSON or the binary tensor extension; outputs `predictions` and, for classifiers, "
    "`probabilities`."
)
_REF = ", or `ref`: a version number or an alias"
# What a request here can answer, in _answer's order: the key, the path, the body, the model.
PREDICT_ERRORS = {
    400: "The body is not JSON (invalid_json), or X-Trainserve-Project is not a project name "
    "(invalid_project)",
    401: WHEN[401],
    403: "The key lacks the predict scope (insufficient_scope), or names another project "
    "without being an admin key (wrong_project)",
    404: "No such model in the caller's project, or no such version or alias (not_found)",
    409: "The version's checkpoint is missing, corrupt or altered (model_unavailable)",
    413: "The body is past TRAINSERVE_MAX_REQUEST_BYTES, or it has more rows, values or pixels "
    "than the server takes (payload_too_large)",
    415: "The Content-Type is not JSON (unsupported_media_type)",
    422: "A path parameter, or a row the model cannot read: wrong width, not a number, an "
    "unknown feature, an image that does not decode (validation_error)",
    503: "The model's queue is full (overloaded): retry shortly",
}
INFER_ERRORS = {
    **{status: PREDICT_ERRORS[status] for status in (401, 403, 404, 409, 413, 503)},
    400: "X-Trainserve-Project is not a project name (invalid_project)",
    422: "A path parameter, a body that is not an inference request (JSON, then the binary "
    "tensor data if Inference-Header-Content-Length says so), more than one input, a shape or "
    "datatype the model cannot read",
}
DOORS = (
    Door(
        "/v1/models/{name}/predict",
        PredictJson(),
        "models",
        "Predict",
        _PREDICT.format(ref=""),
        PREDICT_ERRORS,
    ),
    Door(
        "/v1/models/{name}/versions/{ref}/predict",
        PredictJson(),
        "models",
        "Predict with a version or alias",
        _PREDICT.format(ref=_REF),
        PREDICT_ERRORS,
    ),
    Door(
        "/v2/models/{name}/infer",
        OpenInference(),
        "open inference protocol",
        "Infer",
        _INFER.format(ref=""),
        INFER_ERRORS,
        OpenInferenceError,
    ),
    Door(
        "/v2/models/{name}/versions/{ref}/infer",
        OpenInference(),
        "open inference protocol",
        "Infer with a version or alias",
        _INFER.format(ref=_REF),
        INFER_ERRORS,
        OpenInferenceError,
    ),
)


class FrontDoor:
    def __init__(
        self,
        app: ASGIApp,
        serving: Serving,
        handler_for: Callable[[Exception], Handler],
        doors: tuple[Door, ...] = DOORS,
    ) -> None:
        """handler_for: the app's error handler for an exception (app/api/errors.py)."""
        self.app, self.serving, self.handler_for, self.doors = app, serving, handler_for, doors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            door, match = self._door(scope["path"])
            if door is not None and match is not None:
                scope.update(path_params=match.groupdict(), route=door)
                await self._serve(door, scope, receive, send)
                return
            if scope["path"].endswith("/") and self._door(scope["path"][:-1])[0]:
                # As FastAPI's router answers every route with a trailing slash: a 307 to
                # the path without it (the client repeats its method and body there).
                url = URL(scope=scope).replace(path=scope["path"][:-1])
                await RedirectResponse(url, status_code=307)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _door(self, path: str) -> tuple[Door | None, re.Match[str] | None]:
        for door in self.doors:
            match = door.regex.match(path)
            if match is not None:
                return door, match
        return None, None

    async def _serve(self, door: Door, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["method"] != "POST":
                raise HTTPException(405, headers={"Allow": "POST"})
            body = await self._answer(door, scope, receive)
        except Exception as exc:
            request = Request(scope, receive)
            response = await self.handler_for(exc)(request, exc)
            await response(scope, receive, send)
            return
        if body is None:  # the client left before its body was whole
            return
        headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, door: Door, scope: Scope, receive: Receive) -> bytes | None:
        headers = Headers(scope=scope)
        # The key first: without one, nothing about the path or the body is answered.
        principal = await self.serving.principal(headers, "predict")
        name, ref = model_path(scope["path_params"])
        raw = await _read_body(receive)
        if raw is None:
            return None
        parsed = await _parse(door.codec, raw, headers, self.serving.settings.max_predict_rows)
        answer = await self.serving.handle(
            principal.project, name, ref, parsed.rows, parsed.numbers_only
        )
        return door.codec.encode(answer, parsed)


def model_path(params: dict[str, Any]) -> tuple[str, str | None]:
    """The model name and version ref of a request's path, checked as FastAPI checks them
    on every other route (422 naming the path parameter)."""
    errors = [
        {
            "type": "string_pattern_mismatch",
            "loc": ("path", param),
            "msg": f"String should match pattern '{pattern.pattern}'",
            "input": params[param],
        }
        for param, pattern in PATH_PATTERNS.items()
        if param in params and not pattern.match(params[param])
    ]
    if errors:
        raise RequestValidationError(errors)
    return params["name"], params.get("ref")


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body (app/api/limits.py has bounded it), or None if the client left."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _parse(codec: Codec, raw: bytes, headers: Mapping[str, str], max_rows: int) -> Parsed:
    """Inline for a small body, the hot path, where a thread hop would cost more than the
    parse. A large one is parsed in a thread, so that while a body of megabytes is parsed and
    checked, the event loop goes on answering other requests."""
    if len(raw) <= INLINE_BYTES:
        return codec.parse(raw, headers, max_rows)
    return await run_in_threadpool(codec.parse, raw, headers, max_rows)


def document(openapi: dict[str, Any], doors: tuple[Door, ...] = DOORS) -> None:
    """Add the doors to the app's OpenAPI document (app/main.py): FastAPI sees no route."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for door in doors:
        request, response = door.codec.request_model, door.codec.response_model
        schemas.update(_components(request, "validation") | _components(response, "serialization"))
        schemas.update(_components(door.error_model, "serialization"))
        openapi["paths"][door.path] = {
            "post": {
                "tags": [door.tag],
                "summary": door.summary,
                "description": door.description,
                "operationId": re.sub(r"\W+", "_", f"{door.path}_post").strip("_"),
                "security": [{BEARER_SCHEME: []}],
                "parameters": [
                    {
                        "name": param,
                        "in": "path",
                        "required": True,
                        "description": PARAMS[param],
                        "schema": {"type": "string", "pattern": PATH_PATTERNS[param].pattern},
                    }
                    for param in door.params
                ],
                "requestBody": {"required": True, "content": _json_ref(request)},
                "responses": {
                    "200": {"description": "The predictions", "content": _json_ref(response)},
                    **{
                        str(status): {
                            "description": when,
                            "content": _json_ref(door.error_model),
                        }
                        for status, when in sorted(door.errors.items())
                    },
                },
            }
        }


PARAMS = {"name": "The model's name", "ref": "A version number or an alias"}


def _components(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    return {**schema.pop("$defs", {}), model.__name__: schema}


def _json_ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}

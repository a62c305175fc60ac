"""The one place errors become HTTP: {"error": {"code", "message", "details"}} on every path."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from app.core.errors import AppError, storage_full

log = logging.getLogger(__name__)

_HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _respond(
    request: Request, status: int, body: dict[str, Any], headers: Any = None
) -> JSONResponse:
    """The Open Inference Protocol's clients expect {"error": "<message>"} on /v2."""
    if request.url.path.startswith("/v2/"):
        body = {"error": body["error"]["message"]}
    return JSONResponse(body, status_code=status, headers=headers)


async def app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return _respond(request, exc.status_code, exc.to_body(), exc.headers)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_clean(e) for e in exc.errors()]
    if any(e["type"] == "json_invalid" for e in errors):
        return _respond(
            request, 400, _body("invalid_json", "the request body is not valid JSON", errors)
        )
    first = errors[0] if errors else {"field": "body", "msg": "invalid request"}
    message = f"{first['field']}: {first['msg']}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return _respond(request, 422, _body("validation_error", message, errors))


def _clean(error: dict[str, Any]) -> dict[str, Any]:
    """Name the field as the user wrote it (training.optimizer.lr), not FastAPI's ('body', ...)."""
    loc = [str(p) for p in error.get("loc", ())]
    if loc and loc[0] in {"body", "query", "path", "header"} and len(loc) > 1:
        loc = loc[1:]
    return {
        "field": ".".join(loc) or "body",
        "msg": error.get("msg", "invalid"),
        "type": error.get("type", ""),
    }


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return _respond(request, exc.status_code, _body(code, str(exc.detail)), exc.headers)


async def io_error(request: Request, exc: Exception) -> JSONResponse:
    """A full disk (the data dir's, or the database's) is the operator's to fix, not a bug:
    507 storage_full, said plainly. Any other I/O or database error is a 500."""
    full = storage_full(exc)
    if full is None:
        raise exc
    log.error("storage full on %s %s: %s", request.method, request.url.path, exc)
    return await app_error(request, full)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # A 500 is a bug: log it with the trace, and give the client no internals.
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _respond(request, 500, _body("internal_error", "internal server error"))


Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]
# By exception class; the most specific one that matches an error handles it.
HANDLERS: dict[type[Exception], Handler] = {
    AppError: app_error,
    RequestValidationError: validation_error,
    HTTPException: http_error,
    OSError: io_error,
    SQLAlchemyError: io_error,
    Exception: unexpected_error,
}


def install(app: FastAPI) -> None:
    for cls, handler in HANDLERS.items():
        app.add_exception_handler(cls, handler)


def handler_for(exc: Exception) -> Handler:
    """The handler the app picks for `exc`, for paths that are not FastAPI routes
    (app/serving/front_door.py): its class's, else its nearest base class's."""
    for cls in type(exc).__mro__:
        handler = HANDLERS.get(cls)
        if handler is not None:
            return handler
    return unexpected_error

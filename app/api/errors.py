"""The one place errors become HTTP: {"error": {"code", "message", "details"}} on every path."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from app.core.errors import AppError, problem, storage_full
from app.schemas.fields import fields_at, suggestion

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


def _body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


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
    raw = exc.errors()
    if any(e.get("type") == "json_invalid" for e in raw):
        detail = _json_problem(next(e for e in raw if e.get("type") == "json_invalid"), exc.body)
        return _respond(request, 400, _body("invalid_json", detail["message"], [detail]))
    body_model = _body_model(request)
    shown = raw[:MAX_PROBLEMS]
    problems = [_problem(e, body_model) for e in shown] or [problem("body", "invalid request", "")]
    first = problems[0]
    message = f"{first['field']}: {first['message']}"
    if len(raw) > 1:
        message += f" (and {len(raw) - 1} more)"
    return _respond(request, 422, _body("validation_error", message, problems))


# A body of a million unknown keys is a million errors: details names the first ones only, so
# the answer stays small whatever the request held (the message counts them all).
MAX_PROBLEMS = 50


def _problem(error: dict[str, Any], body_model: type[BaseModel] | None) -> dict[str, Any]:
    """Name the field as the user wrote it (training.optimizer.lr), not FastAPI's ('body', ...);
    an unknown field says which one was meant, when one is close."""
    loc = list(error.get("loc", ()))
    in_body = bool(loc) and loc[0] == "body"
    if loc and loc[0] in {"body", "query", "path", "header"} and len(loc) > 1:
        loc = loc[1:]
    field = ".".join(str(p) for p in loc) or "body"
    message, kind = error.get("msg", "invalid"), error.get("type", "")
    if kind != "extra_forbidden" or not in_body or body_model is None:
        return problem(field, message, kind)
    known = fields_at(body_model, loc[:-1])
    close = suggestion(str(loc[-1])[:100], known)
    if close is None and known:
        return problem(field, f"unknown field; expected one of {', '.join(sorted(known))}", kind)
    if close is None:
        return problem(field, "unknown field", kind)
    return problem(field, f"unknown field; did you mean '{close}'?", kind, suggestion=close)


def _body_model(request: Request) -> type[BaseModel] | None:
    """The pydantic model of the matched route's JSON body, if it has one."""
    route = request.scope.get("route")
    params = route.dependant.body_params if isinstance(route, APIRoute) else []
    annotation = params[0].field_info.annotation if len(params) == 1 else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _json_problem(error: dict[str, Any], text: Any) -> dict[str, Any]:
    """Where the JSON broke, as an editor counts: line and column, not a character offset."""
    loc = error.get("loc", ())
    position = loc[-1] if loc and isinstance(loc[-1], int) else 0
    reason = str(error.get("ctx", {}).get("error", "invalid JSON"))
    if not isinstance(text, str):
        return problem("body", f"the request body is not valid JSON: {reason}", "json_invalid")
    before = text[:position]
    line, column = before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1
    message = f"the request body is not valid JSON: {reason} (line {line}, column {column})"
    return problem("body", message, "json_invalid", line=line, column=column)


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

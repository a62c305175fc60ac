"""The error responses a route declares in the OpenAPI document, in its real shape
(app/schemas/error.py) instead of FastAPI's HTTPValidationError: one helper for every router.

A router declares what every one of its routes can answer (a key's errors, a parameter's
422); a route adds what its own service raises (app/core/errors.py), with a `when` that says
it for that route. Declaring 422 also keeps FastAPI from adding its own 422 schema.
"""

from typing import Any

from pydantic import BaseModel

from app.schemas.error import WHEN, ErrorResponse, OpenInferenceError

# What every route behind a key (app/api/deps.py: get_principal) can answer before it runs:
# no key or a bad one, a missing scope or a foreign project, a malformed project header.
KEYED = (400, 401, 403, 422)


def errors_for(
    *statuses: int, when: dict[int, str] | None = None, body: type[BaseModel] = ErrorResponse
) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses=` for these statuses: the error body, and when each happens
    (`when` overrides WHEN's general sentence for this route)."""
    said = when or {}
    return {
        status: {"model": body, "description": said.get(status, WHEN[status])}
        for status in sorted({*statuses, *said})
    }


def v2_errors_for(*statuses: int, when: dict[int, str] | None = None) -> dict[int | str, Any]:
    """The same, in the Open Inference Protocol's {"error": "..."} shape (every /v2 path)."""
    return errors_for(*statuses, when=when, body=OpenInferenceError)

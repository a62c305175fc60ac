"""What a non-2xx answer becomes: a TrainserveError carrying the server's error body
`{"error": {"code", "message", "details"}}`, of a subclass for its status family."""

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class TrainserveError(Exception):
    """A non-2xx answer: `status`, the server's `code` and `message`, its `details` (a list
    of {"field", "message", "type", ...}), and `retry_after` (seconds) when the server said
    it."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after


class ValidationError(TrainserveError):
    """The request was refused as sent (400, 413, 415, 422): fix it before sending it again."""


class AuthError(TrainserveError):
    """No key, a revoked or unknown key (401), or a key without the scope (403)."""


class NotFoundError(TrainserveError):
    """404: no such job, dataset, model, version or key (in the key's project)."""


class ConflictError(TrainserveError):
    """409: the request contradicts what exists (a name taken, an Idempotency-Key reused
    with another spec, a model whose checkpoint is unavailable)."""


class RateLimitedError(TrainserveError):
    """429: too many at once (active jobs per project, generations); see `retry_after`."""


class ServerError(TrainserveError):
    """5xx: the server could not answer (503 unavailable, 507 storage full, 500 a bug)."""


_BY_STATUS: dict[int, type[TrainserveError]] = {
    400: ValidationError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    413: ValidationError,
    415: ValidationError,
    422: ValidationError,
    429: RateLimitedError,
}


def error_from_response(response: httpx.Response) -> TrainserveError:
    """The error a non-2xx response (already read) stands for."""
    status = response.status_code
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else TrainserveError)
    code, message, details = _error_body(response)
    return cls(status, code, message, details, retry_after(response))


def _error_body(response: httpx.Response) -> tuple[str, str, Any]:
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"]), error.get("details")
    except (ValueError, KeyError, TypeError):
        # Not the API's shape: a proxy's page, or a /v2 route's {"error": "<message>"}.
        return f"http_{response.status_code}", _plain_message(response), None


def _plain_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, str):
        return error
    return response.text[:500] or response.reason_phrase


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds: a number, or an HTTP date (RFC 9110)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())

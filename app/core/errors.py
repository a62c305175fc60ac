"""Domain errors. Each carries its HTTP status; one handler in app.main turns them into JSON."""

import errno
from typing import Any

from sqlalchemy.exc import DBAPIError


def problem(field: str | None, message: str, type: str, **facts: Any) -> dict[str, Any]:
    """One entry of an error's `details`, the one shape every error answers with: the field
    as the request wrote it (training.optimizer.lr, inputs.3, name; None when the problem is
    no one field's), what is wrong with it, a snake_case type, and any facts that help
    (limit and setting, suggestion, features, the id of what is in the way, ...)."""
    return {"field": field, "message": message, "type": type, **facts}


class AppError(Exception):
    """`details`: the facts of this one problem (a dict, and `field` if it is one field's),
    or a list of problem() entries when there are several."""

    status_code = 400
    code = "bad_request"
    headers: dict[str, str] | None = None  # e.g. Retry-After on a 503

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | list[dict[str, Any]] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code:
            self.code = code

    def problems(self) -> list[dict[str, Any]]:
        if self.details is None:
            return []
        if isinstance(self.details, dict):
            facts = {k: v for k, v in self.details.items() if k != "field"}
            return [problem(self.details.get("field"), self.message, self.code, **facts)]
        return [{"message": self.message, "type": self.code, **p} for p in self.details]

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.problems()}}


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class ModelUnavailable(Conflict):
    """A registered version whose checkpoint is missing, corrupt or altered: predict's cache
    and the artifact downloads refuse it alike."""

    code = "model_unavailable"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class Unprocessable(AppError):
    status_code = 422
    code = "validation_error"


def invalid_field(field: str, message: str, **facts: Any) -> Unprocessable:
    """A 422 for one field of a request: "<field>: <message>", and that problem in details."""
    details = [problem(field, message, "invalid_value", **facts)]
    return Unprocessable(f"{field}: {message}", details=details)


class TooManyRequests(AppError):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after_s: int = 30) -> None:
        super().__init__(message, details={"retry_after_s": retry_after_s})
        self.headers = {"Retry-After": str(retry_after_s)}


class Unavailable(AppError):
    status_code = 503
    code = "unavailable"


class StorageFull(AppError):
    """The disk (of the data dir, or the database's) is full: nothing was kept; retry once
    space is freed. Not the client's fault, and not a bug."""

    status_code = 507
    code = "storage_full"


# SQLite says "database or disk is full" (SQLITE_FULL); PostgreSQL's class 53 disk_full.
_DB_FULL_SQLSTATE = "53100"


def storage_full(exc: BaseException) -> StorageFull | None:
    """The StorageFull that `exc` (or what caused it) amounts to, if it is one."""
    seen: BaseException | None = exc
    for _ in range(20):  # a chain of causes is short; never follow a loop forever
        if seen is None:
            return None
        if isinstance(seen, StorageFull):
            return seen
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageFull(f"no space left on the device ({seen.filename or 'a file'})")
        if isinstance(seen, DBAPIError) and _database_full(seen):
            return StorageFull("the database's disk is full")
        seen = seen.__cause__ or seen.__context__
    return None


def _database_full(exc: DBAPIError) -> bool:
    orig = exc.orig
    return "database or disk is full" in str(orig) or getattr(orig, "sqlstate", None) == (
        _DB_FULL_SQLSTATE
    )

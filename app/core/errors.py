"""Domain errors. Each carries its HTTP status; one handler in app.main turns them into JSON."""

import errno
from typing import Any

from sqlalchemy.exc import DBAPIError


class AppError(Exception):
    status_code = 400
    code = "bad_request"
    headers: dict[str, str] | None = None  # e.g. Retry-After on a 503

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code:
            self.code = code

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


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

"""Request dependencies: settings, one session per request (committed once), the caller's key."""

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request
from fastapi.security import HTTPBearer
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.schemas.job import ID_PATTERN, NAME_PATTERN
from app.schemas.model import REF_PATTERN
from app.services.auth import BEARER_SCHEME, PROJECT_HEADER, Principal, authenticate
from app.serving.runtime import Serving


class BearerKey(HTTPBearer):
    """The Authorization header, as it came: the routes that read it through this declare
    the bearer scheme in the OpenAPI document (Swagger UI's Authorize), while the key is
    checked by app/services/auth.py as before, so a missing or bad key is our own 401
    (FastAPI's HTTPBearer would answer its own 401 or 403)."""

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        return request.headers.get("authorization")


bearer_key = BearerKey(
    scheme_name=BEARER_SCHEME,
    description="An API key: `trainserve keys create`, or the admin key of the install",
    auto_error=False,
)
Authorization = Annotated[str | None, Depends(bearer_key)]


def get_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


def get_principal(
    session: Annotated[Session, Depends(get_session, scope="function")],
    authorization: Authorization,
    project: Annotated[
        str | None,
        Header(
            alias=PROJECT_HEADER,
            max_length=100,
            description="An admin key's project for this request (default: the key's own)",
        ),
    ] = None,
) -> Principal:
    return authenticate(session, authorization).in_project(project)


def require(scope: str) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(scope)
        return principal

    return check


# The predict path's dependencies are async: a sync one runs on a worker thread, and that
# hop cost more than the forward pass of a small model.
async def get_serving(request: Request) -> Serving:
    serving: Serving = request.app.state.serving
    return serving


def commit_then_forget(session: Session, serving: Serving) -> None:
    """Commit a change to keys or the registry now, then drop what the predict path cached,
    so its next request reads the change (clearing first could let a request cache the old
    state again before the commit)."""
    session.commit()
    serving.forget()


async def predict_principal(request: Request, _: Authorization) -> Principal:
    """The caller's key with the predict scope, checked through the serving path's cache
    (which reads the header itself: the Authorization parameter documents the scheme)."""
    serving: Serving = request.app.state.serving
    return await serving.principal(request.headers, "predict")


# scope="function": the commit runs when the route returns, before the response is sent, so
# a client that got its 2xx can read what it wrote (and a failed commit is its error, not a 2xx).
# Path parameters: ids are server-made UUIDs, names and refs the spec's own patterns, so a
# NUL byte, a slash or a 10 kB string is a 422 before it reaches the database.
Id = Annotated[str, Path(pattern=ID_PATTERN, description="An id, as the API gave it")]
ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="The model's name")]
VersionRef = Annotated[str, Path(pattern=REF_PATTERN, description="A version number or an alias")]
# Every collection answers {"items", "next_cursor"}: pass next_cursor back for the next page.
PageLimit = Annotated[int, Query(ge=1, le=200, description="Items per page")]
PageCursor = Annotated[
    str | None,
    Query(max_length=200, description="The next_cursor of the previous page; none: the first"),
]

SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ServingDep = Annotated[Serving, Depends(get_serving)]
JobsWrite = Annotated[Principal, Depends(require("jobs:write"))]
JobsRead = Annotated[Principal, Depends(require("jobs:read"))]
ModelsRead = Annotated[Principal, Depends(require("models:read"))]
ModelsWrite = Annotated[Principal, Depends(require("models:write"))]
Predict = Annotated[Principal, Depends(predict_principal)]

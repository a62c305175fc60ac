from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.api.deps import PageCursor, PageLimit, SessionDep, require
from app.api.openapi import KEYED, errors_for
from app.core.pools import POOL_PATTERN
from app.schemas.worker import WorkerPage, WorkerPublic
from app.services import workers
from app.services.auth import Principal

router = APIRouter(
    prefix="/v1/workers",
    tags=["workers"],
    responses=errors_for(*KEYED, when={403: "The key is not an admin key (insufficient_scope)"}),
)
Admin = Annotated[Principal, Depends(require("admin"))]
Pool = Annotated[
    str | None,
    Query(pattern=POOL_PATTERN, description="Only this pool's workers ('default': the default)"),
]


@router.get("", response_model=WorkerPage)
def list_workers(
    session: SessionDep,
    _: Admin,
    pool: Pool = None,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
) -> WorkerPage:
    """The worker nodes with a row: pool, devices, capacity, running jobs and state."""
    views, next_cursor = workers.list_workers(session, limit, cursor, pool)
    items = [WorkerPublic(**workers.node_fields(v)) for v in views]
    return WorkerPage(items=items, next_cursor=next_cursor)

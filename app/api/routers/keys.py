from typing import Annotated

from fastapi import APIRouter, Depends, Response

from app.api.deps import (
    Id,
    PageCursor,
    PageLimit,
    ServingDep,
    SessionDep,
    commit_then_forget,
    require,
)
from app.api.openapi import KEYED, errors_for
from app.schemas.key import KeyCreate, KeyCreated, KeyPage, KeyPublic
from app.services import auth
from app.services.auth import Principal

router = APIRouter(
    prefix="/v1/keys",
    tags=["keys"],
    responses=errors_for(*KEYED, when={403: "The key is not an admin key (insufficient_scope)"}),
)
Admin = Annotated[Principal, Depends(require("admin"))]


@router.post("", status_code=201, response_model=KeyCreated, responses=errors_for(413))
def create_key(body: KeyCreate, session: SessionDep, _: Admin) -> KeyCreated:
    """Create a key with these scopes in a project. Its secret is in this answer only."""
    row, plaintext = auth.create_key(
        session, body.name, [s.value for s in body.scopes], body.project
    )
    return KeyCreated(**KeyPublic.model_validate(row).model_dump(), key=plaintext)


@router.get("", response_model=KeyPage)
def list_keys(
    session: SessionDep, _: Admin, limit: PageLimit = 50, cursor: PageCursor = None
) -> KeyPage:
    """Every key, revoked ones too, newest first; never their secrets."""
    rows, next_cursor = auth.list_keys(session, limit, cursor)
    return KeyPage(items=[KeyPublic.model_validate(k) for k in rows], next_cursor=next_cursor)


@router.delete(
    "/{key_id}",
    status_code=204,
    response_class=Response,
    responses=errors_for(when={404: "No key with this id (not_found)"}),
)
def revoke_key(key_id: Id, session: SessionDep, serving: ServingDep, _: Admin) -> Response:
    """Revoke a key: every process refuses it within TRAINSERVE_PREDICT_CACHE_S."""
    auth.revoke_key(session, key_id)
    commit_then_forget(session, serving)
    return Response(status_code=204)

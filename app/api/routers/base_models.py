from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from app.api.deps import Id, JobsRead, JobsWrite, SessionDep, SettingsDep
from app.schemas.base_model import BaseModelPage, BaseModelPublic
from app.schemas.job import NAME_PATTERN
from app.services import base_model_catalog

router = APIRouter(prefix="/v1/base-models", tags=["base models"])


@router.post("", status_code=201, response_model=BaseModelPublic)
def upload_base_model(
    session: SessionDep,
    settings: SettingsDep,
    principal: JobsWrite,
    file: Annotated[UploadFile, File(description="a .zip or .tar.gz of a Hugging Face folder")],
    name: Annotated[str, Form(pattern=NAME_PATTERN)],
) -> BaseModelPublic:
    row = base_model_catalog.create_base_model(session, settings, principal, name, file.file)
    return BaseModelPublic.model_validate(row)


@router.get("", response_model=BaseModelPage)
def list_base_models(
    session: SessionDep,
    principal: JobsRead,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> BaseModelPage:
    items, next_cursor = base_model_catalog.list_base_models(
        session, limit, cursor, principal.tenant
    )
    return BaseModelPage(
        items=[BaseModelPublic.model_validate(b) for b in items], next_cursor=next_cursor
    )


@router.get("/{base_id}", response_model=BaseModelPublic)
def get_base_model(base_id: Id, session: SessionDep, principal: JobsRead) -> BaseModelPublic:
    return BaseModelPublic.model_validate(
        base_model_catalog.get_base_model(session, base_id, principal.tenant)
    )


@router.delete("/{base_id}", status_code=204, response_class=Response)
def delete_base_model(
    base_id: Id, session: SessionDep, settings: SettingsDep, principal: JobsWrite
) -> Response:
    base_model_catalog.delete_base_model(session, settings, base_id, principal.tenant)
    return Response(status_code=204)

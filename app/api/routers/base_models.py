from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from app.api.deps import Id, JobsRead, JobsWrite, SessionDep, SettingsDep
from app.api.openapi import KEYED, errors_for
from app.schemas.base_model import BaseModelPage, BaseModelPublic
from app.schemas.job import NAME_PATTERN
from app.services import base_model_catalog

router = APIRouter(prefix="/v1/base-models", tags=["base models"], responses=errors_for(*KEYED))
NO_BASE = {404: "No base model with this id visible to the caller's project (not_found)"}


@router.post(
    "",
    status_code=201,
    response_model=BaseModelPublic,
    responses=errors_for(
        507,
        when={
            409: "The project has a base model of this name (base_model_exists)",
            413: "The archive is larger than TRAINSERVE_MAX_BASE_MODEL_UPLOAD_BYTES "
            "(payload_too_large)",
            422: "Not a usable Hugging Face folder: an unsafe or unreadable archive, weights "
            "that are not safetensors, remote code, an unknown family "
            "(invalid_archive, invalid_base_model, validation_error)",
        },
    ),
)
def upload_base_model(
    session: SessionDep,
    settings: SettingsDep,
    principal: JobsWrite,
    file: Annotated[UploadFile, File(description="a .zip or .tar.gz of a Hugging Face folder")],
    name: Annotated[str, Form(pattern=NAME_PATTERN, description="What job specs call it")],
) -> BaseModelPublic:
    """Upload a pretrained Hugging Face model folder to fine-tune: only safetensors weights,
    no remote code; nothing is fetched from the internet."""
    row = base_model_catalog.create_base_model(session, settings, principal, name, file.file)
    return BaseModelPublic.model_validate(row)


@router.get("", response_model=BaseModelPage)
def list_base_models(
    session: SessionDep,
    principal: JobsRead,
    limit: Annotated[int, Query(ge=1, le=200, description="Base models per page")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the page before")
    ] = None,
) -> BaseModelPage:
    """The base models the caller's project can use: its own and the operator's."""
    items, next_cursor = base_model_catalog.list_base_models(
        session, limit, cursor, principal.tenant
    )
    return BaseModelPage(
        items=[BaseModelPublic.model_validate(b) for b in items], next_cursor=next_cursor
    )


@router.get("/{base_id}", response_model=BaseModelPublic, responses=errors_for(when=NO_BASE))
def get_base_model(base_id: Id, session: SessionDep, principal: JobsRead) -> BaseModelPublic:
    """A base model: its family, size, files and their hashes."""
    return BaseModelPublic.model_validate(
        base_model_catalog.get_base_model(session, base_id, principal.tenant)
    )


@router.delete(
    "/{base_id}",
    status_code=204,
    response_class=Response,
    responses=errors_for(
        when={
            **NO_BASE,
            403: "The operator provides it (base_model_read_only), or the key lacks "
            "jobs:write or names a foreign project (insufficient_scope, wrong_project)",
            409: "Registered versions or queued/running jobs use it (base_model_in_use)",
        }
    ),
)
def delete_base_model(
    base_id: Id, session: SessionDep, settings: SettingsDep, principal: JobsWrite
) -> Response:
    """Delete an uploaded base model and its files."""
    base_model_catalog.delete_base_model(session, settings, base_id, principal.tenant)
    return Response(status_code=204)

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import FileResponse

from app.api.deps import (
    ModelName,
    ModelsRead,
    ModelsWrite,
    PageCursor,
    PageLimit,
    ServingDep,
    SessionDep,
    SettingsDep,
    commit_then_forget,
)
from app.schemas.model import (
    AliasPublic,
    AliasUpdate,
    ArtifactFormat,
    ModelDetail,
    ModelPage,
    ModelSummary,
    ModelVersionPublic,
)
from app.services import exports, registry

router = APIRouter(prefix="/v1/models", tags=["models"])


AliasName = Annotated[str, Path(pattern=r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")]


@router.get("", response_model=ModelPage)
def list_models(
    session: SessionDep, principal: ModelsRead, limit: PageLimit = 50, cursor: PageCursor = None
) -> ModelPage:
    """The caller's project's models (an admin key without X-Trainserve-Project: every
    project's), newest first."""
    rows, next_cursor = registry.list_models(session, limit, cursor, principal.tenant)
    items = [
        ModelSummary(name=m.name, project=m.project, latest_version=v, created_at=m.created_at)
        for m, v in rows
    ]
    return ModelPage(items=items, next_cursor=next_cursor)


@router.get("/{name}", response_model=ModelDetail)
def get_model(name: ModelName, session: SessionDep, principal: ModelsRead) -> ModelDetail:
    model = registry.get_model(session, principal.project, name)
    return ModelDetail(
        name=model.name,
        project=model.project,
        created_at=model.created_at,
        aliases=registry.aliases(session, model),
        versions=[ModelVersionPublic.model_validate(v) for v in registry.versions(session, model)],
    )


@router.get("/{name}/versions/{version}", response_model=ModelVersionPublic)
def get_version(
    name: ModelName, version: int, session: SessionDep, principal: ModelsRead
) -> ModelVersionPublic:
    row = registry.get_version(session, principal.project, name, version)
    return ModelVersionPublic.model_validate(row)


@router.get(
    "/{name}/versions/{version}/artifact",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The file, as an attachment",
            "content": {"application/octet-stream": {}, "application/gzip": {}},
        }
    },
)
def get_artifact(
    name: ModelName,
    version: int,
    session: SessionDep,
    settings: SettingsDep,
    principal: ModelsRead,
    fmt: Annotated[ArtifactFormat, Query(alias="format")] = ArtifactFormat.safetensors,
) -> FileResponse:
    """The version's checkpoint (safetensors), or an export built on its first request and
    kept: onnx (every version that does not generate text), hf (a fine-tuned base)."""
    source = exports.find(session, settings, principal.project, name, version)
    session.commit()  # the read is done: no connection waits in a transaction while it builds
    found = exports.artifact(settings, source, fmt)
    return FileResponse(
        found.path,
        media_type=found.media_type,
        filename=found.filename,
        headers={"ETag": found.etag},
    )


@router.delete("/{name}/versions/{version}", status_code=204)
def delete_version(
    name: ModelName, version: int, session: SessionDep, serving: ServingDep, principal: ModelsWrite
) -> Response:
    row = registry.delete_version(session, principal.project, name, version)
    commit_then_forget(session, serving)
    serving.evict(row.id)
    return Response(status_code=204)


@router.put("/{name}/aliases/{alias}", response_model=AliasPublic)
def set_alias(
    name: ModelName,
    alias: AliasName,
    body: AliasUpdate,
    session: SessionDep,
    serving: ServingDep,
    principal: ModelsWrite,
) -> AliasPublic:
    target = registry.set_alias(session, principal.project, name, alias, body.version)
    commit_then_forget(session, serving)
    return AliasPublic(model_name=name, alias=alias, version=target.version)


@router.delete("/{name}/aliases/{alias}", status_code=204)
def delete_alias(
    name: ModelName,
    alias: AliasName,
    session: SessionDep,
    serving: ServingDep,
    principal: ModelsWrite,
) -> Response:
    registry.delete_alias(session, principal.project, name, alias)
    commit_then_forget(session, serving)
    return Response(status_code=204)

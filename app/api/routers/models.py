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
from app.api.openapi import KEYED, errors_for
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

router = APIRouter(prefix="/v1/models", tags=["models"], responses=errors_for(*KEYED))


AliasName = Annotated[
    str, Path(pattern=r"^[A-Za-z][A-Za-z0-9._-]{0,63}$", description="e.g. production")
]
Version = Annotated[int, Path(description="A version number, from 1")]
NO_MODEL = {404: "No model of this name in the caller's project (not_found)"}
NO_VERSION = {404: "No model of this name, or it has no such version (not_found)"}
UNAVAILABLE = {409: "The version's checkpoint is missing, corrupt or altered (model_unavailable)"}


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


@router.get("/{name}", response_model=ModelDetail, responses=errors_for(when=NO_MODEL))
def get_model(name: ModelName, session: SessionDep, principal: ModelsRead) -> ModelDetail:
    """A model: its aliases and every version, oldest first."""
    model = registry.get_model(session, principal.project, name)
    return ModelDetail(
        name=model.name,
        project=model.project,
        created_at=model.created_at,
        aliases=registry.aliases(session, model),
        versions=[ModelVersionPublic.model_validate(v) for v in registry.versions(session, model)],
    )


@router.get(
    "/{name}/versions/{version}",
    response_model=ModelVersionPublic,
    responses=errors_for(when=NO_VERSION),
)
def get_version(
    name: ModelName, version: Version, session: SessionDep, principal: ModelsRead
) -> ModelVersionPublic:
    """A version's lineage: the job and spec that trained it, its dataset, final metrics,
    classes, input shape and checkpoint sha256."""
    row = registry.get_version(session, principal.project, name, version)
    return ModelVersionPublic.model_validate(row)


@router.get(
    "/{name}/versions/{version}/artifact",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The file, as an attachment",
            "content": {"application/octet-stream": {}, "application/gzip": {}},
        },
        **errors_for(
            507,
            when={
                **NO_VERSION,
                **UNAVAILABLE,
                422: "A format this version has no export for, e.g. hf of a model not "
                "fine-tuned from a base (validation_error; details.formats: those it has)",
                503: "The export cannot be built on this server (export_unavailable)",
            },
        ),
    },
)
def get_artifact(
    name: ModelName,
    version: Version,
    session: SessionDep,
    settings: SettingsDep,
    principal: ModelsRead,
    fmt: Annotated[
        ArtifactFormat, Query(alias="format", description="What to download")
    ] = ArtifactFormat.safetensors,
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


@router.delete(
    "/{name}/versions/{version}",
    status_code=204,
    responses=errors_for(
        when={
            **NO_VERSION,
            409: "An alias points to this version: move it first (version_in_use)",
        }
    ),
)
def delete_version(
    name: ModelName,
    version: Version,
    session: SessionDep,
    serving: ServingDep,
    principal: ModelsWrite,
) -> Response:
    """Delete a version: predict stops serving it; its number is never given again."""
    row = registry.delete_version(session, principal.project, name, version)
    commit_then_forget(session, serving)
    serving.evict(row.id)
    return Response(status_code=204)


@router.put(
    "/{name}/aliases/{alias}",
    response_model=AliasPublic,
    responses=errors_for(413, when=NO_VERSION),
)
def set_alias(
    name: ModelName,
    alias: AliasName,
    body: AliasUpdate,
    session: SessionDep,
    serving: ServingDep,
    principal: ModelsWrite,
) -> AliasPublic:
    """Point an alias (e.g. production) at a version, creating it or moving it: predict
    follows at once, with no restart."""
    target = registry.set_alias(session, principal.project, name, alias, body.version)
    commit_then_forget(session, serving)
    return AliasPublic(model_name=name, alias=alias, version=target.version)


@router.delete(
    "/{name}/aliases/{alias}",
    status_code=204,
    responses=errors_for(when={404: "No such model, or it has no such alias (not_found)"}),
)
def delete_alias(
    name: ModelName,
    alias: AliasName,
    session: SessionDep,
    serving: ServingDep,
    principal: ModelsWrite,
) -> Response:
    """Remove an alias; the version it pointed to stays."""
    registry.delete_alias(session, principal.project, name, alias)
    commit_then_forget(session, serving)
    return Response(status_code=204)

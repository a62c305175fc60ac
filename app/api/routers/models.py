from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.api.deps import (
    ModelName,
    ModelsRead,
    ModelsWrite,
    ServingDep,
    SessionDep,
    commit_then_forget,
)
from app.schemas.model import (
    AliasPublic,
    AliasUpdate,
    ModelDetail,
    ModelSummary,
    ModelVersionPublic,
)
from app.services import registry

router = APIRouter(prefix="/v1/models", tags=["models"])


AliasName = Annotated[str, Path(pattern=r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")]


@router.get("", response_model=list[ModelSummary])
def list_models(session: SessionDep, principal: ModelsRead) -> list[ModelSummary]:
    """The caller's project's models (an admin key without X-Trainserve-Project: every
    project's)."""
    return [
        ModelSummary(name=m.name, project=m.project, latest_version=v, created_at=m.created_at)
        for m, v in registry.list_models(session, principal.tenant)
    ]


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

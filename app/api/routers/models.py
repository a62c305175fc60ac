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
    return [
        ModelSummary(name=m.name, latest_version=v, created_at=m.created_at)
        for m, v in registry.list_models(session, principal.tenant)
    ]


@router.get("/{name}", response_model=ModelDetail)
def get_model(name: ModelName, session: SessionDep, principal: ModelsRead) -> ModelDetail:
    model = registry.get_model(session, name, principal.tenant)
    return ModelDetail(
        name=model.name,
        created_at=model.created_at,
        aliases=registry.aliases(session, name),
        versions=[ModelVersionPublic.model_validate(v) for v in registry.versions(session, name)],
    )


@router.get("/{name}/versions/{version}", response_model=ModelVersionPublic)
def get_version(
    name: ModelName, version: int, session: SessionDep, principal: ModelsRead
) -> ModelVersionPublic:
    row = registry.get_version(session, name, version, principal.tenant)
    return ModelVersionPublic.model_validate(row)


@router.delete("/{name}/versions/{version}", status_code=204)
def delete_version(
    name: ModelName, version: int, session: SessionDep, serving: ServingDep, principal: ModelsWrite
) -> Response:
    registry.delete_version(session, name, version, principal.tenant)
    commit_then_forget(session, serving)
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
    row = registry.set_alias(session, name, alias, body.version, principal.tenant)
    commit_then_forget(session, serving)
    return AliasPublic(model_name=row.model_name, alias=row.alias, version=row.version)


@router.delete("/{name}/aliases/{alias}", status_code=204)
def delete_alias(
    name: ModelName,
    alias: AliasName,
    session: SessionDep,
    serving: ServingDep,
    principal: ModelsWrite,
) -> Response:
    registry.delete_alias(session, name, alias, principal.tenant)
    commit_then_forget(session, serving)
    return Response(status_code=204)

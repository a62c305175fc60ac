"""The model registry: versions with lineage, and aliases that move without a restart."""

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.errors import Conflict, NotFound
from app.models import ModelAlias, ModelVersion, RegisteredModel
from app.models.base import utcnow

DEFAULT_ALIAS = "production"
MAX_VERSION = 2**31 - 1


def register_version(
    session: Session, *, model_name: str, project: str, **lineage: Any
) -> ModelVersion:
    """Add version N+1 of model_name. The caller holds the job's row lock, and the
    (model_name, version) unique constraint turns any concurrent register into an error."""
    if session.get(RegisteredModel, model_name) is None:
        with session.begin_nested():
            session.add(RegisteredModel(name=model_name, project=project))
    latest = session.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.model_name == model_name)
    )
    row = ModelVersion(model_name=model_name, version=(latest or 0) + 1, **lineage)
    session.add(row)
    session.flush()
    return row


def check_name_available(session: Session, name: str, project: str) -> None:
    """Model names are global: a job may not add versions to another project's model."""
    owner = session.scalar(select(RegisteredModel.project).where(RegisteredModel.name == name))
    if owner is not None and owner != project:
        raise Conflict(
            f"model_name: '{name}' is not available; choose another name", code="model_name_taken"
        )


def list_models(
    session: Session, tenant: str | None = None
) -> list[tuple[RegisteredModel, int | None]]:
    latest = (
        select(ModelVersion.model_name, func.max(ModelVersion.version).label("latest"))
        .group_by(ModelVersion.model_name)
        .subquery()
    )
    query = (
        select(RegisteredModel, latest.c.latest)
        .outerjoin(latest, latest.c.model_name == RegisteredModel.name)
        .order_by(RegisteredModel.name)
    )
    if tenant is not None:
        query = query.where(RegisteredModel.project == tenant)
    return [(model, version) for model, version in session.execute(query)]


def get_model(session: Session, name: str, tenant: str | None = None) -> RegisteredModel:
    """Another project's model is a 404, exactly like one that does not exist."""
    model = session.get(RegisteredModel, name)
    if model is None or (tenant is not None and model.project != tenant):
        raise NotFound(f"no model named '{name}'")
    return model


def versions(session: Session, name: str) -> list[ModelVersion]:
    query = (
        select(ModelVersion).where(ModelVersion.model_name == name).order_by(ModelVersion.version)
    )
    return list(session.scalars(query))


def aliases(session: Session, name: str) -> dict[str, int]:
    query = select(ModelAlias).where(ModelAlias.model_name == name).order_by(ModelAlias.alias)
    return {row.alias: row.version for row in session.scalars(query)}


def get_version(
    session: Session, name: str, version: int, tenant: str | None = None
) -> ModelVersion:
    _check_tenant(session, name, tenant)
    if not 1 <= version <= MAX_VERSION:  # versions are INT columns: a bigger number is none
        get_model(session, name)
        raise NotFound(f"model '{name}' has no version {version}")
    row = session.scalar(
        select(ModelVersion).where(ModelVersion.model_name == name, ModelVersion.version == version)
    )
    if row is None:
        get_model(session, name)
        raise NotFound(f"model '{name}' has no version {version}")
    return row


def resolve(
    session: Session, name: str, ref: str | None, tenant: str | None = None
) -> ModelVersion:
    """A version number, an alias, or (no ref) alias 'production' if set, else the latest."""
    _check_tenant(session, name, tenant)
    if ref is not None and ref.isdigit():
        return get_version(session, name, int(ref))
    alias = session.get(ModelAlias, (name, ref or DEFAULT_ALIAS))
    if alias is not None:
        return get_version(session, name, alias.version)
    if ref is not None:
        get_model(session, name)
        raise NotFound(f"model '{name}' has no alias '{ref}'")
    latest = session.scalar(
        select(ModelVersion)
        .where(ModelVersion.model_name == name)
        .order_by(ModelVersion.version.desc())
        .limit(1)
    )
    if latest is None:
        get_model(session, name)
        raise NotFound(f"model '{name}' has no versions yet")
    return latest


def set_alias(
    session: Session, name: str, alias: str, version: int, tenant: str | None = None
) -> ModelAlias:
    _check_tenant(session, name, tenant)
    get_version(session, name, version)
    row = session.get(ModelAlias, (name, alias))
    if row is None:
        row = ModelAlias(model_name=name, alias=alias, version=version)
        session.add(row)
    row.version = version
    row.updated_at = utcnow()
    session.flush()
    return row


def delete_alias(session: Session, name: str, alias: str, tenant: str | None = None) -> None:
    _check_tenant(session, name, tenant)
    row = session.get(ModelAlias, (name, alias))
    if row is None:
        get_model(session, name)
        raise NotFound(f"model '{name}' has no alias '{alias}'")
    session.delete(row)


def delete_version(session: Session, name: str, version: int, tenant: str | None = None) -> None:
    """Refused while an alias points to it: moving `production` first is the safe order."""
    _check_tenant(session, name, tenant)
    row = get_version(session, name, version)
    pointing = sorted(a for a, v in aliases(session, name).items() if v == version)
    if pointing:
        raise Conflict(
            f"alias {', '.join(pointing)} points to version {version}; move it first",
            code="version_in_use",
            details={"aliases": pointing},
        )
    session.delete(row)


def _check_tenant(session: Session, name: str, tenant: str | None) -> None:
    if tenant is not None:
        get_model(session, name, tenant)

"""The model registry: versions with lineage, and aliases that move without a restart.

Every lookup goes through a project: a model is (project, name), so one project can never
reach, take over or even detect another's model of the same name.
"""

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.db import execute_update, insert_or_ignore, upsert
from app.core.errors import Conflict, NotFound
from app.models import ModelAlias, ModelVersion, RegisteredModel, VersionBase
from app.models.base import new_id, utcnow
from app.services.pagination import paginate

DEFAULT_ALIAS = "production"
MAX_VERSION = 2**31 - 1


def register_version(
    session: Session,
    *,
    project: str,
    model_name: str,
    base_model_id: str | None = None,
    **lineage: Any,
) -> ModelVersion:
    """Add the next version of (project, model_name), creating the model on its first version.
    Both steps are single statements, so jobs finishing at once each get their own number.
    base_model_id: the base a fine-tuned version needs, which then cannot be deleted."""
    model_id = _ensure_model(session, project, model_name)
    row = ModelVersion(model_id=model_id, version=_next_version(session, model_id), **lineage)
    session.add(row)
    session.flush()
    if base_model_id is not None:
        session.add(VersionBase(version_id=row.id, base_model_id=base_model_id))
        session.flush()
    return row


def _ensure_model(session: Session, project: str, name: str) -> str:
    values = {"id": new_id(), "project": project, "name": name, "last_version": 0}
    insert_or_ignore(
        session, RegisteredModel, values | {"created_at": utcnow()}, ["project", "name"]
    )
    model_id = session.scalar(
        select(RegisteredModel.id).where(
            RegisteredModel.project == project, RegisteredModel.name == name
        )
    )
    assert model_id is not None  # inserted just now, or it existed
    return model_id


def _next_version(session: Session, model_id: str) -> int:
    """The model's counter, raised by one guarded UPDATE: it holds the row (PostgreSQL) or the
    database (SQLite) until commit, so a concurrent registration waits and takes the next one.
    It never goes down, so a deleted version's number is never given out again."""
    execute_update(
        session,
        update(RegisteredModel)
        .where(RegisteredModel.id == model_id)
        .values(last_version=RegisteredModel.last_version + 1),
    )
    version = session.scalar(
        select(RegisteredModel.last_version).where(RegisteredModel.id == model_id)
    )
    assert version is not None
    return version


def list_models(
    session: Session, limit: int, cursor: str | None, tenant: str | None = None
) -> tuple[list[tuple[RegisteredModel, int | None]], str | None]:
    """One page of a project's models (None: every project, for an admin), newest first,
    each with its latest version; and the cursor of the next page."""
    query = select(RegisteredModel)
    if tenant is not None:
        query = query.where(RegisteredModel.project == tenant)
    models, next_cursor = paginate(session, query, RegisteredModel, limit, cursor)
    latest_of = (
        select(ModelVersion.model_id, func.max(ModelVersion.version))
        .where(ModelVersion.model_id.in_([m.id for m in models]))
        .group_by(ModelVersion.model_id)
    )
    latest = {model_id: version for model_id, version in session.execute(latest_of)}
    return [(m, latest.get(m.id)) for m in models], next_cursor


def get_model(session: Session, project: str, name: str) -> RegisteredModel:
    model = session.scalar(
        select(RegisteredModel).where(
            RegisteredModel.project == project, RegisteredModel.name == name
        )
    )
    if model is None:
        raise NotFound(f"no model named '{name}'")
    return model


def versions(session: Session, model: RegisteredModel) -> list[ModelVersion]:
    query = (
        select(ModelVersion).where(ModelVersion.model_id == model.id).order_by(ModelVersion.version)
    )
    return list(session.scalars(query))


def aliases(session: Session, model: RegisteredModel) -> dict[str, int]:
    query = select(ModelAlias).where(ModelAlias.model_id == model.id).order_by(ModelAlias.alias)
    return {row.alias: row.version for row in session.scalars(query)}


def get_version(session: Session, project: str, name: str, version: int) -> ModelVersion:
    model = get_model(session, project, name)
    row = _version_of(session, model, version)
    if row is None:
        raise NotFound(f"model '{name}' has no version {version}")
    return row


def _version_of(session: Session, model: RegisteredModel, version: int) -> ModelVersion | None:
    if not 1 <= version <= MAX_VERSION:  # versions are INT columns: a bigger number is none
        return None
    return session.scalar(
        select(ModelVersion).where(
            ModelVersion.model_id == model.id, ModelVersion.version == version
        )
    )


def resolve(session: Session, project: str, name: str, ref: str | None) -> ModelVersion:
    """A version number, an alias, or (no ref) alias 'production' if set, else the latest."""
    if ref is not None and ref.isdigit():
        return get_version(session, project, name, int(ref))
    model = get_model(session, project, name)
    alias = session.get(ModelAlias, (model.id, ref or DEFAULT_ALIAS))
    if alias is not None:
        return alias.target
    if ref is not None:
        raise NotFound(f"model '{name}' has no alias '{ref}'")
    latest = session.scalar(
        select(ModelVersion)
        .where(ModelVersion.model_id == model.id)
        .order_by(ModelVersion.version.desc())
        .limit(1)
    )
    if latest is None:
        raise NotFound(f"model '{name}' has no versions yet")
    return latest


def set_alias(session: Session, project: str, name: str, alias: str, version: int) -> ModelVersion:
    """Point alias at version: one upsert, so requests racing to create it all succeed."""
    target = get_version(session, project, name, version)
    values = {
        "model_id": target.model_id,
        "alias": alias,
        "version_id": target.id,
        "updated_at": utcnow(),
    }
    try:
        with session.begin_nested():
            upsert(session, ModelAlias, values, ["model_id", "alias"], ["version_id", "updated_at"])
    except IntegrityError as exc:  # the version was deleted meanwhile
        raise NotFound(f"model '{name}' has no version {version}") from exc
    return target


def delete_alias(session: Session, project: str, name: str, alias: str) -> None:
    model = get_model(session, project, name)
    row = session.get(ModelAlias, (model.id, alias))
    if row is None:
        raise NotFound(f"model '{name}' has no alias '{alias}'")
    session.delete(row)


def delete_version(session: Session, project: str, name: str, version: int) -> ModelVersion:
    """Refused while an alias points to it: moving `production` first is the safe order. The
    alias's foreign key is what refuses it, so an alias set at the same moment counts too."""
    row = get_version(session, project, name, version)
    try:
        with session.begin_nested():
            session.delete(row)
    except IntegrityError:
        pointing = sorted(a for a, v in aliases(session, row.model).items() if v == version)
        raise Conflict(
            f"alias {', '.join(pointing)} points to version {version}; move it first",
            code="version_in_use",
            details={"aliases": pointing},
        ) from None
    return row

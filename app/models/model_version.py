"""The registry's tables. A model belongs to a project: two projects may each have a model of
the same name, and nothing is ever looked up by name alone.

Identities are never reused: a version's id is a UUID (a deleted version's id is never handed
to another), and version numbers come from the model's own counter, which only grows (a
client pinned to version 3 never silently gets another model).
"""

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, new_id, utcnow


class RegisteredModel(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("project", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(100))
    # The highest version number ever given out, deleted versions included.
    last_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int]
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), unique=True)
    task: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]]
    dataset: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    classes: Mapped[list[Any] | None]
    input_shape: Mapped[list[Any]]
    # Relative to the artifacts dir, built from server ids only (never from a user's name).
    checkpoint_path: Mapped[str] = mapped_column(String(500))
    checkpoint_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    model: Mapped[RegisteredModel] = relationship(lazy="joined", innerjoin=True)

    @property
    def model_name(self) -> str:
        return self.model.name

    @property
    def parent(self) -> dict[str, Any] | None:
        """The version a warm start began from ({"model", "version"}), as its job pinned it."""
        init = self.spec.get("init")
        return {"model": init["model"], "version": init["version"]} if init else None

    @property
    def project(self) -> str:
        return self.model.project


class ModelAlias(Base):
    """A name for one version. It points at the version's row, so the database itself refuses
    to delete a version an alias points to, even when the two requests race."""

    __tablename__ = "model_aliases"

    model_id: Mapped[str] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id", ondelete="RESTRICT"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    target: Mapped[ModelVersion] = relationship(lazy="joined", innerjoin=True)

    @property
    def version(self) -> int:
        return self.target.version


class VersionBase(Base):
    """The base a fine-tuned version was built on, whose files it needs to load. The database
    refuses to delete a base while a version points to it, even when the two requests race;
    deleting the version removes its row here."""

    __tablename__ = "version_bases"

    version_id: Mapped[str] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    base_model_id: Mapped[str] = mapped_column(
        ForeignKey("base_models.id", ondelete="RESTRICT"), index=True
    )

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class RegisteredModel(Base):
    __tablename__ = "models"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    project: Mapped[str] = mapped_column(String(100), default="default")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(ForeignKey("models.name", ondelete="CASCADE"))
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


class ModelAlias(Base):
    __tablename__ = "model_aliases"

    model_name: Mapped[str] = mapped_column(
        ForeignKey("models.name", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, new_id, utcnow


class Dataset(Base):
    """An uploaded dataset: parsed and validated once, stored as data.npz beside its schema."""

    __tablename__ = "datasets"
    # A name is one dataset within a project: a second upload of it is a 409, decided by
    # this index (app/services/dataset_catalog.py inserts with ON CONFLICT DO NOTHING).
    __table_args__ = (
        Index(None, "created_at"),
        Index("uq_datasets_project_name", "project", "name", unique=True),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # A label for people, unique per project; never part of a path.
    name: Mapped[str] = mapped_column(String(100))
    project: Mapped[str] = mapped_column(String(100), default="default")
    format: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    task: Mapped[str] = mapped_column(String(16))
    # rows, features or image_shape, classes, class_counts, and how the file was encoded
    schema: Mapped[dict[str, Any]]
    # Relative to the artifacts dir, built from the id only: datasets/<id>/data.npz
    file_path: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(36))

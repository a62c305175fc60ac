from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, new_id, utcnow


class Dataset(Base):
    """An uploaded dataset: parsed and validated once, stored as data.npz beside its schema."""

    __tablename__ = "datasets"
    __table_args__ = (Index(None, "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # A label for people; never part of a path.
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

"""Pretrained base models (Hugging Face folders) that pretrained jobs fine-tune.

A base belongs to a project like a dataset does, or to every project (SHARED) when the
operator provided it. Its files live in a folder built from server values only: the id for an
upload, the operator's own subfolder name for a provided one; never a user's name.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, new_id, utcnow

# The project of operator-provided bases. No project can be named so (NAME_PATTERN).
SHARED = "*"


class BaseModelRow(Base):
    __tablename__ = "base_models"
    __table_args__ = (UniqueConstraint("project", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(100))
    # app/base_models/location.py: "upload" (POST /v1/base-models), "import" (`trainserve
    # base-models import`) or "operator-dir" (TRAINSERVE_BASE_MODELS_DIR)
    source: Mapped[str] = mapped_column(String(16))
    folder: Mapped[str] = mapped_column(String(500))  # relative to the source's root
    family: Mapped[str] = mapped_column(String(16))  # text-encoder, text-decoder, vision
    model_type: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))  # of the folder's file list and hashes
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    files: Mapped[list[Any]]
    config: Mapped[dict[str, Any]]  # the config fields the spec is checked against
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(36))

    @property
    def read_only(self) -> bool:
        """Only an upload is the project's to delete; the operator manages the others."""
        return self.source != "upload"

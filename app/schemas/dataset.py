"""Datasets: kinds of data, and the public shapes of uploaded datasets."""

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.job import Task


class DataKind(enum.StrEnum):
    tabular = "tabular"  # rows of numeric features
    image = "image"  # (channels, height, width) pixels
    text = "text"  # strings


class DatasetFormat(enum.StrEnum):
    csv = "csv"  # numeric and categorical columns, `target` names the label
    npz = "npz"  # arrays X and y (np.savez)
    images_zip = "images-zip"  # one folder per class of PNG/JPEG files
    text_csv = "text-csv"  # columns `text` and `label`
    text = "text"  # plain lines, or JSON lines with "text": a corpus to fine-tune a generator


class DatasetPublic(BaseModel):
    # `schema` is a BaseModel attribute: the field is schema_, read and written as "schema".
    model_config = ConfigDict(from_attributes=True, validate_by_name=True, serialize_by_alias=True)

    id: str
    name: str
    format: DatasetFormat
    kind: DataKind
    task: Task
    schema_: dict[str, Any] = Field(alias="schema")
    sha256: str
    size_bytes: int
    created_at: datetime


class DatasetPage(BaseModel):
    items: list[DatasetPublic]
    next_cursor: str | None

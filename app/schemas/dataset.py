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

    id: str = Field(description="The dataset's id: a job spec's dataset.id")
    name: str = Field(description="Its name, for people")
    format: DatasetFormat = Field(description="The format it was uploaded in")
    kind: DataKind = Field(description="tabular, image or text")
    task: Task = Field(description="What a model trained on it does by default")
    schema_: dict[str, Any] = Field(
        alias="schema",
        description="What it holds: rows, features or image shape, classes, the target",
    )
    sha256: str = Field(description="The uploaded file's SHA-256, in hex")
    size_bytes: int = Field(description="The uploaded file's size")
    created_at: datetime = Field(description="When it was uploaded (UTC)")


class DatasetPage(BaseModel):
    items: list[DatasetPublic] = Field(description="This page's datasets, newest first")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; none: last")

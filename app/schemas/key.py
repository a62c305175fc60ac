"""API keys: scopes, and what the API shows of a key (the secret itself only once)."""

import enum
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.job import NAME_PATTERN, TEXT_PATTERN


class Scope(enum.StrEnum):
    admin = "admin"  # everything, in every project, and key management
    jobs_write = "jobs:write"  # submit and cancel jobs, upload and delete datasets
    jobs_read = "jobs:read"
    models_write = "models:write"  # aliases, deleting versions
    models_read = "models:read"
    predict = "predict"
    metrics = "metrics"  # read /metrics: for a Prometheus scraper, nothing else


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=TEXT_PATTERN,
        description="For people; none: the key is named after its project and scopes",
    )
    scopes: list[Scope] = Field(
        min_length=1, max_length=len(Scope), description="What the key may do"
    )
    project: str = Field(
        "default", pattern=NAME_PATTERN, description="The project its requests act in"
    )


class KeyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The key's id (not its secret)")
    name: str = Field(description="Its name, for people")
    prefix: str = Field(description="The key's first characters, to tell keys apart")
    scopes: list[str] = Field(description="What it may do")
    project: str = Field(description="The project its requests act in")
    created_at: datetime = Field(description="When it was created (UTC)")
    last_used_at: datetime | None = Field(description="When it last made a request (to the minute)")
    revoked_at: datetime | None = Field(description="When it was revoked; none: it works")


class KeyPage(BaseModel):
    items: list[KeyPublic] = Field(description="This page's keys, newest first")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; none: last")


class KeyCreated(KeyPublic):
    key: str = Field(description="The secret: shown this once, never stored")

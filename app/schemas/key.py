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

    # Optional: a key without one is named after its scopes (keys are told apart by id).
    name: str | None = Field(None, min_length=1, max_length=200, pattern=TEXT_PATTERN)
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    project: str = Field("default", pattern=NAME_PATTERN)


class KeyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    prefix: str  # the key's first characters, to tell keys apart
    scopes: list[str]
    project: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyPage(BaseModel):
    items: list[KeyPublic]
    next_cursor: str | None


class KeyCreated(KeyPublic):
    key: str  # shown once, never stored

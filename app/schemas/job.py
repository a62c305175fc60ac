"""The job spec (DESIGN.md: fixed names; more fields may be added) and the job's public shape."""

import enum
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class Arch(enum.StrEnum):
    mlp = "mlp"


class Task(enum.StrEnum):
    classification = "classification"
    regression = "regression"


class Strict(BaseModel):
    # Unknown fields are refused: a typo ("epoch") must not silently train with defaults.
    model_config = ConfigDict(extra="forbid")


class DatasetRef(Strict):
    builtin: str | None = Field(None, max_length=100)
    id: str | None = Field(None, max_length=100)

    @model_validator(mode="after")
    def _exactly_one(self) -> "DatasetRef":
        if (self.builtin is None) == (self.id is None):
            raise ValueError("give exactly one of 'builtin' or 'id'")
        return self


class ModelConfig(Strict):
    arch: Arch = Arch.mlp
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128])
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    task: Task | None = None


class OptimizerConfig(Strict):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0.0, le=10.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)


class TrainingConfig(Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    validation_split: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    device: Literal["auto", "cpu"] = "auto"


class JobSpec(Strict):
    model_name: str = Field(pattern=NAME_PATTERN)
    dataset: DatasetRef
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)


class JobProgress(BaseModel):
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    samples_per_s: float | None = None


class JobEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    time: datetime
    attempt: int
    kind: str
    message: str


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    model_name: str
    status: str
    status_message: str | None
    spec: dict[str, Any]
    attempt: int
    progress: JobProgress
    metrics: dict[str, float]
    model_version: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobDetail(JobPublic):
    events: list[JobEventPublic] = Field(default_factory=list)


class JobPage(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None


class MetricPoint(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    epoch: int
    step: int
    name: str
    value: float
    time: datetime


class DryRunResult(BaseModel):
    valid: bool
    spec: dict[str, Any]

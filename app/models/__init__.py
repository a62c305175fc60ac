"""ORM models. Importing this package registers every table on Base.metadata."""

from app.models.api_key import ApiKey
from app.models.base import Base
from app.models.dataset import Dataset
from app.models.job import TERMINAL, Job, JobEvent, JobMetric, JobStatus
from app.models.model_version import ModelAlias, ModelVersion, RegisteredModel
from app.models.worker import LeaderLock, WorkerNode

__all__ = [
    "TERMINAL",
    "ApiKey",
    "Base",
    "Dataset",
    "Job",
    "JobEvent",
    "JobMetric",
    "JobStatus",
    "LeaderLock",
    "ModelAlias",
    "ModelVersion",
    "RegisteredModel",
    "WorkerNode",
]

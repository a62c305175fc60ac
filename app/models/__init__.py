"""ORM models. Importing this package registers every table on Base.metadata."""

from app.models.api_key import ApiKey
from app.models.base import Base
from app.models.base_model import SHARED, BaseModelRow
from app.models.dataset import Dataset
from app.models.job import TERMINAL, Job, JobEvent, JobMetric, JobStatus
from app.models.model_version import ModelAlias, ModelVersion, RegisteredModel, VersionBase
from app.models.worker import LeaderLock, WorkerNode

__all__ = [
    "SHARED",
    "TERMINAL",
    "ApiKey",
    "Base",
    "BaseModelRow",
    "Dataset",
    "Job",
    "JobEvent",
    "JobMetric",
    "JobStatus",
    "LeaderLock",
    "ModelAlias",
    "ModelVersion",
    "RegisteredModel",
    "VersionBase",
    "WorkerNode",
]

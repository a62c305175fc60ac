"""The in-memory form every dataset is loaded into, builtin or uploaded, before it is split."""

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.core.kinds import Task
from app.schemas.dataset import DataKind


@dataclass(frozen=True)
class RawData:
    kind: DataKind
    y: np.ndarray  # (rows,) int64 class index into `classes`, or float32 regression target
    classes: list[Any] | None  # class labels as the dataset names them; None for regression
    x: np.ndarray | None = None  # tabular (rows, features) float32; image (rows, C, H, W) uint8
    texts: list[str] | None = None  # text datasets: one string per row
    feature_names: list[str] | None = None  # tabular: column names, in feature order
    task: Task | None = None  # what the dataset was stored for; None: follows from `classes`

    @property
    def rows(self) -> int:
        return len(self.y)

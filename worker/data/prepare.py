"""From a job spec to tensors ready to train: load, split, standardize on the train split."""

from dataclasses import dataclass
from typing import Any

import torch

from app.ml.preprocessing import Standardizer
from app.schemas.job import JobSpec, Task
from worker.data.builtin import load_builtin
from worker.data.split import split_indices


@dataclass
class TrainingData:
    task: Task
    x_train: torch.Tensor  # (n, features), standardized
    y_train: torch.Tensor  # (n,) long class index, or (n, 1) standardized float target
    x_val: torch.Tensor
    y_val: torch.Tensor
    classes: list[Any] | None
    x_scaler: Standardizer
    y_scaler: Standardizer | None
    dataset: dict[str, Any]  # lineage: what was trained on

    @property
    def input_dim(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def output_dim(self) -> int:
        return len(self.classes) if self.classes is not None else 1

    def to(self, device: torch.device) -> "TrainingData":
        for name in ("x_train", "y_train", "x_val", "y_val"):
            setattr(self, name, getattr(self, name).to(device))
        return self


def prepare(spec: JobSpec) -> TrainingData:
    name = spec.dataset.builtin or ""
    raw = load_builtin(name)
    task = spec.model.task or (Task.classification if raw.classes is not None else Task.regression)
    train_idx, val_idx = split_indices(
        raw.y,
        spec.training.validation_split,
        spec.training.seed,
        stratify=task == Task.classification,
    )
    x = torch.from_numpy(raw.x)
    x_scaler = Standardizer.fit(x[train_idx])
    y, y_scaler = _targets(raw.y, train_idx, task)
    return TrainingData(
        task=task,
        x_train=x_scaler(x[train_idx]),
        y_train=y[train_idx],
        x_val=x_scaler(x[val_idx]),
        y_val=y[val_idx],
        classes=raw.classes if task == Task.classification else None,
        x_scaler=x_scaler,
        y_scaler=y_scaler,
        dataset={
            "builtin": name,
            "rows": len(raw.y),
            "train_rows": len(train_idx),
            "validation_rows": len(val_idx),
            "features": int(x.shape[1]),
        },
    )


def _targets(y: Any, train_idx: Any, task: Task) -> tuple[torch.Tensor, Standardizer | None]:
    if task == Task.classification:
        return torch.from_numpy(y).long(), None
    target = torch.from_numpy(y).float().unsqueeze(1)  # (rows, 1)
    scaler = Standardizer.fit(target[train_idx])
    return scaler(target), scaler

"""From a job spec to tensors ready to train: load, split, and fit the preprocessing on the
training rows only (standardization, image channel statistics, a text vocabulary; a
pretrained base brings its own tokenizer or image statistics). The fitted preprocessing is
stored with the model, and predict applies it unchanged."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.datasets.raw import RawData
from app.ml.bundle import ModelBundle
from app.ml.preprocessing import Preprocessor, Standardizer
from app.schemas.dataset import DataKind
from app.schemas.job import Arch, JobSpec, Task
from worker.data.sklearn_builtins import load_builtin
from worker.data.split import three_way_split


@dataclass
class TrainingData:
    kind: DataKind
    task: Task
    x_train: torch.Tensor  # tabular: standardized float; image: uint8 (n, C, H, W); text: ids
    y_train: torch.Tensor  # (n,) long class index, or (n, 1) standardized float target
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[Any] | None
    preprocessor: Preprocessor
    y_scaler: Standardizer | None
    input_shape: list[int]
    dataset: dict[str, Any]  # lineage: what was trained on

    @property
    def output_dim(self) -> int:
        return len(self.classes) if self.classes is not None else 1

    def to(self, device: torch.device) -> "TrainingData":
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            setattr(self, name, getattr(self, name).to(device))
        self.preprocessor = self.preprocessor.to(device)
        return self


def load_raw(spec: JobSpec, load_stored: Any = None) -> RawData:
    if spec.dataset.builtin is not None:
        return load_builtin(spec.dataset.builtin)
    assert load_stored is not None and spec.dataset.id is not None
    raw: RawData = load_stored(spec.dataset.id)
    return raw


def prepare(
    spec: JobSpec, raw: RawData, base: Path | None = None, parent: ModelBundle | None = None
) -> TrainingData:
    """base: a pretrained job's base folder, whose tokenizer or image processor it uses.
    parent: a warm start's version: its preprocessing is kept, not fitted again, so the
    weights it continues from see inputs (and give targets) in the units they learned."""
    task = (
        spec.model.task
        or raw.task
        or (Task.classification if raw.classes is not None else Task.regression)
    )
    training = spec.training
    train, val, test = three_way_split(
        raw.y,
        training.validation_split,
        training.test_split,
        training.seed,
        stratify=task == Task.classification,
    )
    if parent is not None:
        preprocessor, x = parent.preprocessor, _reuse_inputs(parent.preprocessor, raw, task)
    else:
        preprocessor, x = _fit_inputs(spec, raw, train, base, end=task == Task.generation)
    # A generator's targets are its texts: the loss reads each token given those before it.
    y, y_scaler = (
        (x, None)
        if task == Task.generation
        else _targets(raw.y, train, task, parent.y_scaler if parent is not None else None)
    )
    return TrainingData(
        kind=raw.kind,
        task=task,
        x_train=x[train],
        y_train=y[train],
        x_val=x[val],
        y_val=y[val],
        x_test=x[test],
        y_test=y[test],
        classes=raw.classes if task == Task.classification else None,
        preprocessor=preprocessor,
        y_scaler=y_scaler,
        input_shape=preprocessor.model_input_shape,
        dataset=_lineage(spec, raw, len(train), len(val), len(test)),
    )


def _fit_inputs(
    spec: JobSpec, raw: RawData, train: np.ndarray, base: Path | None, end: bool = False
) -> tuple[Preprocessor, torch.Tensor]:
    """Fit the preprocessing on the training rows; return it and every row in stored form.
    end: texts close with the end-of-text token (a generator learns where to stop)."""
    if raw.kind == DataKind.text and base is not None:
        assert raw.texts is not None
        preprocessor = Preprocessor.fit_base_text(base, spec.model.max_len)
        return preprocessor, preprocessor.encode_texts(raw.texts, end=end)
    if raw.kind == DataKind.text:
        assert raw.texts is not None
        preprocessor = Preprocessor.fit_text(
            [raw.texts[i] for i in train], spec.model.vocab_size, spec.model.max_len
        )
        return preprocessor, preprocessor.encode_texts(raw.texts)
    assert raw.x is not None
    x = torch.from_numpy(raw.x)
    if raw.kind == DataKind.image and base is not None:
        return Preprocessor.fit_base_image(base, x), x  # resized per batch, to the base's size
    if raw.kind == DataKind.image:
        # images stay uint8 until a batch is used: 4x less memory on the device
        flatten = spec.model.arch == Arch.mlp  # the seed's MLP on MNIST: pixels as features
        return Preprocessor.fit_image(x[train], flatten), x
    x = x.float()
    preprocessor = Preprocessor.fit_tabular(x[train], raw.feature_names)
    return preprocessor, preprocessor.tabular(x)


def _targets(
    y: np.ndarray, train: np.ndarray, task: Task, scaler: Standardizer | None = None
) -> tuple[torch.Tensor, Standardizer | None]:
    """scaler: a warm start's, kept; otherwise fitted on the training rows."""
    if task == Task.classification:
        return torch.from_numpy(y).long(), None
    target = torch.from_numpy(y).float().unsqueeze(1)  # (rows, 1)
    scaler = scaler or Standardizer.fit(target[train])
    return scaler(target), scaler


def _reuse_inputs(pre: Preprocessor, raw: RawData, task: Task) -> torch.Tensor:
    """Every row in stored form through a warm start's own preprocessing."""
    if raw.kind == DataKind.text:
        assert raw.texts is not None
        return pre.encode_texts(raw.texts, end=task == Task.generation)
    assert raw.x is not None
    x = torch.from_numpy(raw.x)
    if raw.kind == DataKind.image:
        return x
    if pre.feature_names and raw.feature_names and pre.feature_names != raw.feature_names:
        raise ValueError(
            f"init: the version was trained on the features {pre.feature_names[:10]}, and "
            f"this dataset has {raw.feature_names[:10]}"
        )
    return pre.tabular(x.float())


def _lineage(spec: JobSpec, raw: RawData, n_train: int, n_val: int, n_test: int) -> dict[str, Any]:
    source = {"builtin": spec.dataset.builtin} if spec.dataset.builtin else {"id": spec.dataset.id}
    return source | {
        "kind": raw.kind.value,
        "rows": raw.rows,
        "train_rows": n_train,
        "validation_rows": n_val,
        "test_rows": n_test,
    }

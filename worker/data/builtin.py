"""The builtin datasets: the small ones scikit-learn ships (no download, no network)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import datasets as skd

from app.ml.datasets import BUILTINS

_LOADERS: dict[str, Callable[..., Any]] = {
    "iris": skd.load_iris,
    "digits": skd.load_digits,
    "wine": skd.load_wine,
    "breast_cancer": skd.load_breast_cancer,
    "diabetes": skd.load_diabetes,
}


@dataclass(frozen=True)
class RawData:
    x: np.ndarray  # (rows, features) float32
    y: np.ndarray  # (rows,) int64 class index, or float32 target for regression
    classes: list[Any] | None  # class labels as the dataset names them, indexed by y


def load_builtin(name: str) -> RawData:
    bunch = _LOADERS[name]()
    x = np.asarray(bunch.data, dtype=np.float32)
    if BUILTINS[name].classes_known:
        return RawData(
            x, np.asarray(bunch.target, dtype=np.int64), np.asarray(bunch.target_names).tolist()
        )
    return RawData(x, np.asarray(bunch.target, dtype=np.float32), None)

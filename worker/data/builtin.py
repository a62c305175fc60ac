"""The builtin datasets: the small ones scikit-learn ships (no download, no network)."""

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn import datasets as skd

from app.datasets.raw import RawData
from app.ml.datasets import BUILTINS
from app.schemas.dataset import DataKind

_LOADERS: dict[str, Callable[..., Any]] = {
    "iris": skd.load_iris,
    "digits": skd.load_digits,
    "wine": skd.load_wine,
    "breast_cancer": skd.load_breast_cancer,
    "diabetes": skd.load_diabetes,
}


def load_builtin(name: str) -> RawData:
    bunch = _LOADERS[name]()
    x = np.asarray(bunch.data, dtype=np.float32)
    names = [str(n) for n in getattr(bunch, "feature_names", range(x.shape[1]))]
    if BUILTINS[name].classes_known:
        classes = np.asarray(bunch.target_names).tolist()
        y = np.asarray(bunch.target, dtype=np.int64)
        return RawData(DataKind.tabular, y, classes, x=x, feature_names=names)
    y = np.asarray(bunch.target, dtype=np.float32)
    return RawData(DataKind.tabular, y, None, x=x, feature_names=names)

"""The builtin datasets loaded: the small ones scikit-learn ships, named in app.datasets.builtin."""

import numpy as np
from sklearn import datasets as skd

from app.datasets.builtin import BUILTINS
from app.datasets.raw import RawData
from app.schemas.dataset import DataKind


def load_builtin(name: str) -> RawData:
    info = BUILTINS[name]
    bunch = getattr(skd, info.loader)()
    x = np.asarray(bunch.data, dtype=np.float32)
    names = [str(n) for n in getattr(bunch, "feature_names", range(x.shape[1]))]
    if info.classes_known:
        classes = np.asarray(bunch.target_names).tolist()
        y = np.asarray(bunch.target, dtype=np.int64)
        return RawData(DataKind.tabular, y, classes, x=x, feature_names=names)
    y = np.asarray(bunch.target, dtype=np.float32)
    return RawData(DataKind.tabular, y, None, x=x, feature_names=names)

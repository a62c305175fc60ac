"""The builtin datasets, listed once: what the API needs to validate a spec without loading
data, and which scikit-learn loader the worker calls (worker/data/sklearn_builtins.py)."""

from dataclasses import dataclass
from typing import Any

from app.schemas.job import Task


@dataclass(frozen=True)
class BuiltinInfo:
    task: Task
    n_features: int
    classes: tuple[Any, ...] | None  # labels in class-index order, as scikit-learn names them
    loader: str  # the function in sklearn.datasets that returns it (no download, no network)

    @property
    def classes_known(self) -> bool:
        return self.task == Task.classification

    @property
    def n_classes(self) -> int | None:
        return len(self.classes) if self.classes is not None else None


BUILTINS: dict[str, BuiltinInfo] = {
    "iris": BuiltinInfo(Task.classification, 4, ("setosa", "versicolor", "virginica"), "load_iris"),
    "digits": BuiltinInfo(Task.classification, 64, tuple(range(10)), "load_digits"),
    "wine": BuiltinInfo(Task.classification, 13, ("class_0", "class_1", "class_2"), "load_wine"),
    "breast_cancer": BuiltinInfo(
        Task.classification, 30, ("malignant", "benign"), "load_breast_cancer"
    ),
    "diabetes": BuiltinInfo(Task.regression, 10, None, "load_diabetes"),
}

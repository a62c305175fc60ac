"""The builtin datasets' catalog: what the API needs to validate a spec without loading data."""

from dataclasses import dataclass

from app.schemas.job import Task


@dataclass(frozen=True)
class BuiltinInfo:
    task: Task
    n_features: int
    n_classes: int | None

    @property
    def classes_known(self) -> bool:
        return self.task == Task.classification


BUILTINS: dict[str, BuiltinInfo] = {
    "iris": BuiltinInfo(Task.classification, 4, 3),
    "digits": BuiltinInfo(Task.classification, 64, 10),
    "wine": BuiltinInfo(Task.classification, 13, 3),
    "breast_cancer": BuiltinInfo(Task.classification, 30, 2),
    "diabetes": BuiltinInfo(Task.regression, 10, None),
}

"""The job spec: the seed's defaults, explicit limits, and errors that name the field."""

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import Unprocessable
from app.datasets.builtin import BUILTINS
from app.schemas.dataset import DataKind
from app.schemas.job import DatasetRef, JobSpec, Task
from app.services.dataset_catalog import DatasetInfo, dataset_info
from app.services.jobs import validate_spec
from worker.data.sklearn_builtins import load_builtin

# A session bound to no database: validating a builtin spec must not need one (any query
# would raise UnboundExecutionError). Specs naming an uploaded dataset are tested in
# tests/integration/test_datasets.py.
NO_DB = Session()


def spec(**overrides: object) -> JobSpec:
    return JobSpec.model_validate(
        {"model_name": "m", "dataset": {"builtin": "digits"}, **overrides}
    )


def test_defaults_are_the_seed_documents() -> None:
    s = spec()
    assert s.model.arch == "mlp" and s.model.hidden == [128]
    assert (s.training.epochs, s.training.batch_size) == (10, 64)
    assert (s.training.optimizer.name, s.training.optimizer.lr, s.training.optimizer.momentum) == (
        "sgd",
        0.01,
        0.9,
    )


def test_limits_are_enforced_with_the_field_named() -> None:
    settings = Settings(max_epochs=50, max_hidden_units=256)
    with pytest.raises(Unprocessable, match=r"^training\.epochs: at most 50"):
        validate_spec(NO_DB, spec(training={"epochs": 51}), settings)
    with pytest.raises(Unprocessable, match=r"^model\.hidden: at most 256 units"):
        validate_spec(NO_DB, spec(model={"hidden": [512]}), settings)
    validate_spec(NO_DB, spec(training={"epochs": 50}), settings)


@pytest.mark.parametrize(
    "bad",
    [
        {"dataset": {"builtin": "digits", "id": "x"}},
        {"dataset": {}},
        {"model_name": ""},
        {"model_name": "a/b"},
        {"training": {"validation_split": 1.0}},
        {"model": {"dropout": 1.0}},
        {"unknown": 1},
    ],
)
def test_schema_refuses(bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError):
        spec(**bad)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_catalog_matches_the_data(name: str) -> None:
    info, raw = BUILTINS[name], load_builtin(name)
    assert raw.x.shape[1] == info.n_features
    assert raw.classes == (list(info.classes) if info.classes is not None else None)


def test_builtin_datasets_are_described_without_a_database() -> None:
    info = dataset_info(NO_DB, DatasetRef(builtin="digits"))
    assert info == DatasetInfo(DataKind.tabular, Task.classification, [64], list(range(10)))
    assert dataset_info(NO_DB, DatasetRef(builtin="diabetes")).n_classes is None
    with pytest.raises(Unprocessable, match=r"^dataset\.builtin: unknown builtin dataset"):
        dataset_info(NO_DB, DatasetRef(builtin="mnist"))
    with pytest.raises(Unprocessable, match=r"^model\.task: 'diabetes' has a continuous target"):
        validate_spec(
            NO_DB,
            spec(dataset={"builtin": "diabetes"}, model={"task": "classification"}),
            Settings(),
        )


@pytest.mark.parametrize(
    ("parts", "field", "needle"),
    [
        ({"model": {"arch": "cnn"}}, "model.arch", "'cnn' cannot train on tabular data"),
        ({"model": {"arch": "text"}}, "model.arch", "use mlp"),
        ({"training": {"augment": {"flip": True}}}, "training.augment", "image model"),
        ({"training": {"class_weights": [1.0, 2.0]}}, "training.class_weights", "give 10 weights"),
        (
            {"training": {"class_weights": {"eleven": 2.0}}},
            "training.class_weights",
            "unknown class labels: eleven",
        ),
        ({"training": {"class_weights": [-1.0] * 10}}, "training.class_weights", "negative"),
        (
            {"training": {"early_stopping": {"metric": "val_r2"}}},
            "training.early_stopping.metric",
            "choose one of",
        ),
        (
            {"training": {"early_stopping": {}, "validation_split": 0.0}},
            "training.early_stopping",
            "validation_split",
        ),
        (
            {"dataset": {"builtin": "diabetes"}, "training": {"resample": "balanced"}},
            "training.resample",
            "classification",
        ),
        (
            {"dataset": {"builtin": "diabetes"}, "training": {"label_smoothing": 0.1}},
            "training.label_smoothing",
            "",
        ),
    ],
)
def test_specs_that_do_not_fit_their_data_are_refused(parts: dict, field: str, needle: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(Unprocessable) as exc:
        validate_spec(NO_DB, spec(**parts), Settings())
    assert exc.value.message.startswith(f"{field}: ") and needle in exc.value.message


def test_specs_that_fit_pass() -> None:
    for parts in (
        {"training": {"class_weights": "balanced", "resample": "balanced", "label_smoothing": 0.1}},
        {"training": {"class_weights": {"3": 2.0}, "early_stopping": {"metric": "val_f1_macro"}}},
        {
            "dataset": {"builtin": "diabetes"},
            "training": {"early_stopping": {"metric": "val_r2", "mode": "max"}},
        },
        {"training": {"schedule": {"name": "one_cycle"}, "precision": "bf16", "grad_clip": 1.0}},
    ):
        validate_spec(NO_DB, spec(**parts), Settings())

"""The job spec: the seed's defaults, explicit limits, and errors that name the field."""

import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.core.errors import Unprocessable
from app.ml.datasets import BUILTINS
from app.schemas.job import JobSpec
from app.services.jobs import validate_spec
from worker.data.builtin import load_builtin


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
        validate_spec(spec(training={"epochs": 51}), settings)
    with pytest.raises(Unprocessable, match=r"^model\.hidden: at most 256 units"):
        validate_spec(spec(model={"hidden": [512]}), settings)
    validate_spec(spec(training={"epochs": 50}), settings)


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
    assert (len(raw.classes) if raw.classes is not None else None) == info.n_classes

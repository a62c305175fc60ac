"""The training engine end to end in memory (prepare → assemble → fit → evaluate), on small
synthetic data of every kind: each arch beats the trivial baseline by a stated margin."""

import math
from typing import Any

import numpy as np
import pytest
import torch

from app.datasets.raw import RawData
from app.schemas.dataset import DataKind
from app.schemas.job import JobSpec
from worker.training.loop import evaluate, fit
from worker.training.setup import Assembly, assemble

CPU = torch.device("cpu")


def spec(**parts: Any) -> JobSpec:
    body: dict[str, Any] = {"model_name": "m", "dataset": {"builtin": "iris"}}
    for key, value in parts.items():
        body[key] = value
    return JobSpec.model_validate(body)


def run(job: JobSpec, raw: RawData) -> tuple[Assembly, dict[str, float]]:
    a = assemble(job, raw, CPU)
    fit(
        a.model,
        a.optimizer,
        a.loss_fn,
        a.splits,
        a.opts,
        a.generator,
        on_step=lambda rows: False,
        on_epoch_end=lambda result: None,
    )
    metrics, _ = evaluate(a.model, a.loss_fn, a.data.x_val, a.data.y_val, a.opts)
    return a, metrics


def majority(y: np.ndarray) -> float:
    return float(np.bincount(y).max() / len(y))


def shapes(n: int, size: int = 12, seed: int = 0) -> RawData:
    """Images of a bright horizontal or vertical bar at a random place, with noise: (n, 3, size, size)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 60, (n, 3, size, size)).astype(np.uint8)
    for i in range(n):
        k = rng.integers(2, size - 2)
        if y[i]:
            x[i, :, :, k] = 250
        else:
            x[i, :, k, :] = 250
    return RawData(DataKind.image, y.astype(np.int64), ["horizontal", "vertical"], x=x)


def reviews(n: int, seed: int = 0) -> RawData:
    rng = np.random.default_rng(seed)
    good, bad, filler = (
        ["great", "loved", "superb"],
        ["awful", "hated", "boring"],
        ["the", "film", "was", "a", "plot"],
    )
    y = rng.integers(0, 2, n)
    texts = [
        " ".join(
            [*rng.choice(filler, 5), rng.choice(good if label else bad), *rng.choice(filler, 3)]
        )
        for label in y
    ]
    return RawData(DataKind.text, y.astype(np.int64), ["neg", "pos"], texts=texts)


OPT = {"name": "adam", "lr": 0.01}


@pytest.mark.parametrize(
    ("model", "epochs"),
    [
        ({"arch": "cnn", "channels": [8, 16]}, 8),
        ({"arch": "resnet", "width": 8, "depth": 1}, 8),
        ({"arch": "mlp", "hidden": [64]}, 15),
    ],
)
def test_image_models_beat_the_majority_class(model: dict[str, Any], epochs: int) -> None:
    raw = shapes(240)
    _, metrics = run(
        spec(
            model=model,
            training={
                "epochs": epochs,
                "batch_size": 32,
                "optimizer": OPT,
                "validation_split": 0.25,
            },
        ),
        raw,
    )
    assert metrics["val_accuracy"] >= majority(raw.y) + 0.25, metrics


@pytest.mark.parametrize("encoder", ["bag", "transformer"])
def test_text_models_beat_the_majority_class(encoder: str) -> None:
    raw = reviews(300)
    model = {
        "arch": "text",
        "encoder": encoder,
        "embed_dim": 32,
        "max_len": 16,
        "layers": 1,
        "heads": 2,
    }
    _, metrics = run(
        spec(
            model=model,
            training={"epochs": 10, "batch_size": 32, "optimizer": OPT, "validation_split": 0.2},
        ),
        raw,
    )
    assert metrics["val_accuracy"] >= majority(raw.y) + 0.3, metrics


def test_regression_beats_the_mean_and_reports_r2() -> None:
    from worker.data.sklearn_builtins import load_builtin

    job = spec(
        dataset={"builtin": "diabetes"},
        model={"hidden": [32]},
        training={
            "epochs": 30,
            "optimizer": {"name": "adam", "lr": 0.001},
            "validation_split": 0.2,
        },
    )
    _, metrics = run(job, load_builtin("diabetes"))
    # R² 0.25: a quarter less squared error than predicting the mean (linear regression: 0.33)
    assert metrics["val_r2"] > 0.25, metrics
    assert metrics["val_mae"] > 1.0  # in the target's units (disease progression), not standardized


def imbalanced(n: int = 1000, seed: int = 0) -> RawData:
    """95% class 0; class 1 is separable but rare."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(np.int64)
    x = rng.normal(size=(n, 2)).astype(np.float32) + y[:, None] * np.array(
        [1.5, 1.5], dtype=np.float32
    )
    return RawData(DataKind.tabular, y, ["common", "rare"], x=x)


@pytest.mark.parametrize("fix", [{"class_weights": "balanced"}, {"resample": "balanced"}])
def test_imbalance_handling_raises_minority_recall(fix: dict[str, Any]) -> None:
    raw = imbalanced()
    base = {
        "epochs": 10,
        "batch_size": 64,
        "validation_split": 0.3,
        "optimizer": {"name": "sgd", "lr": 0.05},
    }
    _, plain = run(spec(model={"hidden": [16]}, training=base), raw)
    _, fixed = run(spec(model={"hidden": [16]}, training=base | fix), raw)
    assert fixed["val_recall[rare]"] >= plain["val_recall[rare]"] + 0.2, (plain, fixed)


def test_same_spec_same_metrics() -> None:
    job = spec(
        model={"arch": "cnn", "channels": [4]},
        training={"epochs": 2, "batch_size": 16, "augment": {"flip": True, "crop_padding": 2}},
    )
    assert run(job, shapes(64))[1] == run(job, shapes(64))[1]


def test_early_stopping_stops_and_remembers_the_best_epoch() -> None:
    rng = np.random.default_rng(0)
    raw = RawData(
        DataKind.tabular,
        rng.integers(0, 2, 80).astype(np.int64),
        ["a", "b"],
        x=rng.normal(size=(80, 20)).astype(np.float32),
    )  # labels are noise: it can only overfit
    job = spec(
        model={"hidden": [256]},
        training={
            "epochs": 200,
            "optimizer": {"name": "adam", "lr": 0.01},
            "validation_split": 0.3,
            "early_stopping": {"metric": "val_loss", "patience": 3},
        },
    )
    a = assemble(job, raw, CPU)
    seen: list[Any] = []
    last = fit(
        a.model,
        a.optimizer,
        a.loss_fn,
        a.splits,
        a.opts,
        a.generator,
        on_step=lambda rows: False,
        on_epoch_end=seen.append,
    )
    assert last < 50 and last == len(seen)
    stopper = a.opts.early_stopping
    assert stopper is not None and stopper.best_epoch == last - 3
    best_loss = min(r.metrics["val_loss"] for r in seen)
    assert seen[stopper.best_epoch - 1].metrics["val_loss"] == best_loss
    assert [r.epoch for r in seen if r.is_best][-1] == stopper.best_epoch


def test_bf16_precision_trains() -> None:
    from worker.data.sklearn_builtins import load_builtin

    _, metrics = run(
        spec(dataset={"builtin": "digits"}, training={"epochs": 5, "precision": "bf16"}),
        load_builtin("digits"),
    )
    assert metrics["val_accuracy"] > 0.8


def test_test_split_is_held_out_and_scored() -> None:
    from worker.data.sklearn_builtins import load_builtin

    a, _ = run(
        spec(dataset={"builtin": "digits"}, training={"epochs": 3, "test_split": 0.2}),
        load_builtin("digits"),
    )
    assert a.data.x_test.shape[0] == math.ceil(0.2 * 1797)  # scikit-learn rounds the test part up
    test, report = evaluate(a.model, a.loss_fn, a.data.x_test, a.data.y_test, a.opts, "test")
    assert test["test_accuracy"] > 0.8 and len(report["confusion_matrix"]) == 10

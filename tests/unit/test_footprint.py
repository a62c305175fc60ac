"""The footprint estimators against the models themselves: each zoo model is built on torch's
meta device (no storage) and one training-mode forward pass adds up the bytes of every tensor
an op creates; the estimate must give the exact parameter count and those bytes within a
small margin, while costing microseconds and no memory itself."""

import time
import tracemalloc
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from app.ml.footprint import ESTIMATORS, estimate
from app.ml.zoo import ZOO, build_model
from app.schemas.job import Task
from worker.training.loop import LoopOptions, Scoring, evaluate


class CreatedBytes(TorchDispatchMode):
    """Adds up the bytes of every tensor an op returns, except views and in-place results."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        results = out if isinstance(out, tuple | list) else (out,)
        for declared, tensor in zip(func._schema.returns, results, strict=False):
            if isinstance(tensor, torch.Tensor) and declared.alias_info is None:
                self.total += tensor.numel() * tensor.element_size()
        return out


def measured(arch: str, shape: list[int], out: int, options: dict[str, Any]) -> tuple[int, float]:
    """(parameters, bytes per row of the input and of what one training forward pass of 4 rows
    creates), on meta."""
    with torch.device("meta"):
        model = build_model(arch, shape, out, options)
        batch = torch.zeros(4, *shape, dtype=torch.long if arch == "text" else torch.float32)
    counter = CreatedBytes()
    with torch.no_grad(), counter:
        model.train()(batch)
    created = counter.total + batch.numel() * batch.element_size()
    return sum(p.numel() for p in model.parameters()), created / 4


TEXT = {"layers": 2, "heads": 4, "num_embeddings": 300}
MODELS = [
    ("mlp", [10], 3, {"hidden": [20, 30], "dropout": 0.5}),
    ("mlp", [784], 10, {"hidden": [128], "dropout": 0.0}),
    ("cnn", [3, 9, 8], 3, {"channels": [4, 5], "dropout": 0.5}),
    ("cnn", [1, 28, 28], 3, {"channels": [32, 64], "dropout": 0.0}),
    ("cnn", [3, 5, 1], 2, {"channels": [4, 4, 4], "dropout": 0.0}),  # sides too small to pool
    ("resnet", [3, 32, 32], 10, {"width": 16, "depth": 2, "dropout": 0.0}),
    ("resnet", [1, 9, 7], 4, {"width": 4, "depth": 3, "dropout": 0.3}),
    ("text", [16], 3, {**TEXT, "encoder": "bag", "embed_dim": 8, "dropout": 0.4}),
    ("text", [7], 3, {**TEXT, "encoder": "transformer", "embed_dim": 8, "dropout": 0.1}),
    ("text", [128], 2, {**TEXT, "encoder": "transformer", "embed_dim": 64, "dropout": 0.0}),
    (
        "text",
        [512],
        5,
        {**TEXT, "encoder": "transformer", "embed_dim": 32, "heads": 8, "dropout": 0.2},
    ),
]


def test_every_zoo_arch_has_an_estimator() -> None:
    assert set(ESTIMATORS) == set(ZOO)


@pytest.mark.parametrize(("arch", "shape", "out", "options"), MODELS)
def test_the_estimate_matches_the_model_built_on_meta(
    arch: str, shape: list[int], out: int, options: dict[str, Any]
) -> None:
    parameters, created = measured(arch, shape, out, options)
    footprint = estimate(arch, shape, out, options)
    assert footprint.parameters == parameters
    assert 0.9 <= footprint.activation_bytes_per_row / created <= 1.1, (footprint, created)


def test_estimating_a_huge_model_takes_microseconds_and_no_memory() -> None:
    huge = [
        ("mlp", [64], 10, {"hidden": [16384] * 16, "dropout": 0.0}),
        ("cnn", [3, 256, 256], 10, {"channels": [4096] * 6, "dropout": 0.0}),
        ("text", [2048], 2, {**TEXT, "encoder": "transformer", "embed_dim": 1024, "dropout": 0.1}),
    ]
    tracemalloc.start()
    began = time.perf_counter()
    for case in huge * 100:
        estimate(*case)
    elapsed = (time.perf_counter() - began) / 300
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 1e-3 and peak < 100_000, (elapsed, peak)
    assert estimate(*huge[0]).parameters > 4_000_000_000


def test_evaluation_runs_in_batches_no_larger_than_a_training_batch() -> None:
    # What fits a training step fits its forward pass; 4096 rows of it may not.
    model = nn.Linear(3, 2)
    rows: list[int] = []
    model.register_forward_hook(lambda module, inputs, output: rows.append(inputs[0].shape[0]))
    opts = LoopOptions(scoring=Scoring(Task.classification, ["a", "b"]), epochs=1, batch_size=16)
    evaluate(model, nn.CrossEntropyLoss(), torch.randn(100, 3), torch.arange(100) % 2, opts)
    assert max(rows) == 16 and sum(rows) == 100

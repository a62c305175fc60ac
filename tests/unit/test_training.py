"""The training loop, the data split and checkpoint resume, on small in-memory data."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from app.ml.zoo import build_model
from app.schemas.job import JobSpec, Task
from app.storage import LocalStore
from worker.data.prepare import prepare
from worker.data.sklearn_builtins import load_builtin
from worker.data.split import split_indices
from worker.training.loop import (
    Diverged,
    EpochResult,
    LoopOptions,
    Scoring,
    Splits,
    StopRequested,
    evaluate,
    fit,
)
from worker.training.resume import CheckpointDir, Resume, TrainingState


def blobs(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian blobs, linearly separable: (n, 4) features, (n,) labels."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 4, generator=g) + (y.unsqueeze(1) * 4.0 - 2.0)
    return x, y


def train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    epochs: int,
    start: int = 0,
    on_epoch_end=lambda r: None,
    on_step=lambda rows: False,
    **options,
) -> int:  # type: ignore[no-untyped-def]
    x, y = blobs()
    opts = LoopOptions(
        scoring=Scoring(Task.classification, ["a", "b"]), epochs=epochs, batch_size=16, **options
    )
    return fit(
        model,
        opt,
        nn.CrossEntropyLoss(),
        Splits(x[:200], y[:200], x[200:], y[200:]),
        opts,
        gen,
        on_step=on_step,
        on_epoch_end=on_epoch_end,
        start_epoch=start,
    )


def fresh(
    seed: int = 0, dropout: float = 0.0
) -> tuple[nn.Module, torch.optim.Optimizer, torch.Generator]:
    torch.manual_seed(seed)
    model = build_model("mlp", [4], 2, {"hidden": [8], "dropout": dropout})
    return (
        model,
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        torch.Generator().manual_seed(seed),
    )


def state(model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator) -> TrainingState:
    return TrainingState(model, opt, gen, {})


def test_fit_learns_and_reports_every_epoch() -> None:
    model, opt, gen = fresh()
    results: list[EpochResult] = []
    train(model, opt, gen, 5, on_epoch_end=results.append)
    assert [r.epoch for r in results] == [1, 2, 3, 4, 5]
    assert [r.step for r in results] == [13, 26, 39, 52, 65]  # ceil(200 / 16) steps per epoch
    assert results[-1].metrics["val_accuracy"] == 1.0
    assert results[-1].metrics["train_loss"] < results[0].metrics["train_loss"]
    assert all(r.samples_per_s > 0 for r in results)


def test_same_seed_same_weights() -> None:
    runs = []
    for _ in range(2):
        model, opt, gen = fresh()
        train(model, opt, gen, 3)
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    # dropout draws from torch's global RNG: an exact resume must restore that too
    model, opt, gen = fresh(dropout=0.3)
    train(model, opt, gen, 4)

    first, opt1, gen1 = fresh(dropout=0.3)
    ckpts = CheckpointDir(LocalStore(tmp_path), "j1", attempt=1, keep=2)
    train(
        first,
        opt1,
        gen1,
        2,
        on_epoch_end=lambda r: ckpts.save(
            r.epoch, r.step, state(first, opt1, gen1), r.metrics, {"epoch": r.epoch}
        ),
    )
    torch.manual_seed(999)  # the next attempt starts in a fresh process with other RNG states
    resumed, opt2, gen2 = fresh(seed=123, dropout=0.3)
    second = CheckpointDir(LocalStore(tmp_path), "j1", attempt=2, keep=2, recorded=ckpts.recorded)
    resume = second.restore(state(resumed, opt2, gen2))
    assert resume is not None and (resume.epoch, resume.step) == (2, 26)
    # the checkpoint carries its epoch's figures: recorded even if its attempt died before
    assert resume.report == {"epoch": 2} and "train_loss" in resume.metrics
    train(resumed, opt2, gen2, 4, start=resume.epoch)
    for key, value in model.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_only_committed_checkpoints_are_resumed_from_newest_readable_first(
    tmp_path: Path,
) -> None:
    """An attempt writes its own keys; a resume reads what the job's pointers name (what the
    attempts committed), newest first, checked against their sha256: an object no pointer
    names (a stale attempt's, a put killed before its commit) is never read."""
    store = LocalStore(tmp_path)
    model, opt, gen = fresh()
    first = CheckpointDir(store, "j1", attempt=1, keep=2)
    on_epoch = lambda r: first.save(r.epoch, r.step, state(model, opt, gen))  # noqa: E731
    train(model, opt, gen, 3, on_epoch_end=lambda r: (on_epoch(r), first.committed()))
    assert sorted(p.name for p in (tmp_path / "jobs/j1/attempt-1").iterdir()) == [
        "epoch-0002.safetensors",
        "epoch-0003.safetensors",
    ]
    assert [p["epoch"] for p in first.recorded["epochs"]] == [2, 3]
    committed = first.recorded
    second = CheckpointDir(store, "j1", attempt=2, keep=2, recorded=committed)
    assert epoch_of(second.restore(state(*fresh()))) == 3
    second.save(4, 52, state(model, opt, gen))
    stale = CheckpointDir(store, "j1", attempt=1, keep=2, recorded=committed)
    stale.save(9, 117, state(model, opt, gen))  # a reaped attempt 1 still running: never committed
    third = CheckpointDir(store, "j1", attempt=3, keep=2, recorded=second.recorded)
    assert epoch_of(third.restore(state(*fresh()))) == 4
    (tmp_path / "jobs/j1/attempt-2/epoch-0004.safetensors").write_bytes(b"torn write")
    assert epoch_of(third.restore(state(*fresh()))) == 3  # the corrupt newest is skipped
    assert CheckpointDir(store, "j2", attempt=1, keep=2).restore(state(*fresh())) is None


def epoch_of(resume: Resume | None) -> int:
    assert resume is not None
    return resume.epoch


def test_a_step_hook_can_stop_training() -> None:
    model, opt, gen = fresh()
    calls = []
    with pytest.raises(StopRequested):
        train(model, opt, gen, 5, on_step=lambda rows: calls.append(rows) or len(calls) == 3)
    assert calls == [16, 16, 16]


def test_nan_loss_is_reported_as_diverged() -> None:
    model, _, gen = fresh()
    opt = torch.optim.SGD(model.parameters(), lr=1e30)
    with pytest.raises(Diverged, match="epoch"):
        train(model, opt, gen, 3)


def test_a_non_finite_validation_metric_is_divergence_too() -> None:
    """Training stays finite, validation overflows (inputs far outside what was trained on):
    the job fails as diverged instead of writing inf into its JSON columns."""
    model, opt, gen = fresh()
    x, y = blobs()
    x_val = torch.full((8, 4), 3e38)  # float32's edge: the first layer overflows to inf
    opts = LoopOptions(scoring=Scoring(Task.classification, ["a", "b"]), epochs=2, batch_size=16)
    with pytest.raises(Diverged, match=r"val_loss.*non-finite in epoch 1"):
        fit(
            model,
            opt,
            nn.CrossEntropyLoss(),
            Splits(x, y, x_val, y[:8]),
            opts,
            gen,
            on_step=lambda rows: False,
            on_epoch_end=lambda r: None,
        )


def test_regression_reports_r2() -> None:
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [2.0], [-1.0]])
    model = nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0, -1.0]]))
        model.bias.zero_()
    opts = LoopOptions(scoring=Scoring(Task.regression, target_std=2.0), epochs=1, batch_size=8)
    metrics, report = evaluate(model, nn.MSELoss(), x, y, opts)
    assert metrics["val_r2"] == pytest.approx(1.0) and metrics["val_loss"] == pytest.approx(
        0.0, abs=1e-10
    )
    assert metrics["val_mse"] == pytest.approx(0.0, abs=1e-9) and report == {}
    with torch.no_grad():
        model.bias.fill_(0.5)  # off by 0.5 standardized units = 1.0 in target units
    metrics, _ = evaluate(model, nn.MSELoss(), x, y, opts)
    assert metrics["val_mae"] == pytest.approx(1.0) and metrics["val_mse"] == pytest.approx(1.0)


def test_split_is_seeded_stratified_and_disjoint() -> None:
    y = load_builtin("digits").y
    train_a, held_a = split_indices(y, 0.1, 0, stratify=True)
    train_b, held_b = split_indices(y, 0.1, 0, stratify=True)
    assert np.array_equal(held_a, held_b) and np.array_equal(train_a, train_b)
    assert not set(train_a) & set(held_a) and len(train_a) + len(held_a) == len(y)
    assert set(np.unique(y[held_a])) == set(range(10))
    assert not np.array_equal(held_a, split_indices(y, 0.1, 1, stratify=True)[1])
    assert len(split_indices(y, 0.0, 0, stratify=True)[1]) == 0


def test_prepare_standardizes_with_train_statistics_only() -> None:
    spec = JobSpec.model_validate({"model_name": "m", "dataset": {"builtin": "wine"}})
    data = prepare(spec, load_builtin("wine"))
    assert data.task == Task.classification and data.output_dim == 3 and data.input_shape == [13]
    assert torch.allclose(data.x_train.mean(0), torch.zeros(13), atol=1e-5)
    assert data.dataset["train_rows"] + data.dataset["validation_rows"] == 178
    diabetes = JobSpec.model_validate({"model_name": "m", "dataset": {"builtin": "diabetes"}})
    regression = prepare(diabetes, load_builtin("diabetes"))
    assert (
        regression.task == Task.regression
        and regression.classes is None
        and regression.y_scaler is not None
    )
    assert regression.y_train.shape[1] == 1


def test_gradient_accumulation_takes_the_step_one_larger_batch_would() -> None:
    """Two batches of 8 summed into one step = one batch of 16; 20 rows: the last step has 4."""
    x, y = blobs()
    x, y = x[:20], y[:20]
    weights = []
    for batch_size, accumulate in ((16, 1), (8, 2)):
        torch.manual_seed(0)
        model = nn.Linear(4, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        opts = LoopOptions(
            Scoring(Task.classification, ["a", "b"]), 2, batch_size, accumulate=accumulate
        )
        steps: list[int] = []
        fit(
            model,
            opt,
            nn.CrossEntropyLoss(),
            Splits(x, y, x[:4], y[:4]),
            opts,
            torch.Generator().manual_seed(3),
            on_step=lambda rows, steps=steps: steps.append(rows) or False,
            on_epoch_end=lambda r: None,
        )
        assert steps == [16, 4, 16, 4]  # rows per optimizer step, both ways
        weights.append(model.weight.detach().clone())
    assert torch.allclose(weights[0], weights[1], atol=1e-6)

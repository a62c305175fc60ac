"""Precise BatchNorm: before every evaluation the running statistics are recomputed from the
training rows under the current weights, so a model trained on a small image set (an epoch
of a few steps) evaluates and predicts as well as it trains."""

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from app.core.config import Settings
from app.datasets.images_zip_upload import parse_images_zip
from app.datasets.parsing import UploadOptions
from app.datasets.raw import RawData
from app.schemas.job import JobSpec, Task
from app.storage import LocalStore
from tests.dataset_files import zip_bytes
from worker.training import setup
from worker.training.loop import (
    EpochResult,
    LoopOptions,
    Scoring,
    evaluate,
    fit,
    recompute_batchnorm,
)
from worker.training.resume import CheckpointDir, TrainingState

CPU = torch.device("cpu")
SHAPES = ("disc", "square", "diamond")


def shape_png(label: int, rng: np.random.Generator, size: int) -> bytes:
    """A bright disc, square or diamond at a random place and size, on a noisy background."""
    pixels = rng.normal(100, 30, (size, size))
    cy, cx = rng.integers(size // 4, size - size // 4, 2)
    r = rng.integers(size // 5, size // 3)
    yy, xx = np.mgrid[:size, :size]
    inside = [
        (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r,
        (abs(yy - cy) <= r) & (abs(xx - cx) <= r),
        abs(yy - cy) + abs(xx - cx) <= r,
    ][label]
    pixels[inside] += 200
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def shapes_zip(per_class: int, size: int = 28, seed: int = 0) -> RawData:
    """An images-zip upload of PNGs, one folder per shape, parsed as the API parses it."""
    rng = np.random.default_rng(seed)
    entries = {
        f"{name}/{i}.png": shape_png(label, rng, size)
        for label, name in enumerate(SHAPES)
        for i in range(per_class)
    }
    options = UploadOptions(image_size=size)
    parsed = parse_images_zip(io.BytesIO(zip_bytes(entries)), options, Settings())
    return RawData(parsed.kind, parsed.arrays["y"], parsed.schema["classes"], x=parsed.arrays["x"])


def job(model: dict[str, Any], epochs: int = 8) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model_name": "shapes",
            "dataset": {"builtin": "iris"},  # the rows come from shapes_zip
            "model": model,
            "training": {"epochs": epochs, "optimizer": {"name": "adam", "lr": 0.003}},
        }
    )


def train(run: setup.Assembly, start_epoch: int = 0, on_epoch_end: Any = None) -> int:
    return fit(
        run.model,
        run.optimizer,
        run.loss_fn,
        run.splits,
        run.opts,
        run.generator,
        on_step=lambda rows: False,
        on_epoch_end=on_epoch_end or (lambda result: None),
        start_epoch=start_epoch,
    )


@pytest.mark.parametrize(
    "model", [{"arch": "cnn"}, {"arch": "resnet", "width": 8, "depth": 1}], ids=["cnn", "resnet"]
)
def test_a_small_image_set_evaluates_and_predicts_as_well_as_it_trains(
    model: dict[str, Any],
) -> None:
    # The finding's recipe: 180 PNGs of 28x28 in 3 classes, Adam 0.003, 8 epochs, batch 64,
    # so 3 steps an epoch. Without precise BN: validation 0.33, every row one class.
    run = setup.assemble(job(model), shapes_zip(per_class=60), CPU)
    epochs: list[EpochResult] = []
    train(run, on_epoch_end=epochs.append)
    trained, _ = evaluate(run.model, run.loss_fn, run.data.x_train, run.data.y_train, run.opts)
    validation = epochs[-1].metrics
    assert trained["val_accuracy"] >= 0.9, trained  # the training rows, in eval mode
    assert validation["val_accuracy"] >= 0.9, validation
    assert validation["val_loss"] < 2 * validation["train_loss"], validation
    run.model.eval()
    with torch.no_grad():
        predicted = run.model(run.opts.transform(run.data.x_val, False)).argmax(1)
    assert set(predicted.tolist()) == {0, 1, 2}


def bn_options(batch_size: int, seen: list[bool] | None = None) -> LoopOptions:
    def transform(x: torch.Tensor, train: bool) -> torch.Tensor:
        if seen is not None:
            seen.append(train)
        return x.float()

    return LoopOptions(
        scoring=Scoring(Task.classification), epochs=1, batch_size=batch_size, transform=transform
    )


def stale_norm(channels: int = 3) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels)
    with torch.no_grad():
        norm.running_mean.fill_(-50.0)
        norm.running_var.fill_(1e4)
    norm.num_batches_tracked.fill_(7)
    return norm


def test_the_statistics_become_the_training_rows_mean_and_variance() -> None:
    x = torch.randint(0, 256, (100, 3, 5, 5), dtype=torch.uint8)
    pixels = x.float().transpose(0, 1).reshape(3, -1)  # (C, N*H*W)
    for batch_size, var_tolerance in [(1000, 1e-4), (16, 0.05)]:
        norm = stale_norm()
        model = nn.Sequential(norm).train()
        assert recompute_batchnorm(model, x, bn_options(batch_size)) == 100
        # the mean is exact whatever the batching (each batch weighs by its rows)
        assert torch.allclose(norm.running_mean, pixels.mean(1), atol=1e-3)
        assert torch.allclose(norm.running_var, pixels.var(1), rtol=var_tolerance)
        # the module is left as training left it
        assert norm.momentum == 0.1 and int(norm.num_batches_tracked) == 7 and model.training


def test_recomputing_draws_no_random_numbers_and_never_augments() -> None:
    x = torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8)
    model = nn.Sequential(stale_norm(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(48, 2))
    seen: list[bool] = []
    torch.manual_seed(3)
    before = torch.get_rng_state()
    recompute_batchnorm(model, x, bn_options(8, seen))
    assert torch.equal(torch.get_rng_state(), before)  # dropout ran in eval mode
    assert seen and not any(seen)  # transform(x, train=False): no augmentation
    assert model.training and model[1].training


def test_recomputing_reads_at_most_its_row_cap_in_whole_batches() -> None:
    x = torch.zeros(10_000, 1, 2, 2, dtype=torch.uint8)
    norm = stale_norm(1)
    rows: list[int] = []
    norm.register_forward_hook(lambda module, inputs, output: rows.append(inputs[0].shape[0]))
    assert recompute_batchnorm(nn.Sequential(norm), x, bn_options(100)) == 4000
    assert sum(rows) == 4000 and set(rows) == {100}
    assert recompute_batchnorm(nn.Sequential(nn.Linear(2, 2)), x, bn_options(100)) == 0


def test_a_resumed_cnn_run_has_the_weights_and_statistics_of_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    raw, spec = shapes_zip(per_class=12, size=12), job({"arch": "cnn", "channels": [4]}, epochs=4)
    reference = setup.assemble(spec, raw, CPU)
    train(reference)

    def state(run: setup.Assembly) -> TrainingState:
        return TrainingState(
            run.model, run.optimizer, run.generator, setup.stateful_parts(run.opts)
        )

    first = setup.assemble(job({"arch": "cnn", "channels": [4]}, epochs=2), raw, CPU)
    ckpts = CheckpointDir(LocalStore(tmp_path), "j1", attempt=1, keep=2)
    train(first, on_epoch_end=lambda r: ckpts.save(r.epoch, r.step, state(first)))
    torch.manual_seed(999)  # the next attempt starts in a fresh process
    resumed = setup.assemble(spec, raw, CPU)
    again = CheckpointDir(LocalStore(tmp_path), "j1", attempt=2, keep=2, recorded=ckpts.recorded)
    resume = again.restore(state(resumed))
    assert resume is not None and resume.epoch == 2
    train(resumed, start_epoch=resume.epoch)
    expected = reference.model.state_dict()
    assert any("running_var" in key for key in expected)
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, expected[key]), key

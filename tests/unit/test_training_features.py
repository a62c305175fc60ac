"""Metrics, LR schedules, class imbalance handling, augmentation and early stopping."""

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sklearn.utils.class_weight import compute_class_weight

from app.schemas.job import AugmentConfig, EarlyStoppingConfig, ScheduleConfig
from worker.training.regularize import (
    EarlyStopping,
    augment_images,
    balanced_sample_weights,
    class_weights,
)
from worker.training.schedule import LrSchedule
from worker.training.scores import classification_scores, regression_scores


def test_classification_scores_match_scikit_learn() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (300,), generator=g)
    logits = torch.randn(300, 4, generator=g)
    logits[torch.arange(300), y] += 1.0  # better than chance, imperfect
    logits[:, 3] -= 10  # class 3 is never predicted: its precision is 0, not NaN
    scalars, report = classification_scores(logits, y, ["a", "b", "c", "d"], "val")
    pred = logits.argmax(1).numpy()
    p, r, f, support = precision_recall_fscore_support(
        y.numpy(), pred, labels=[0, 1, 2, 3], zero_division=0
    )
    assert scalars["val_accuracy"] == pytest.approx(float((pred == y.numpy()).mean()))
    assert scalars["val_precision_macro"] == pytest.approx(p.mean())
    assert scalars["val_recall_macro"] == pytest.approx(r.mean())
    assert scalars["val_f1_macro"] == pytest.approx(f.mean())
    assert scalars["val_recall[c]"] == pytest.approx(r[2]) and scalars["val_f1[d]"] == 0.0
    assert (
        report["confusion_matrix"]
        == confusion_matrix(y.numpy(), pred, labels=[0, 1, 2, 3]).tolist()
    )
    assert report["per_class"]["b"]["support"] == int(support[1])


def test_regression_scores_are_in_target_units() -> None:
    y = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    pred = y + 0.5
    m = regression_scores(pred, y, target_std=10.0, prefix="test")
    assert m["test_mae"] == pytest.approx(5.0) and m["test_mse"] == pytest.approx(25.0)
    assert m["test_r2"] == pytest.approx(1 - 0.25 / 1.25)


def lrs(
    cfg: ScheduleConfig, epochs: int = 6, steps: int = 2, val_losses: list[float] | None = None
) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = LrSchedule(opt, cfg, epochs, steps)
    seen = []
    for epoch in range(1, epochs + 1):
        schedule.start_epoch(epoch)
        seen.append(schedule.lr)
        for _ in range(steps):
            opt.step()
            schedule.after_step()
        schedule.end_epoch(epoch, (val_losses or [1.0] * epochs)[epoch - 1])
    return seen


def test_warmup_then_step_decay() -> None:
    seen = lrs(ScheduleConfig(name="step", warmup_epochs=2, step_size=2, gamma=0.5))
    assert seen == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 0.5, 0.5])


def test_cosine_reaches_min_lr() -> None:
    seen = lrs(ScheduleConfig(name="cosine", min_lr=0.1), epochs=5)
    assert seen[0] == pytest.approx(1.0) and all(a > b for a, b in itertools.pairwise(seen))
    assert seen[-1] > 0.1


def test_plateau_decays_when_val_loss_stalls() -> None:
    seen = lrs(
        ScheduleConfig(name="plateau", patience=1, factor=0.5),
        val_losses=[1.0, 0.5, 0.6, 0.7, 0.8, 0.9],
    )
    assert seen[:4] == pytest.approx([1.0, 1.0, 1.0, 1.0]) and seen[4] == pytest.approx(0.5)


def test_one_cycle_moves_every_step_and_resumes() -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = LrSchedule(opt, ScheduleConfig(name="one_cycle"), epochs=3, steps_per_epoch=4)
    values = []
    for _ in range(5):
        opt.step()
        schedule.after_step()
        values.append(schedule.lr)
    assert len(set(values)) == 5 and max(values) <= 1.0
    other = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    restored = LrSchedule(other, ScheduleConfig(name="one_cycle"), epochs=3, steps_per_epoch=4)
    restored.load_state_dict(schedule.state_dict())
    opt.step(), schedule.after_step(), other.step(), restored.after_step()
    assert restored.lr == pytest.approx(schedule.lr)


def test_balanced_class_weights_match_scikit_learn() -> None:
    y = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    got = class_weights("balanced", y, ["x", "y", "z"])
    want = compute_class_weight("balanced", classes=np.arange(3), y=y.numpy())
    assert got is not None and torch.allclose(got, torch.tensor(want, dtype=torch.float32))
    explicit = class_weights({"z": 5.0}, y, ["x", "y", "z"])
    assert explicit is not None and explicit.tolist() == [1.0, 1.0, 5.0]
    assert class_weights(None, y, ["x", "y", "z"]) is None


def test_balanced_resampling_draws_classes_equally_often() -> None:
    y = torch.tensor([0] * 950 + [1] * 50)
    weights = balanced_sample_weights(y, 2)
    draws = y[
        torch.multinomial(
            weights, 10000, replacement=True, generator=torch.Generator().manual_seed(0)
        )
    ]
    assert 0.45 < draws.float().mean().item() < 0.55


def test_augmentation_flips_and_crops_within_the_image() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    flipped = augment_images(x, AugmentConfig(flip=True), torch.Generator().manual_seed(1))
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(2))
    cropped = augment_images(x, AugmentConfig(crop_padding=1), torch.Generator().manual_seed(3))
    assert cropped.shape == x.shape
    assert not torch.equal(cropped, x)  # this seed shifts at least one image
    for i in range(2):  # every kept pixel comes from the source image or the zero padding
        assert set(cropped[i].flatten().tolist()) <= set(x[i].flatten().tolist()) | {0.0}


def test_early_stopping_tracks_the_best_epoch() -> None:
    stop = EarlyStopping(EarlyStoppingConfig(metric="val_loss", patience=2, min_delta=0.01))
    assert stop.lower_is_better
    history = [1.0, 0.8, 0.795, 0.9, 0.7]
    best = [stop.update(e, {"val_loss": v}) for e, v in enumerate(history[:4], start=1)]
    assert best == [True, True, False, False] and stop.best_epoch == 2 and stop.should_stop
    acc = EarlyStopping(EarlyStoppingConfig(metric="val_accuracy", patience=1))
    assert not acc.lower_is_better
    assert acc.update(1, {"val_accuracy": 0.5}) and acc.update(2, {"val_accuracy": 0.6})
    assert not acc.update(3, {"val_accuracy": 0.55}) and acc.should_stop
    restored = EarlyStopping(EarlyStoppingConfig(metric="val_accuracy", patience=1))
    restored.load_state_dict(acc.state_dict())
    assert restored.best_epoch == 2 and restored.should_stop

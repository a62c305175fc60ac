"""The training loop, top to bottom: train_one_epoch, evaluate, fit.

Data stays resident as tensors on the training device: each epoch draws one order (a
permutation, or a weighted draw when resampling), gathers the rows once, and trains on
contiguous slices, so a step costs no DataLoader, collate or host copy. Inputs are kept as
compact as they came (images as uint8, text as token ids) and `transform` turns each batch
into model input. The loss is summed on the device and read once per epoch (`.item()`
forces a GPU sync).

Before each evaluation, BatchNorm's running statistics are recomputed with the weights as they
are ("precise BN", Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm"): the running averages
gathered during the epoch mix batches seen under older weights, and when an epoch is a few
steps (small data) they lag so far behind that evaluation and predict answer nonsense.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from app.schemas.job import Task
from worker.training.regularize import EarlyStopping
from worker.training.schedule import LrSchedule
from worker.training.scores import classification_scores, regression_scores

# Called after every step with the rows it trained; returning True asks the loop to stop.
StepHook = Callable[[int], bool]
EpochHook = Callable[["EpochResult"], None]
# (batch, training?) → model input; augments only when training.
Transform = Callable[[torch.Tensor, bool], torch.Tensor]
EVAL_BATCH = 4096
# Precise BN reads at most this many training rows (forward passes only, no gradients): on a
# large dataset well under a tenth of an epoch's work, on a small one every row.
PRECISE_BN_ROWS = 4096


class StopRequested(Exception):
    """A step hook asked to stop (the reasons: worker/training/stop.py); the last epoch's
    checkpoint stands."""


class Diverged(Exception):
    """The training loss became NaN or infinite."""


def _identity(x: torch.Tensor, _train: bool) -> torch.Tensor:
    return x


@dataclass
class Splits:
    x_train: torch.Tensor  # (n, ...) float features, uint8 images or int64 token ids
    y_train: torch.Tensor  # (n,) int64 class index, or (n, 1) standardized float target
    x_val: torch.Tensor
    y_val: torch.Tensor


@dataclass
class LoopOptions:
    task: Task
    epochs: int
    batch_size: int
    classes: list[Any] | None = None
    transform: Transform = _identity
    grad_clip: float | None = None
    autocast_dtype: torch.dtype | None = None  # bf16 / fp16 mixed precision
    scaler: Any = None  # torch.amp.GradScaler for fp16 on CUDA
    sample_weights: torch.Tensor | None = None  # per-row draw weights (balanced resampling)
    schedule: LrSchedule | None = None
    early_stopping: EarlyStopping | None = None
    target_std: float = 1.0  # regression: turns standardized errors back into target units


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    step: int  # optimizer steps so far, over all epochs
    metrics: dict[str, float]
    samples_per_s: float
    report: dict[str, Any] = field(default_factory=dict)  # confusion matrix and per-class scores
    is_best: bool = True  # without early stopping every epoch is "the best so far"
    lr: float | None = None


def _epoch_order(n: int, opts: LoopOptions, generator: torch.Generator) -> torch.Tensor:
    if opts.sample_weights is not None:
        return torch.multinomial(
            opts.sample_weights.cpu(), n, replacement=True, generator=generator
        )
    return torch.randperm(n, generator=generator)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    opts: LoopOptions,
    generator: torch.Generator,
    on_step: StepHook,
) -> tuple[float, int]:
    """One pass over (x, y) in a seeded random order. Returns (mean loss, steps taken)."""
    model.train()
    order = _epoch_order(x.shape[0], opts, generator).to(x.device)
    x, y = x[order], y[order]  # one gather per epoch; batches below are views
    total = torch.zeros((), device=x.device)
    steps = 0
    for start in range(0, x.shape[0], opts.batch_size):
        xb = opts.transform(x[start : start + opts.batch_size], True)
        yb = y[start : start + opts.batch_size]
        total += train_step(model, optimizer, loss_fn, xb, yb, opts) * xb.shape[0]
        steps += 1
        if opts.schedule is not None:
            opts.schedule.after_step()
        if on_step(xb.shape[0]):
            raise StopRequested
    return (total / x.shape[0]).item(), steps


def _autocast(device: torch.device, opts: LoopOptions) -> torch.autocast:
    return torch.autocast(
        device.type,
        dtype=opts.autocast_dtype or torch.bfloat16,
        enabled=opts.autocast_dtype is not None,
    )


def _batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    ]


@torch.no_grad()
def recompute_batchnorm(
    model: nn.Module, x: torch.Tensor, opts: LoopOptions, max_rows: int = PRECISE_BN_ROWS
) -> int:
    """Set every BatchNorm's running mean and variance to their average over training rows
    (up to max_rows, in batches of the training batch size, without augmentation) under the
    current weights. Returns the rows read; 0 when the model has no BatchNorm."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper: run eagerly here
    norms = _batch_norms(model)
    if not norms or x.shape[0] == 0:
        return 0
    chunk = min(opts.batch_size, EVAL_BATCH, x.shape[0])
    # Every row, batched as training batches them; or whole batches only, when capped.
    rows = x.shape[0] if x.shape[0] <= max_rows else max(chunk, max_rows // chunk * chunk)
    # A fixed mix of the classes in every batch (uploads are stored class by class), drawn from
    # its own generator so the training order and the global RNG are untouched.
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:rows]
    order = order.to(x.device)
    was_training = model.training
    saved = [(m.momentum, int(m.num_batches_tracked or 0)) for m in norms]
    model.eval()  # dropout stays off: it would draw from the global RNG
    for m in norms:
        m.train()
    with _autocast(x.device, opts):
        for start in range(0, rows, chunk):
            batch = order[start : start + chunk]
            for m in norms:
                # momentum = this batch's share of the rows so far: a row-weighted plain mean
                m.momentum = batch.shape[0] / (start + batch.shape[0])
            model(opts.transform(x[batch], False))
    for m, (momentum, tracked) in zip(norms, saved, strict=True):
        m.momentum = momentum
        if m.num_batches_tracked is not None:  # it counts training steps, not these batches
            m.num_batches_tracked.fill_(tracked)
    model.train(was_training)
    return rows


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    xb: torch.Tensor,
    yb: torch.Tensor,
    opts: LoopOptions,
) -> torch.Tensor:
    """One optimizer step; returns the batch's mean loss, still on the device."""
    optimizer.zero_grad(set_to_none=True)
    with _autocast(xb.device, opts):
        loss = loss_fn(model(xb).float(), yb)
    if opts.scaler is not None:
        opts.scaler.scale(loss).backward()
        opts.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    else:
        loss.backward()
    if opts.grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
    if opts.scaler is not None:
        opts.scaler.step(optimizer)
        opts.scaler.update()
    else:
        optimizer.step()
    return loss.detach()


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    opts: LoopOptions,
    prefix: str = "val",
) -> tuple[dict[str, float], dict[str, Any]]:
    """Loss and task metrics on held-out rows → (scalars, report). No rows: no metrics."""
    if x.shape[0] == 0:
        return {}, {}
    model.eval()
    # No larger than a training batch: what fits a training step (checked at submission,
    # app/ml/footprint.py) fits its forward pass, but not always EVAL_BATCH rows of it.
    rows = min(EVAL_BATCH, opts.batch_size)
    with _autocast(x.device, opts):
        out = torch.cat(
            [
                model(opts.transform(x[i : i + rows], False)).float()
                for i in range(0, x.shape[0], rows)
            ]
        )
    scalars = {f"{prefix}_loss": loss_fn(out, y).item()}
    if opts.task == Task.classification:
        assert opts.classes is not None
        task_scalars, report = classification_scores(out, y, opts.classes, prefix)
        return scalars | task_scalars, report
    return scalars | regression_scores(out, y, opts.target_std, prefix), {}


def _check_finite(metrics: dict[str, float], epoch: int, step: int) -> None:
    """A NaN or infinite metric (a validation pass that overflowed while training did not) is
    divergence too; it must never reach the job's JSON columns, which refuse it."""
    bad = sorted(name for name, value in metrics.items() if not math.isfinite(value))
    if bad:
        raise Diverged(f"{', '.join(bad)} became non-finite in epoch {epoch} (step {step})")


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    data: Splits,
    opts: LoopOptions,
    generator: torch.Generator,
    *,
    on_step: StepHook,
    on_epoch_end: EpochHook,
    start_epoch: int = 0,
    start_step: int = 0,
) -> int:
    """Train epochs start_epoch+1 .. opts.epochs, reporting each through on_epoch_end.
    Returns the last epoch trained (earlier than opts.epochs when early stopping ended it)."""
    step, epoch = start_step, start_epoch
    for epoch in range(start_epoch + 1, opts.epochs + 1):
        if opts.schedule is not None:
            opts.schedule.start_epoch(epoch)
        lr = opts.schedule.lr if opts.schedule is not None else None
        began = time.perf_counter()
        train_loss, steps = train_one_epoch(
            model, optimizer, loss_fn, data.x_train, data.y_train, opts, generator, on_step
        )
        step += steps
        if not math.isfinite(train_loss):
            raise Diverged(f"training loss became {train_loss} in epoch {epoch} (step {step})")
        elapsed = time.perf_counter() - began
        # Also without validation rows: the checkpoint, the test split and predict use these.
        recompute_batchnorm(model, data.x_train, opts)
        val, report = evaluate(model, loss_fn, data.x_val, data.y_val, opts)
        metrics = {"train_loss": train_loss, **val}
        _check_finite(metrics, epoch, step)
        is_best = opts.early_stopping.update(epoch, metrics) if opts.early_stopping else True
        if opts.schedule is not None:
            opts.schedule.end_epoch(epoch, metrics.get("val_loss"))
        on_epoch_end(
            EpochResult(
                epoch,
                step,
                metrics,
                data.x_train.shape[0] / max(elapsed, 1e-9),
                report,
                is_best,
                lr,
            )
        )
        if opts.early_stopping is not None and opts.early_stopping.should_stop:
            break
    return epoch

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

from app.ml.pretrained import CausalLMLoss
from app.schemas.job import Task
from worker.training.regularize import EarlyStopping
from worker.training.schedule import ConstantLr, Schedule
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


def random_order(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator)


def _no_scaler() -> torch.amp.GradScaler:
    return torch.amp.GradScaler("cuda", enabled=False)


@dataclass
class Precision:
    """Mixed precision. `dtype` is autocast's (None: plain fp32). fp16 on CUDA also needs a
    grad scaler, so that small gradients do not underflow; a disabled scaler passes the loss
    and the step straight through, so the step below has one shape for every precision."""

    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler = field(default_factory=_no_scaler)

    def autocast(self, device: torch.device) -> torch.autocast:
        return torch.autocast(
            device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None
        )


@dataclass
class Scoring:
    """What evaluation needs to turn outputs into the task's metrics."""

    task: Task
    classes: list[Any] | None = None  # classification: index → label
    target_std: float = 1.0  # regression: turns standardized errors back into target units

    def scores(
        self, out: torch.Tensor, y: torch.Tensor, prefix: str
    ) -> tuple[dict[str, float], dict[str, Any]]:
        if self.task == Task.classification:
            assert self.classes is not None
            return classification_scores(out, y, self.classes, prefix)
        return regression_scores(out, y, self.target_std, prefix), {}


@dataclass
class LoopOptions:
    """How the loop trains; worker/training/setup.py builds it from a job's spec. Every part
    has a neutral default (fp32, a random order, a constant rate), so the loop runs each one
    without asking whether it is there."""

    scoring: Scoring
    epochs: int
    batch_size: int
    transform: Transform = _identity
    accumulate: int = 1  # batches per optimizer step (gradient accumulation)
    # (rows, generator) → each epoch's order: a permutation, or a weighted draw (resampling)
    order: Callable[[int, torch.Generator], torch.Tensor] = random_order
    precision: Precision = field(default_factory=Precision)
    grad_clip: float | None = None
    schedule: Schedule = field(default_factory=ConstantLr)
    early_stopping: EarlyStopping | None = None


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    step: int  # optimizer steps so far, over all epochs
    metrics: dict[str, float]
    samples_per_s: float
    report: dict[str, Any] = field(default_factory=dict)  # confusion matrix and per-class scores
    is_best: bool = True  # without early stopping every epoch is "the best so far"


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
    # The order is drawn on the CPU from the job's seeded generator, so a resumed attempt,
    # which restores that generator, replays the same orders on any device.
    order = opts.order(x.shape[0], generator).to(x.device)
    x, y = x[order], y[order]  # one gather per epoch; batches below are views
    total = torch.zeros((), device=x.device)
    steps = 0
    rows_per_step = opts.batch_size * opts.accumulate
    for first in range(0, x.shape[0], rows_per_step):
        last = min(first + rows_per_step, x.shape[0])
        # Summed on the device: reading it here would wait for the GPU after every step.
        total += train_step(model, optimizer, loss_fn, x[first:last], y[first:last], opts)
        steps += 1
        opts.schedule.after_step()
        # The runner's hook: a cancel, a drain or the time limit stops the job after this
        # step; it reads only what the lease thread last learned, so a step waits on nothing.
        if on_step(last - first):
            raise StopRequested
    return (total / x.shape[0]).item(), steps  # the epoch's one sync with the device


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
    """Set every BatchNorm that trains to their average over training rows (up to max_rows,
    in batches of the training batch size, without augmentation) under the current weights.
    Returns the rows read; 0 when the model has no BatchNorm that trains."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper: run eagerly here
    was_training = model.training
    # Only what training mode trains: a model may keep some BatchNorm in eval mode then (a
    # frozen pretrained backbone's, app/ml/pretrained.py), and those keep their statistics.
    model.train()
    norms = [m for m in _batch_norms(model) if m.training]
    if not norms or x.shape[0] == 0:
        model.train(was_training)
        return 0
    chunk = min(opts.batch_size, EVAL_BATCH, x.shape[0])
    # Every row, batched as training batches them; or whole batches only, when capped.
    rows = x.shape[0] if x.shape[0] <= max_rows else max(chunk, max_rows // chunk * chunk)
    # A fixed mix of the classes in every batch (uploads are stored class by class), drawn from
    # its own generator so the training order and the global RNG are untouched.
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:rows]
    order = order.to(x.device)
    saved = [(m.momentum, int(m.num_batches_tracked or 0)) for m in norms]
    model.eval()  # dropout stays off: it would draw from the global RNG
    for m in norms:
        m.train()
    with opts.precision.autocast(x.device):
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
    x: torch.Tensor,
    y: torch.Tensor,
    opts: LoopOptions,
) -> torch.Tensor:
    """One optimizer step over the rows of x, in batches of batch_size whose gradients add up
    (gradient accumulation: one batch's memory, a larger batch's step). Each batch's loss is
    weighted by its share of the rows, so the step is the one a single batch of them would
    take. Returns the rows' summed loss, still on the device."""
    optimizer.zero_grad(set_to_none=True)
    scaler = opts.precision.scaler
    total = torch.zeros((), device=x.device)
    for start in range(0, x.shape[0], opts.batch_size):
        xb = opts.transform(x[start : start + opts.batch_size], True)
        yb = y[start : start + opts.batch_size]
        with opts.precision.autocast(xb.device):
            loss = loss_fn(model(xb).float(), yb)  # the loss in fp32 whatever the precision
        scaler.scale(loss * (xb.shape[0] / x.shape[0])).backward()
        total += loss.detach() * xb.shape[0]
    if opts.grad_clip is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
    scaler.step(optimizer)  # skipped by the scaler when fp16 gradients overflowed
    scaler.update()
    return total


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
    if opts.scoring.task == Task.generation:
        assert isinstance(loss_fn, CausalLMLoss)
        return _language_model_scores(model, loss_fn, x, y, opts, rows, prefix), {}
    with opts.precision.autocast(x.device):
        out = torch.cat(
            [
                model(opts.transform(x[i : i + rows], False)).float()
                for i in range(0, x.shape[0], rows)
            ]
        )
    task_scalars, report = opts.scoring.scores(out, y, prefix)
    return {f"{prefix}_loss": loss_fn(out, y).item(), **task_scalars}, report


def _language_model_scores(
    model: nn.Module,
    loss_fn: CausalLMLoss,
    x: torch.Tensor,
    y: torch.Tensor,
    opts: LoopOptions,
    rows: int,
    prefix: str,
) -> dict[str, float]:
    """A generator's loss per token and its perplexity. Batch by batch, summed on the device:
    a whole split's logits (rows x tokens x vocabulary) would not fit in memory."""
    total = torch.zeros((), device=x.device)
    tokens = torch.zeros((), device=x.device)
    with opts.precision.autocast(x.device):
        for i in range(0, x.shape[0], rows):
            out = model(opts.transform(x[i : i + rows], False)).float()
            count = loss_fn.tokens(out, y[i : i + rows])
            total += loss_fn(out, y[i : i + rows]) * count
            tokens += count
    loss = (total / tokens.clamp(min=1)).item()
    return {f"{prefix}_loss": loss, f"{prefix}_perplexity": math.exp(min(loss, 80.0))}


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
    sync_loss: Callable[[float], float] | None = None,
) -> int:
    """Train epochs start_epoch+1 .. opts.epochs, reporting each through on_epoch_end.
    Returns the last epoch trained (earlier than opts.epochs when early stopping ended it).
    sync_loss: data parallel's mean of the ranks' training losses (worker/training/ranks.py),
    so every rank decides divergence, and reports, alike."""
    step, epoch = start_step, start_epoch
    for epoch in range(start_epoch + 1, opts.epochs + 1):
        opts.schedule.start_epoch(epoch)
        began = time.perf_counter()
        train_loss, steps = train_one_epoch(
            model, optimizer, loss_fn, data.x_train, data.y_train, opts, generator, on_step
        )
        step += steps
        if sync_loss is not None:
            train_loss = sync_loss(train_loss)
        if not math.isfinite(train_loss):
            raise Diverged(f"training loss became {train_loss} in epoch {epoch} (step {step})")
        elapsed = time.perf_counter() - began
        # Also without validation rows: the checkpoint, the test split and predict use these.
        recompute_batchnorm(model, data.x_train, opts)
        val, report = evaluate(model, loss_fn, data.x_val, data.y_val, opts)
        metrics = {"train_loss": train_loss, **val}
        _check_finite(metrics, epoch, step)
        is_best = opts.early_stopping.update(epoch, metrics) if opts.early_stopping else True
        opts.schedule.end_epoch(epoch, metrics.get("val_loss"))
        # The runner checkpoints and records the epoch here, before the next one starts: a
        # killed attempt loses at most the epoch in progress.
        on_epoch_end(
            EpochResult(
                epoch,
                step,
                metrics,
                data.x_train.shape[0] / max(elapsed, 1e-9),
                report,
                is_best,
            )
        )
        if opts.early_stopping is not None and opts.early_stopping.should_stop:
            break
    return epoch

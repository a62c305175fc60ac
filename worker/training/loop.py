"""The training loop, top to bottom: train_one_epoch, evaluate, fit.

Data stays resident as tensors on the training device: each epoch permutes it once and
takes contiguous slices, so a step costs no DataLoader, collate or host copy. The loss
is summed on the device and read back once per epoch (`.item()` forces a GPU sync).
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from app.schemas.job import Task

# Called after every step with the rows it trained; returning True asks the loop to stop.
StepHook = Callable[[int], bool]
EpochHook = Callable[["EpochResult"], None]
EVAL_BATCH = 8192


class StopRequested(Exception):
    """A step hook asked to stop (cancel); the last epoch's checkpoint stands."""


class Diverged(Exception):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    step: int  # optimizer steps so far, over all epochs
    metrics: dict[str, float]
    samples_per_s: float


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    on_step: StepHook,
) -> tuple[float, int]:
    """One pass over (x, y) in a seeded random order. Returns (mean loss, steps taken)."""
    model.train()
    order = torch.randperm(x.shape[0], generator=generator).to(x.device)
    x, y = x[order], y[order]  # one gather per epoch; batches below are views
    total = torch.zeros((), device=x.device)
    steps = 0
    for start in range(0, x.shape[0], batch_size):
        xb, yb = (
            x[start : start + batch_size],
            y[start : start + batch_size],
        )  # (B, F), (B,) or (B, 1)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        total += loss.detach() * xb.shape[0]
        steps += 1
        if on_step(xb.shape[0]):
            raise StopRequested
    return (total / x.shape[0]).item(), steps


@torch.inference_mode()
def evaluate(
    model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor, task: Task
) -> dict[str, float]:
    """Loss and task metrics on held-out rows; an empty split yields no metrics."""
    if x.shape[0] == 0:
        return {}
    model.eval()
    out = torch.cat([model(x[i : i + EVAL_BATCH]) for i in range(0, x.shape[0], EVAL_BATCH)])
    metrics = {"val_loss": loss_fn(out, y).item()}
    if task == Task.classification:
        metrics["val_accuracy"] = (out.argmax(dim=1) == y).float().mean().item()
    else:
        # R² does not depend on the target's scale, so standardized targets give the true value.
        variance = ((y - y.mean()) ** 2).mean()
        metrics["val_r2"] = (1 - ((out - y) ** 2).mean() / variance.clamp_min(1e-12)).item()
    return metrics


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    *,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    task: Task,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    start_epoch: int = 0,
    start_step: int = 0,
    on_step: StepHook,
    on_epoch_end: EpochHook,
) -> None:
    """Train epochs start_epoch+1 .. epochs, reporting each through on_epoch_end."""
    step = start_step
    for epoch in range(start_epoch + 1, epochs + 1):
        began = time.perf_counter()
        train_loss, steps = train_one_epoch(
            model, optimizer, loss_fn, x_train, y_train, batch_size, generator, on_step
        )
        step += steps
        if not math.isfinite(train_loss):
            raise Diverged(f"training loss became {train_loss} in epoch {epoch} (step {step})")
        elapsed = time.perf_counter() - began
        metrics = {"train_loss": train_loss, **evaluate(model, loss_fn, x_val, y_val, task)}
        on_epoch_end(EpochResult(epoch, step, metrics, x_train.shape[0] / max(elapsed, 1e-9)))

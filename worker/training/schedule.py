"""Learning-rate schedules with a linear warm-up, resumable from a checkpoint.

During the first `warmup_epochs` the rate climbs linearly to the optimizer's rate; then the
named schedule takes over: step and cosine step once per epoch, plateau once per epoch on
the validation loss, one_cycle once per optimizer step (it has its own warm-up).
"""

from typing import Any, Protocol

import torch
from torch.optim import lr_scheduler

from app.schemas.job import ScheduleConfig


class Schedule(Protocol):
    """What the loop calls; LrSchedule, or ConstantLr when the spec names no schedule."""

    def start_epoch(self, epoch: int) -> None: ...
    def after_step(self) -> None: ...
    def end_epoch(self, epoch: int, val_loss: float | None) -> None: ...


class ConstantLr:
    """No schedule: the optimizer's own rate throughout, and nothing for a checkpoint."""

    def start_epoch(self, epoch: int) -> None:
        pass

    def after_step(self) -> None:
        pass

    def end_epoch(self, epoch: int, val_loss: float | None) -> None:
        pass


class LrSchedule:
    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        cfg: ScheduleConfig,
        epochs: int,
        steps_per_epoch: int,
    ) -> None:
        self.optimizer = optimizer
        self.cfg = cfg
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.warmup = 0 if cfg.name == "one_cycle" else min(cfg.warmup_epochs, epochs - 1)
        self.inner = _build(optimizer, cfg, epochs - self.warmup, steps_per_epoch)

    def start_epoch(self, epoch: int) -> None:
        """Called before epoch `epoch` (1-based) trains."""
        if epoch <= self.warmup:
            self._set(epoch / (self.warmup + 1))
        elif epoch == self.warmup + 1 and self.warmup:
            self._set(1.0)

    def after_step(self) -> None:
        if self.cfg.name == "one_cycle":
            assert self.inner is not None
            self.inner.step()

    def end_epoch(self, epoch: int, val_loss: float | None) -> None:
        if epoch <= self.warmup or self.inner is None or self.cfg.name == "one_cycle":
            return
        if isinstance(self.inner, lr_scheduler.ReduceLROnPlateau):
            if val_loss is not None:
                self.inner.step(val_loss)
        else:
            self.inner.step()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict() if self.inner is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.inner is not None and state.get("inner") is not None:
            self.inner.load_state_dict(state["inner"])

    def _set(self, factor: float) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor


def _build(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, epochs: int, steps_per_epoch: int
) -> Any:
    if cfg.name == "step":
        return lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1), eta_min=cfg.min_lr)
    if cfg.name == "plateau":
        return lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=cfg.factor, patience=cfg.patience, min_lr=cfg.min_lr
        )
    if cfg.name == "one_cycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]
        return lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, epochs=epochs, steps_per_epoch=steps_per_epoch
        )
    return None

"""The seed text's practical advice, as small pieces the loop composes: class weights and
balanced resampling against class imbalance, image augmentation and early stopping against
overfitting."""

from typing import Any

import torch

from app.schemas.job import AugmentConfig, EarlyStoppingConfig

LOWER_IS_BETTER = ("loss", "mse", "mae")


def class_weights(setting: Any, y: torch.Tensor, classes: list[Any]) -> torch.Tensor | None:
    """Per-class loss weights: "balanced" = n / (k * count), or explicit (list or {label: w})."""
    if setting is None:
        return None
    k = len(classes)
    if setting == "balanced":
        counts = torch.bincount(y.cpu(), minlength=k).double()
        return (len(y) / (k * counts.clamp_min(1))).float()
    if isinstance(setting, dict):
        by_label = {str(label): i for i, label in enumerate(classes)}
        weights = torch.ones(k)
        for label, weight in setting.items():
            weights[by_label[str(label)]] = float(weight)
        return weights
    return torch.tensor([float(w) for w in setting])


def balanced_sample_weights(y: torch.Tensor, k: int) -> torch.Tensor:
    """Per-row weights that draw every class equally often (rows of rare classes repeat)."""
    counts = torch.bincount(y, minlength=k).float()
    return 1.0 / counts[y].clamp_min(1)


def augment_images(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """x: (B, C, H, W). Random horizontal flips and random crops of a zero-padded image."""
    b, _, h, w = x.shape
    if cfg.flip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if cfg.crop_padding:
        p = cfg.crop_padding
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
        ox = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]  # (B, C, H, W)
    return x


class EarlyStopping:
    """Tracks the best epoch of one metric; says when `patience` epochs brought no gain."""

    def __init__(self, cfg: EarlyStoppingConfig) -> None:
        self.cfg = cfg
        self.lower_is_better = cfg.mode == "min" or (
            cfg.mode == "auto" and any(part in cfg.metric for part in LOWER_IS_BETTER)
        )
        self.best: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record an epoch; True when it is the new best."""
        value = metrics[self.cfg.metric]
        gain = (
            (self.best - value)
            if self.lower_is_better and self.best is not None
            else ((value - self.best) if self.best is not None else float("inf"))
        )
        if gain > self.cfg.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.cfg.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = (
            state["best"],
            state["best_epoch"],
            state["bad_epochs"],
        )

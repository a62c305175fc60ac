"""A job's training checkpoints: epoch-NNNN.safetensors (the last k kept) and best.safetensors.

A training checkpoint holds everything a resumed attempt needs to continue: the model,
the optimizer, the LR schedule, early stopping, the grad scaler and the data-order RNG.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.ml import checkpoint

log = logging.getLogger(__name__)


@dataclass
class TrainingState:
    """The objects whose state a checkpoint saves and restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    extras: dict[str, Any]  # name → object with state_dict()/load_state_dict() (schedule, ...)


class CheckpointDir:
    def __init__(self, root: Path, keep: int) -> None:
        self.root = root
        self.keep = keep

    def save(self, epoch: int, step: int, state: TrainingState) -> None:
        tensors = _model_tensors(state.model)
        skeletons = {}
        for name, obj in [("optim", state.optimizer), *state.extras.items()]:
            part, skeletons[name] = checkpoint.flatten_state(obj.state_dict(), name)
            tensors.update(part)
        tensors["rng.generator"] = state.generator.get_state()
        meta = {"kind": "training", "epoch": epoch, "step": step, "state": skeletons}
        checkpoint.save(self.root / f"epoch-{epoch:04d}.safetensors", tensors, meta)
        for old in self._files()[: -self.keep]:
            old.unlink(missing_ok=True)

    def restore(self, state: TrainingState) -> tuple[int, int]:
        """Load the newest readable checkpoint; (0, 0) when there is none."""
        for path in reversed(self._files()):
            try:
                ckpt = checkpoint.load(path)
            except checkpoint.CheckpointError as exc:
                log.warning("skipping unreadable checkpoint %s: %s", path.name, exc)
                continue
            state.model.load_state_dict(_strip(ckpt.tensors, "model."))
            skeletons = ckpt.meta["state"]
            state.optimizer.load_state_dict(
                checkpoint.unflatten_state(skeletons["optim"], ckpt.tensors)
            )
            for name, obj in state.extras.items():
                obj.load_state_dict(checkpoint.unflatten_state(skeletons[name], ckpt.tensors))
            state.generator.set_state(ckpt.tensors["rng.generator"])
            return int(ckpt.meta["epoch"]), int(ckpt.meta["step"])
        return 0, 0

    def save_best(self, epoch: int, model: nn.Module) -> None:
        checkpoint.save(
            self.root / "best.safetensors", _model_tensors(model), {"kind": "best", "epoch": epoch}
        )

    def load_best(self, model: nn.Module) -> int:
        """Put the best epoch's weights into model; returns that epoch."""
        ckpt = checkpoint.load(self.root / "best.safetensors")
        model.load_state_dict(_strip(ckpt.tensors, "model."))
        return int(ckpt.meta["epoch"])

    def _files(self) -> list[Path]:
        return sorted(self.root.glob("epoch-*.safetensors"))


def _model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"model.{k}": v for k, v in model.state_dict().items()}


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

"""Resume: a job's training checkpoints, one folder per attempt, and how an attempt carries on
from the newest one. The file each is written as is app/ml/checkpoint.py (the format, shared
with serving); this module decides what goes in it and which one a resume reads.

Layout: attempt-N/epoch-NNNN.safetensors (the last k kept), attempt-N/best.safetensors
(early stopping) and attempt-N/model.safetensors.

Each attempt writes only its own folder, so an attempt that was reaped but still runs cannot
touch what the next attempt resumes from or registers. An attempt resumes from the newest
readable checkpoint of the attempts before it. A checkpoint holds everything an exact resume
needs: model, optimizer, LR schedule, early stopping, grad scaler, and the RNG states (the
data-order generator, torch's global and CUDA generators, Python's and NumPy's), and its
epoch's metrics and validation report, so a job whose attempt died between writing the
checkpoint and recording the epoch still has that epoch's figures.
"""

import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.ml import checkpoint

log = logging.getLogger(__name__)
ATTEMPT_DIR = re.compile(r"^attempt-(\d+)$")


@dataclass(frozen=True)
class Resume:
    """Where a restored checkpoint left off."""

    epoch: int
    step: int
    metrics: dict[str, float]
    report: dict[str, Any]


@dataclass
class TrainingState:
    """The objects whose state a checkpoint saves and restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    extras: dict[str, Any]  # name → object with state_dict()/load_state_dict() (schedule, ...)


class CheckpointDir:
    def __init__(self, job_root: Path, attempt: int, keep: int) -> None:
        self.job_root = job_root
        self.attempt = attempt
        self.root = job_root / f"attempt-{attempt}"
        self.keep = keep

    def save(
        self,
        epoch: int,
        step: int,
        state: TrainingState,
        metrics: dict[str, float] | None = None,
        report: dict[str, Any] | None = None,
    ) -> None:
        tensors = _model_tensors(state.model)
        skeletons = {}
        for name, obj in [("optim", state.optimizer), *state.extras.items()]:
            part, skeletons[name] = checkpoint.flatten_state(obj.state_dict(), name)
            tensors.update(part)
        rng_tensors, skeletons["rng"] = checkpoint.flatten_state(_rng_state(state.generator), "rng")
        tensors.update(rng_tensors)
        meta = {
            "kind": "training",
            "epoch": epoch,
            "step": step,
            "state": skeletons,
            "metrics": metrics or {},
            "report": report or {},
        }
        checkpoint.save(self.root / f"epoch-{epoch:04d}.safetensors", tensors, meta)
        for old in _epochs(self.root)[: -self.keep]:
            old.unlink(missing_ok=True)

    def restore(self, state: TrainingState) -> Resume | None:
        """Load the newest readable checkpoint of this or an earlier attempt; None if none."""
        for path in self._candidates():
            try:
                ckpt = checkpoint.load(path)
                return self._apply(ckpt, state)
            except (checkpoint.CheckpointError, KeyError, RuntimeError, ValueError) as exc:
                log.warning("skipping checkpoint %s: %s", path, exc)
        return None

    def save_best(self, epoch: int, model: nn.Module, report: dict[str, Any]) -> None:
        meta = {"kind": "best", "epoch": epoch, "report": report}
        checkpoint.save(self.root / "best.safetensors", _model_tensors(model), meta)

    def load_best(self, model: nn.Module) -> tuple[int, dict[str, Any]]:
        """Put the best epoch's weights (this attempt's, else an earlier one's) into model;
        return that epoch and its validation report."""
        for folder in self._attempt_dirs():
            if (folder / "best.safetensors").is_file():
                ckpt = checkpoint.load(folder / "best.safetensors")
                model.load_state_dict(_strip(ckpt.tensors, "model."))
                return int(ckpt.meta["epoch"]), ckpt.meta.get("report", {})
        raise checkpoint.CheckpointError("no best checkpoint was written")

    @property
    def model_path(self) -> Path:
        return self.root / "model.safetensors"

    def _candidates(self) -> list[Path]:
        return [path for folder in self._attempt_dirs() for path in reversed(_epochs(folder))]

    def _attempt_dirs(self) -> list[Path]:
        """This attempt's folder and earlier ones, newest first."""
        found = []
        for folder in self.job_root.glob("attempt-*"):
            match = ATTEMPT_DIR.match(folder.name)
            if match and int(match.group(1)) <= self.attempt:
                found.append((int(match.group(1)), folder))
        return [folder for _, folder in sorted(found, reverse=True)]

    @staticmethod
    def _apply(ckpt: checkpoint.Checkpoint, state: TrainingState) -> Resume:
        skeletons = ckpt.meta["state"]
        state.model.load_state_dict(_strip(ckpt.tensors, "model."))
        state.optimizer.load_state_dict(
            checkpoint.unflatten_state(skeletons["optim"], ckpt.tensors)
        )
        for name, obj in state.extras.items():
            obj.load_state_dict(checkpoint.unflatten_state(skeletons[name], ckpt.tensors))
        _set_rng_state(state.generator, checkpoint.unflatten_state(skeletons["rng"], ckpt.tensors))
        meta = ckpt.meta
        return Resume(
            int(meta["epoch"]), int(meta["step"]), meta.get("metrics", {}), meta.get("report", {})
        )


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    np_kind, np_keys, np_pos, np_gauss, np_cached = np.random.get_state()
    return {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),  # dropout and other in-model randomness
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "python": random.getstate(),
        "numpy": [
            np_kind,
            torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            np_pos,
            np_gauss,
            np_cached,
        ],
    }


def _set_rng_state(generator: torch.Generator, rng: dict[str, Any]) -> None:
    generator.set_state(rng["generator"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def _epochs(folder: Path) -> list[Path]:
    return sorted(folder.glob("epoch-*.safetensors"))


def _model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"model.{k}": v for k, v in model.state_dict().items()}


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

"""Resume: a job's training checkpoints in the artifact store, and how an attempt carries on
from the newest one. The file each is written as is app/ml/checkpoint.py (the format, shared
with serving); this module decides what goes in it and which one a resume reads.

Keys: jobs/<id>/attempt-N/epoch-NNNN.safetensors (the last k kept), .../best.safetensors
(early stopping) and .../model.safetensors (the bundle a version is registered with).

Each attempt writes only its own keys, so an attempt that was reaped but still runs cannot
touch what the next attempt resumes from or registers. A checkpoint is read only through the
job's pointers (jobs.checkpoints: key and sha256 of each kept checkpoint), which the attempt
commits with the epoch's metrics after the object is stored, fenced by its attempt: an object
no committed pointer names (a put killed half-way, a reaped attempt's) is never read, and any
host resumes from what the pointers name, checked against their sha256. A resume reads the
newest one that loads, falling back to the older ones kept.

A checkpoint holds everything an exact resume needs: model, optimizer, LR schedule, early
stopping, grad scaler, and the RNG states (the data-order generator, torch's global and CUDA
generators, Python's and NumPy's), and its epoch's metrics and validation report, so a job
whose metrics were lost after its pointer was committed still has that epoch's figures.
"""

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.ml import checkpoint
from app.storage import ArtifactStore, Stored, StoreError

log = logging.getLogger(__name__)


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
    def __init__(
        self,
        store: ArtifactStore,
        job_id: str,
        attempt: int,
        keep: int,
        recorded: dict[str, Any] | None = None,
    ) -> None:
        self.store, self.attempt, self.keep = store, attempt, keep
        self.prefix = f"jobs/{job_id}/attempt-{attempt}"
        # What the job's row names (earlier attempts' commits), and this attempt's additions:
        # the reporter commits `recorded` with each epoch, then calls committed().
        self.recorded: dict[str, Any] = {"epochs": [], "best": None, **(recorded or {})}
        self._dropped: list[str] = []

    def save(
        self,
        epoch: int,
        step: int,
        state: TrainingState,
        metrics: dict[str, float] | None = None,
        report: dict[str, Any] | None = None,
    ) -> None:
        """Store the epoch's checkpoint; it counts once `recorded` is committed."""
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
        stored = self._put(f"epoch-{epoch:04d}.safetensors", tensors, meta)
        kept = [*self.recorded["epochs"], _pointer(stored, epoch)]
        self._dropped += [p["key"] for p in kept[: -self.keep]]
        self.recorded["epochs"] = kept[-self.keep :]

    def committed(self) -> None:
        """After `recorded` was committed: the checkpoints it no longer names go."""
        for key in self._dropped:
            try:
                self.store.delete(key)
            except StoreError as exc:  # never read again; it only takes space
                log.warning("could not remove the old checkpoint %s: %s", key, exc)
        self._dropped = []

    def restore(self, state: TrainingState) -> Resume | None:
        """Load the newest readable checkpoint the job's pointers name; None if none."""
        for pointer in reversed(self.recorded["epochs"]):
            try:
                ckpt = self._load(pointer)
                return self._apply(ckpt, state)
            except (
                checkpoint.CheckpointError,
                StoreError,
                KeyError,
                RuntimeError,
                ValueError,
            ) as exc:
                log.warning("skipping checkpoint %s: %s", pointer.get("key"), exc)
        return None

    def save_best(self, epoch: int, model: nn.Module, report: dict[str, Any]) -> None:
        meta = {"kind": "best", "epoch": epoch, "report": report}
        stored = self._put("best.safetensors", _model_tensors(model), meta)
        self.recorded["best"] = _pointer(stored, epoch)

    def load_best(self, model: nn.Module) -> tuple[int, dict[str, Any]]:
        """Put the best epoch's weights (this attempt's, else an earlier one's) into model;
        return that epoch and its validation report."""
        if self.recorded["best"] is None:
            raise checkpoint.CheckpointError("no best checkpoint was written")
        ckpt = self._load(self.recorded["best"])
        model.load_state_dict(_strip(ckpt.tensors, "model."))
        return int(ckpt.meta["epoch"]), ckpt.meta.get("report", {})

    def save_model(self, write: Callable[[Path], object]) -> Stored:
        """Store the bundle that write(path) writes; its key and sha256 go to the registry."""
        with self.store.staged("model.safetensors") as path:
            write(path)
            return self.store.put(f"{self.prefix}/model.safetensors", path, consume=True)

    def _put(self, name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Stored:
        with self.store.staged(name) as path:
            checkpoint.save(path, tensors, meta)
            return self.store.put(f"{self.prefix}/{name}", path, consume=True)

    def _load(self, pointer: dict[str, Any]) -> checkpoint.Checkpoint:
        return checkpoint.load(self.store.fetch(pointer["key"], pointer["sha256"]))

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


def _pointer(stored: Stored, epoch: int) -> dict[str, Any]:
    return {"key": stored.key, "sha256": stored.sha256, "epoch": epoch}


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


def _model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"model.{k}": v for k, v in model.state_dict().items()}


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

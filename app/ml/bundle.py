"""A trained model as the registry stores it: weights, the arguments that rebuild the
network, and the preprocessing that predict must repeat. Written as a v1 checkpoint.

A fine-tuned pretrained model stores only what training changed; its options name its base
(id, sha256, and where its folder is), whose files provide the rest (app/ml/pretrained.py)."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.core.kinds import Arch
from app.ml import checkpoint, pretrained
from app.ml.preprocessing import Preprocessor, Standardizer
from app.ml.zoo import build_model

KIND = "model"
# A pretrained version's options["base"] → the base's folder on this host.
BaseFolders = Callable[[dict[str, Any]], Path]


@dataclass
class ModelBundle:
    arch: str
    options: dict[str, Any]
    task: str
    output_dim: int
    classes: list[Any] | None
    preprocessor: Preprocessor
    y_scaler: Standardizer | None  # regression targets are standardized in training
    model: nn.Module

    @cached_property
    def device(self) -> torch.device:
        """Where the model's weights are: read once (walking the parameters cost 3% of a
        small predict's CPU), as a bundle stays where load_bundle put it."""
        return next(self.model.parameters()).device

    @property
    def input_shape(self) -> list[int]:
        """What the network takes (a flattened image for an mlp)."""
        return self.preprocessor.model_input_shape

    def meta(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "arch": self.arch,
            "options": self.options,
            "task": self.task,
            "input_shape": self.input_shape,
            "output_dim": self.output_dim,
            "classes": self.classes,
            "preprocessing": self.preprocessor.meta(),
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        weights = (
            pretrained.stored_tensors(self.model)
            if self.arch == Arch.pretrained
            else self.model.state_dict()
        )
        out = {f"model.{k}": v for k, v in weights.items()}
        out.update(self.preprocessor.tensors())
        if self.y_scaler is not None:
            out.update(self.y_scaler.tensors("y_scaler"))
        return out

    def save(self, path: Path) -> str:
        return checkpoint.save(path, self.tensors(), self.meta())


def load_bundle(
    path: Path, device: str = "cpu", base_folders: BaseFolders | None = None
) -> ModelBundle:
    ckpt = checkpoint.load(path, device=device)
    meta = ckpt.meta
    if meta.get("kind") != KIND:
        raise checkpoint.CheckpointError(f"{path.name} holds no registered model")
    weights = {k[len("model.") :]: v for k, v in ckpt.tensors.items() if k.startswith("model.")}
    try:
        base = _base_folder(meta, base_folders)
        if base is not None:
            model = pretrained.load_finetuned(base, meta["output_dim"], meta["options"], weights)
        else:
            model = build_model(
                meta["arch"], meta["input_shape"], meta["output_dim"], meta["options"]
            )
            model.load_state_dict(weights, strict=True)
        preprocessor = Preprocessor.load(meta["preprocessing"], ckpt.tensors, base)
    except (KeyError, TypeError, ValueError, RuntimeError, OSError) as exc:
        raise checkpoint.CheckpointError(f"{path.name} does not match its arch: {exc}") from exc
    model.to(device).eval()
    has_y = "y_scaler.mean" in ckpt.tensors
    return ModelBundle(
        arch=meta["arch"],
        options=meta["options"],
        task=meta["task"],
        output_dim=meta["output_dim"],
        classes=meta["classes"],
        preprocessor=preprocessor,
        y_scaler=Standardizer.from_tensors(ckpt.tensors, "y_scaler") if has_y else None,
        model=model,
    )


def _base_folder(meta: dict[str, Any], base_folders: BaseFolders | None) -> Path | None:
    if meta["arch"] != Arch.pretrained:
        return None
    if base_folders is None:
        raise ValueError("a fine-tuned model needs its base model's folder")
    return base_folders(meta["options"]["base"])

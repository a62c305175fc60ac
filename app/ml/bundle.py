"""A trained model as the registry stores it: weights, the arguments that rebuild the
network, and the preprocessing that predict must repeat. Written as a v1 checkpoint."""

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.ml import checkpoint
from app.ml.preprocessing import Preprocessor, Standardizer
from app.ml.zoo import build_model

KIND = "model"


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
        out = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        out.update(self.preprocessor.tensors())
        if self.y_scaler is not None:
            out.update(self.y_scaler.tensors("y_scaler"))
        return out

    def save(self, path: Path) -> str:
        return checkpoint.save(path, self.tensors(), self.meta())


def load_bundle(path: Path, device: str = "cpu") -> ModelBundle:
    ckpt = checkpoint.load(path, device=device)
    meta = ckpt.meta
    if meta.get("kind") != KIND:
        raise checkpoint.CheckpointError(f"{path.name} holds no registered model")
    try:
        model = build_model(meta["arch"], meta["input_shape"], meta["output_dim"], meta["options"])
        weights = {k[len("model.") :]: v for k, v in ckpt.tensors.items() if k.startswith("model.")}
        model.load_state_dict(weights, strict=True)
        preprocessor = Preprocessor.load(meta["preprocessing"], ckpt.tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
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

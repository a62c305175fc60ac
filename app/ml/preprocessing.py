"""Preprocessing fitted on the training split, stored in the checkpoint, and applied by
predict exactly as in training."""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.ml.images import BaseImageStats, ChannelStats
from app.ml.pretrained import SCHEME as BASE_SCHEME
from app.ml.pretrained import BaseTokenizer, image_stats, trim
from app.ml.text import Tokenizer


@dataclass(frozen=True)
class Standardizer:
    mean: torch.Tensor  # (features,)
    std: torch.Tensor  # (features,), never 0

    @classmethod
    def fit(cls, x: torch.Tensor) -> "Standardizer":
        mean = x.mean(dim=0)
        std = x.std(dim=0, unbiased=False)
        # A constant feature (e.g. a border pixel of digits) would divide by zero.
        std = torch.where(std > 1e-12, std, torch.ones_like(std))
        return cls(mean, std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.mean": self.mean, f"{prefix}.std": self.std}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> "Standardizer":
        return cls(tensors[f"{prefix}.mean"], tensors[f"{prefix}.std"])


@dataclass
class Preprocessor:
    """Everything between stored data and model input, fitted on training rows only.

    tabular: standardized features; image: uint8 (C, H, W) pixels scaled by channel
    statistics, or for a pretrained vision base resized and normalized as its own image
    processor says; text: token ids from a vocabulary learned from the training texts, or
    from a pretrained base's own tokenizer (ids and attention mask).
    """

    kind: str  # app.schemas.dataset.DataKind value
    input_shape: list[int]
    x_scaler: Standardizer | None = None
    channels: ChannelStats | None = None
    tokenizer: Tokenizer | BaseTokenizer | None = None
    feature_names: list[str] | None = None
    flatten: bool = False  # images for an mlp: (C, H, W) pixels become C*H*W features
    base_image: BaseImageStats | None = None  # images for a pretrained vision base

    @property
    def model_input_shape(self) -> list[int]:
        """What the network is built for; for a vision base the stored shape still, as the
        base's own size is the base's business (base_image resizes to it)."""
        return [math.prod(self.input_shape)] if self.flatten else self.input_shape

    @classmethod
    def fit_tabular(cls, x: torch.Tensor, names: list[str] | None) -> "Preprocessor":
        return cls("tabular", [int(x.shape[1])], x_scaler=Standardizer.fit(x), feature_names=names)

    @classmethod
    def fit_image(cls, x: torch.Tensor, flatten: bool = False) -> "Preprocessor":
        shape = [int(d) for d in x.shape[1:]]
        return cls("image", shape, channels=ChannelStats.fit(x), flatten=flatten)

    @classmethod
    def fit_base_image(cls, base: Path, x: torch.Tensor) -> "Preprocessor":
        """Nothing to fit: the base's image processor settings, from its folder."""
        stats = image_stats(base)
        shape = [int(d) for d in x.shape[1:]]
        if shape[0] == 3 and stats.channels == 1:
            raise ValueError("the base takes grayscale images, and these are RGB")
        return cls("image", shape, base_image=stats)

    @classmethod
    def fit_text(cls, texts: list[str], vocab_size: int, max_len: int) -> "Preprocessor":
        return cls("text", [max_len], tokenizer=Tokenizer.fit(texts, vocab_size))

    @classmethod
    def fit_base_text(cls, base: Path, max_len: int) -> "Preprocessor":
        """Nothing to fit: the base's tokenizer, from its folder."""
        return cls("text", [max_len], tokenizer=BaseTokenizer(base))

    def tabular(self, x: torch.Tensor) -> torch.Tensor:
        assert self.x_scaler is not None
        return self.x_scaler(x)

    def encode_texts(self, texts: list[str], end: bool = False) -> torch.Tensor:
        """end: close each text with the end-of-text token (a base's tokenizer only)."""
        if isinstance(self.tokenizer, BaseTokenizer):
            return self.tokenizer.encode(texts, self.input_shape[0], end=end)
        assert self.tokenizer is not None
        return self.tokenizer.encode(texts, self.input_shape[0])

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in stored form → model input (images are normalized here, per batch)."""
        if self.base_image is not None:
            return self.base_image(x)
        if self.channels is not None:
            x = self.channels(x)
            return x.flatten(1) if self.flatten else x
        if isinstance(self.tokenizer, BaseTokenizer):
            return trim(x)
        return x

    def to(self, device: torch.device | str) -> "Preprocessor":
        if self.x_scaler is not None:
            self.x_scaler = Standardizer(
                self.x_scaler.mean.to(device), self.x_scaler.std.to(device)
            )
        if self.channels is not None:
            self.channels = ChannelStats(
                self.channels.mean.to(device), self.channels.std.to(device)
            )
        return self

    def tensors(self) -> dict[str, torch.Tensor]:
        if self.x_scaler is not None:
            return self.x_scaler.tensors("x_scaler")
        if self.channels is not None:
            return self.channels.tensors("channels")
        return {}

    def meta(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "input_shape": self.input_shape,
            "feature_names": self.feature_names,
            "flatten": self.flatten,
            "tokenizer": self.tokenizer.to_json() if self.tokenizer is not None else None,
            "base_image": self.base_image.to_json() if self.base_image is not None else None,
        }

    @classmethod
    def load(
        cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor], base: Path | None = None
    ) -> "Preprocessor":
        """base: the folder of the version's pretrained base, if it has one."""
        kind = meta.get("kind", "tabular")
        base_image = (
            BaseImageStats.from_json(meta["base_image"]) if meta.get("base_image") else None
        )
        fitted = kind == "image" and base_image is None
        return cls(
            kind,
            list(meta["input_shape"]),
            x_scaler=Standardizer.from_tensors(tensors, "x_scaler") if kind == "tabular" else None,
            channels=ChannelStats.from_tensors(tensors, "channels") if fitted else None,
            tokenizer=_load_tokenizer(meta["tokenizer"], base) if kind == "text" else None,
            feature_names=meta.get("feature_names"),
            flatten=bool(meta.get("flatten", False)),
            base_image=base_image,
        )


def _load_tokenizer(data: Any, base: Path | None) -> Tokenizer | BaseTokenizer:
    if isinstance(data, dict) and data.get("scheme") == BASE_SCHEME:
        if base is None:
            raise ValueError("a base model's tokenizer needs the base's folder")
        return BaseTokenizer(base)
    return Tokenizer.from_json(data)

"""Feature standardization. Fitted on the training split, stored in the checkpoint, and
applied by predict exactly as in training."""

from dataclasses import dataclass

import torch


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

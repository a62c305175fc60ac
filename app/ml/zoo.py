"""The model zoo: one explicit dict from arch to builder. Builders take plain JSON arguments,
so a checkpoint that stores those arguments rebuilds its model exactly."""

from collections.abc import Callable
from typing import Any

from torch import nn

from app.schemas.job import Arch


def build_mlp(
    input_dim: int, output_dim: int, hidden: list[int], dropout: float = 0.0
) -> nn.Module:
    """The seed's network: Linear → ReLU (→ Dropout) per hidden size, then a Linear head."""
    layers: list[nn.Module] = []
    width = input_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)


ZOO: dict[Arch, Callable[..., nn.Module]] = {
    Arch.mlp: build_mlp,
}


def build_model(arch: str, input_dim: int, output_dim: int, options: dict[str, Any]) -> nn.Module:
    return ZOO[Arch(arch)](input_dim, output_dim, **options)


def arch_options(model_config: dict[str, Any]) -> dict[str, Any]:
    """The builder arguments a model spec implies (the part stored in the checkpoint)."""
    return {"hidden": list(model_config["hidden"]), "dropout": float(model_config["dropout"])}

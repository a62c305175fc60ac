"""The model zoo: one explicit dict from arch to builder. Builders take plain JSON arguments,
so a checkpoint that stores those arguments rebuilds its model exactly.

Every builder is called as `builder(input_shape, output_dim, **options)`, where input_shape is
[features] for mlp, [C, H, W] for cnn and resnet, and [max_len] for text."""

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from app.core.kinds import Arch


def _unpack(input_shape: list[int], rank: int, arch: str) -> list[int]:
    if len(input_shape) != rank or any(int(d) < 1 for d in input_shape):
        raise ValueError(f"{arch} needs an input shape of {rank} positive sizes, got {input_shape}")
    return [int(d) for d in input_shape]


def build_mlp(
    input_shape: list[int], output_dim: int, hidden: list[int], dropout: float = 0.0
) -> nn.Module:
    """The seed's network: Linear → ReLU (→ Dropout) per hidden size, then a Linear head."""
    (width,) = _unpack(input_shape, 1, "mlp")
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    # No conv bias: the BatchNorm right after it has its own shift.
    return [nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False), nn.BatchNorm2d(c_out)]


def pooled_head(c_in: int, output_dim: int, dropout: float) -> nn.Sequential:
    """(N, C, H, W) → global average pool → Dropout → Linear → (N, output_dim)."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, output_dim)
    )


def build_cnn(
    input_shape: list[int], output_dim: int, channels: list[int], dropout: float = 0.0
) -> nn.Module:
    """Per entry of channels: 3x3 conv → BatchNorm → ReLU → 2x2 max pool; then the head."""
    c, h, w = _unpack(input_shape, 3, "cnn")
    layers: list[nn.Module] = []
    for size in channels:
        layers += [*conv_bn(c, size), nn.ReLU()]
        # Halve each side that is still at least 2 wide, so small images never reach size 0.
        kernel = (2 if h >= 2 else 1, 2 if w >= 2 else 1)
        if kernel != (1, 1):
            layers.append(nn.MaxPool2d(kernel))
            h, w = h // kernel[0], w // kernel[1]
        c = size
    return nn.Sequential(nn.Sequential(*layers), pooled_head(c, output_dim, dropout))


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm, added to an identity (or 1x1 conv + BN) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*conv_bn(c_in, c_out, stride), nn.ReLU(), *conv_bn(c_out, c_out))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def build_resnet(
    input_shape: list[int], output_dim: int, width: int = 16, depth: int = 2, dropout: float = 0.0
) -> nn.Module:
    """A CIFAR-style ResNet: stem, 3 stages of `depth` blocks (width, 2x, 4x; stages 2 and 3
    start with stride 2), then the head."""
    c, _, _ = _unpack(input_shape, 3, "resnet")
    blocks: list[nn.Module] = [*conv_bn(c, width), nn.ReLU()]
    c_in = width
    for stage, c_out in enumerate((width, 2 * width, 4 * width)):
        for i in range(depth):
            blocks.append(BasicBlock(c_in, c_out, stride=2 if stage > 0 and i == 0 else 1))
            c_in = c_out
    return nn.Sequential(nn.Sequential(*blocks), pooled_head(c_in, output_dim, dropout))


class TextClassifier(nn.Module):
    """Token ids (N, L), 0 = padding → embeddings (→ transformer encoder) → mean over the real
    tokens → Dropout → Linear → (N, output_dim). A row of padding only pools to zeros."""

    def __init__(
        self,
        max_len: int,
        output_dim: int,
        num_embeddings: int,
        encoder: str,
        embed_dim: int,
        layers: int,
        heads: int,
        dropout: float,
    ) -> None:
        super().__init__()
        if encoder not in ("bag", "transformer"):
            raise ValueError(f"unknown text encoder {encoder!r}")
        self.embedding = nn.Embedding(num_embeddings, embed_dim, padding_idx=0)
        self.position: nn.Parameter | None = None
        self.encoder: nn.TransformerEncoder | None = None
        if encoder == "transformer":
            self.position = nn.Parameter(torch.randn(max_len, embed_dim) * 0.02)
            layer = nn.TransformerEncoderLayer(
                embed_dim, heads, 4 * embed_dim, dropout, batch_first=True, norm_first=True
            )
            # enable_nested_tensor=False: the nested fast path does not apply to pre-norm layers.
            self.encoder = nn.TransformerEncoder(
                layer, layers, norm=nn.LayerNorm(embed_dim), enable_nested_tensor=False
            )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, output_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        real = ids != 0  # (N, L)
        h = self.embedding(ids)  # (N, L, D)
        if self.encoder is not None and self.position is not None:
            h = h + self.position[: ids.shape[1]]
            # A row with no real token would mask every key and softmax to NaN; let such rows
            # attend to their padding instead (their pooled output is zeroed below anyway).
            ignore = ~real & real.any(dim=1, keepdim=True)
            h = self.encoder(h, src_key_padding_mask=ignore)
        weights = real.unsqueeze(-1).to(h.dtype)  # (N, L, 1)
        pooled = (h * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (N, D)
        return self.head(self.dropout(pooled))


def build_text(
    input_shape: list[int],
    output_dim: int,
    num_embeddings: int,
    encoder: str = "bag",
    embed_dim: int = 64,
    layers: int = 2,
    heads: int = 4,
    dropout: float = 0.0,
) -> nn.Module:
    """num_embeddings is the fitted vocabulary's size (app.ml.text.Tokenizer.size)."""
    (max_len,) = _unpack(input_shape, 1, "text")
    return TextClassifier(
        max_len, output_dim, num_embeddings, encoder, embed_dim, layers, heads, dropout
    )


ZOO: dict[Arch, Callable[..., nn.Module]] = {
    Arch.mlp: build_mlp,
    Arch.cnn: build_cnn,
    Arch.resnet: build_resnet,
    Arch.text: build_text,
}

# The ModelConfig fields each builder reads. The runner adds num_embeddings for text.
OPTIONS: dict[Arch, tuple[str, ...]] = {
    Arch.mlp: ("hidden", "dropout"),
    Arch.cnn: ("channels", "dropout"),
    Arch.resnet: ("width", "depth", "dropout"),
    Arch.text: ("encoder", "embed_dim", "layers", "heads", "dropout"),
}


def build_model(
    arch: str, input_shape: list[int], output_dim: int, options: dict[str, Any]
) -> nn.Module:
    return ZOO[Arch(arch)](list(input_shape), output_dim, **options)


def arch_options(model_config: dict[str, Any]) -> dict[str, Any]:
    """The builder arguments a model spec implies (the part stored in the checkpoint, as JSON)."""
    fields = OPTIONS[Arch(model_config["arch"])]
    return {k: list(v) if isinstance(v := model_config[k], list) else v for k in fields}

"""What a zoo model costs to train, estimated at submission from its arguments alone.

One estimator per builder in app.ml.zoo, with the builder's signature: the exact parameter
count, and the activations one training step keeps per row (the bytes of every tensor the
forward pass creates: what autograd saves for the backward pass, attention matrices
included). tests/unit/test_footprint.py holds every estimator to the model itself, built on
torch's meta device and run under a dispatch mode that adds up what each op creates. That
measurement is not done here: a meta forward pass costs 10-600 ms and, the first time in a
process, ~2 s of importing torch._dynamo; these formulas cost microseconds and no memory.
All in fp32 (mixed precision needs less), attention as the math kernel does it (a fused
kernel needs less).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.core.kinds import Arch

FLOAT_BYTES = 4


@dataclass(frozen=True)
class Footprint:
    parameters: int
    activation_bytes_per_row: int

    def state_bytes(self, optimizer_states: int) -> int:
        """Weights, their gradients and the optimizer's state (fp32 tensors per weight: SGD
        with momentum 1, Adam 2)."""
        return self.parameters * FLOAT_BYTES * (2 + optimizer_states)

    def training_bytes(self, batch_size: int, optimizer_states: int) -> int:
        return self.state_bytes(optimizer_states) + self.activation_bytes_per_row * batch_size


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def _dropout(p: float) -> int:
    return 2 if p > 0 else 0  # its mask and its output, per element


def _head(c: int, output_dim: int, dropout: float) -> tuple[int, int]:
    """pooled_head: (parameters, floats per row) of average pool → Dropout → Linear."""
    return _linear(c, output_dim), c * (1 + _dropout(dropout)) + output_dim


def mlp(
    input_shape: list[int], output_dim: int, hidden: list[int], dropout: float = 0.0
) -> Footprint:
    (width,) = input_shape
    params, floats = 0, width
    for size in hidden:
        params += _linear(width, size)
        floats += size * (2 + _dropout(dropout))  # Linear, ReLU (, Dropout)
        width = size
    return Footprint(params + _linear(width, output_dim), (floats + output_dim) * FLOAT_BYTES)


def cnn(
    input_shape: list[int], output_dim: int, channels: list[int], dropout: float = 0.0
) -> Footprint:
    c, h, w = input_shape
    params, floats = 0, c * h * w
    for size in channels:
        params += 9 * c * size + 2 * size  # 3x3 conv without bias, BatchNorm's scale and shift
        floats += 3 * size * h * w  # conv, BatchNorm, ReLU
        kernel = (2 if h >= 2 else 1, 2 if w >= 2 else 1)  # as build_cnn pools
        if kernel != (1, 1):
            h, w = h // kernel[0], w // kernel[1]
            floats += 3 * size * h * w  # the pooled values and their int64 indices
        c = size
    head_params, head_floats = _head(c, output_dim, dropout)
    return Footprint(params + head_params, (floats + head_floats) * FLOAT_BYTES)


def resnet(
    input_shape: list[int], output_dim: int, width: int = 16, depth: int = 2, dropout: float = 0.0
) -> Footprint:
    c, h, w = input_shape
    params, floats = 9 * c * width + 2 * width, c * h * w + 3 * width * h * w  # the stem
    c_in = width
    for stage, c_out in enumerate((width, 2 * width, 4 * width)):
        for i in range(depth):
            stride = 2 if stage > 0 and i == 0 else 1
            h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
            params += 9 * c_in * c_out + 9 * c_out * c_out + 4 * c_out
            tensors = 7  # conv, BatchNorm, ReLU, conv, BatchNorm, the sum, ReLU
            if stride != 1 or c_in != c_out:
                params += c_in * c_out + 2 * c_out  # the 1x1 conv + BatchNorm shortcut
                tensors += 2
            floats += tensors * c_out * h * w
            c_in = c_out
    head_params, head_floats = _head(c_in, output_dim, dropout)
    return Footprint(params + head_params, (floats + head_floats) * FLOAT_BYTES)


def text(
    input_shape: list[int],
    output_dim: int,
    num_embeddings: int,
    encoder: str = "bag",
    embed_dim: int = 64,
    layers: int = 2,
    heads: int = 4,
    dropout: float = 0.0,
) -> Footprint:
    (length,) = input_shape
    d, tokens = embed_dim, length * embed_dim
    params = num_embeddings * d + _linear(d, output_dim)
    floats = 2 * tokens + 2 * length  # embeddings, masked for the mean (and the masks)
    if encoder == "transformer":
        ff, drop = 4 * d, _dropout(dropout)
        layer_params = 4 * d * d + 4 * d + _linear(d, ff) + _linear(ff, d) + 4 * d
        params += length * d + layers * layer_params + 2 * d  # positions, layers, final norm
        # per layer: norms, projections and residuals (L x D), the feed-forward (L x 4D), and
        # per head scores, masked scores and softmax (L x L), each (+ dropout's mask and output)
        per_layer = (26 + 2 * drop) * tokens + (2 + drop) * length * ff
        per_layer += (4 + drop) * heads * length * length
        floats += 2 * tokens + layers * per_layer
    floats += d * (2 + _dropout(dropout)) + output_dim  # pooled, divided (, Dropout), the head
    return Footprint(params, floats * FLOAT_BYTES)


ESTIMATORS: dict[Arch, Callable[..., Footprint]] = {
    Arch.mlp: mlp,
    Arch.cnn: cnn,
    Arch.resnet: resnet,
    Arch.text: text,
}


def estimate(
    arch: str, input_shape: list[int], output_dim: int, options: dict[str, Any]
) -> Footprint:
    """The footprint of the model app.ml.zoo.build_model(arch, ...) would build."""
    return ESTIMATORS[Arch(arch)](list(input_shape), output_dim, **options)


@dataclass(frozen=True)
class PretrainedFootprint:
    """A fine-tuned base: all its weights are held, only the trained ones have gradients and
    optimizer state, and only a trained base keeps its activations for the backward pass."""

    parameters: int
    trained: int  # weights with gradients: all (full), the head's, or the adapters' and head's
    activation_bytes_per_row: int

    def training_bytes(self, batch_size: int, optimizer_states: int) -> int:
        held = self.parameters * FLOAT_BYTES
        trained = self.trained * FLOAT_BYTES * (1 + optimizer_states)
        return held + trained + self.activation_bytes_per_row * batch_size


def pretrained(
    parameters: int,
    config: dict[str, Any],
    max_len: int,
    output_dim: int,
    finetune: str,
    lora_r: int,
    generates: bool = False,
) -> PretrainedFootprint:
    """From the base's size and config. Activations per token and layer follow Korthikanti
    et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", 34·h + 5·a·s
    bytes in 16-bit), doubled for fp32; a frozen base keeps only its output. A generator has
    no new head, but its logits over the vocabulary for every token, kept three times (the
    logits, their fp32 copy, the loss's softmax)."""
    hidden = int(config.get("hidden_size") or config.get("n_embd") or 768)
    layers = int(config.get("num_hidden_layers") or config.get("n_layer") or 12)
    heads = int(config.get("num_attention_heads") or config.get("n_head") or 12)
    head = 0 if generates else _linear(hidden, output_dim)
    vocabulary = int(config.get("vocab_size") or 50_000)
    per_row_extra = max_len * vocabulary * FLOAT_BYTES * 3 if generates else 0
    if finetune == "head":
        per_row = max_len * hidden * FLOAT_BYTES * 2
        return PretrainedFootprint(parameters + head, head, per_row + per_row_extra)
    trained = parameters + head
    if finetune == "lora":  # query and value of every layer: two rank-r factors each
        trained = layers * 2 * 2 * hidden * lora_r + head
    per_row = layers * max_len * (68 * hidden + 10 * heads * max_len)
    return PretrainedFootprint(parameters + head, trained, per_row + per_row_extra)


def pretrained_vision(
    parameters: int,
    config: dict[str, Any],
    size: tuple[int, int],
    output_dim: int,
    finetune: str,
    lora_r: int,
) -> PretrainedFootprint:
    """A vision base at its input size (H, W), roughly: formulas, not a measurement, within
    about 2x of what a training forward pass creates for ViT-B, ResNet-18/50 and ConvNeXt-T at
    224. A ViT-style base (a patch_size, no stages) is a transformer over its patches and the
    class token: the text estimate with that many tokens. A conv base keeps about 10 tensors
    per block at each stage's width and resolution (a quarter of the input's side at the first
    stage, halved at each next) and 4 at its stem's (half the side); frozen, about two of the
    largest, the stem's."""
    h, w = size
    stages = config.get("hidden_sizes")
    patch = config.get("patch_size")
    if patch and not stages:
        p = patch[0] if isinstance(patch, list) else int(patch)
        tokens = max(h // p, 1) * max(w // p, 1) + 1
        return pretrained(parameters, config, tokens, output_dim, finetune, lora_r)
    widths = [int(c) for c in stages or [int(config.get("hidden_size") or 2048)]]
    depths = [int(d) for d in config.get("depths") or [2] * len(widths)]
    stem = int(config.get("embedding_size") or widths[0]) * (h // 2) * (w // 2)
    head = _linear(widths[-1], output_dim)
    if finetune == "head":
        return PretrainedFootprint(parameters + head, head, 2 * stem * FLOAT_BYTES)
    floats = 4 * stem
    for i, (width, depth) in enumerate(zip(widths, depths, strict=False)):
        side = 4 * 2**i
        floats += 10 * depth * width * max(h // side, 1) * max(w // side, 1)
    return PretrainedFootprint(parameters + head, parameters + head, floats * FLOAT_BYTES)

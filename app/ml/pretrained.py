"""Pretrained Hugging Face bases, fine-tuned: the network around a base, its tokenizer or image
processor settings, which weights train, and what a registered version stores on top of its
base.

A version stores only what fine-tuning changed (the trained weights: every weight for
`full`, the head for `head`, the adapters and the head for `lora`) plus the buffers; its base's
folder provides the rest. Loading rebuilds the base from its folder and lays the stored
weights over it, refusing any that do not belong.

Nothing is fetched or executed: every load is local_files_only with trust_remote_code off
and safetensors weights only (app/base_models/folder.py refused everything else before a
base was registered). transformers is imported on first use: processes that never fine-tune
or serve a pretrained model never pay for it.
"""

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.core.kinds import Family, Finetune, Head
from app.ml.images import BaseImageStats

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded, whatever a config says
LOCAL_ONLY = {"local_files_only": True, "trust_remote_code": False}
SCHEME = "base-tokenizer"  # a stored Preprocessor's tokenizer that lives in the base's folder
HEAD_PREFIX = "head."
PROCESSOR_FILES = ("preprocessor_config.json", "image_processor_config.json")
# Vision bases with attention projections for LoRA adapters (ViT-style transformers); conv
# bases (ResNet, ConvNeXt, ...) have none, and a LoRA job on one is refused at submission.
LORA_VISION_TYPES = frozenset(
    {"vit", "deit", "beit", "data2vec-vision", "dinov2", "dinov2_with_registers", "vit_msn"}
    | {"ijepa", "swin", "swinv2", "donut-swin"}
)
# The query and value projections' names, as transformers' vision models spell them (5.x
# q_proj/v_proj, 4.x and some others query/value); peft knows no defaults for these.
LORA_PROJECTIONS = (("q_proj", "v_proj"), ("query", "value"))


@cache
def _transformers() -> Any:
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    return transformers


class BaseTokenizer:
    """The base's own tokenizer. Texts become token ids and their attention mask, stacked as
    (N, 2, max_len) int64 and padded to max_len, so that rows of any request or epoch stack
    into one tensor; `trim` cuts a batch to its longest text before the forward pass."""

    def __init__(self, folder: Path) -> None:
        self._tok = _transformers().AutoTokenizer.from_pretrained(folder, **LOCAL_ONLY)
        if self._tok.pad_token_id is None:  # GPT-style bases have none: pad with end-of-text
            self._tok.pad_token = self._tok.eos_token or self._tok.unk_token
        self._tok.padding_side = "right"  # the pooling below reads the last real token

    @property
    def size(self) -> int:
        return len(self._tok)

    @property
    def hf(self) -> Any:
        """The transformers tokenizer itself (generation encodes prompts and decodes tokens)."""
        return self._tok

    @property
    def pad_token(self) -> str:
        """What rows are padded with: the base's own, or the stand-in set above."""
        return str(self._tok.pad_token)

    def encode(self, texts: list[str], max_len: int, end: bool = False) -> torch.Tensor:
        """end: each text closes with the end-of-text token, so a generator learns to stop."""
        if end and self._tok.eos_token:
            texts = [t + self._tok.eos_token for t in texts]
        enc = self._tok(
            texts, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt"
        )
        return torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1).long()

    def to_json(self) -> dict[str, Any]:
        return {"scheme": SCHEME}


def trim(x: torch.Tensor) -> torch.Tensor:
    """(N, 2, T) ids and mask → (N, 2, longest real length): a batch of short texts costs
    short-text compute, whatever max_len is."""
    longest = int(x[:, 1].sum(dim=1).max().item()) if x.shape[0] else 1
    return x[:, :, : max(longest, 1)]


class TextModel(nn.Module):
    """(N, 2, T) token ids and mask → the base's hidden states → pooled → Dropout → Linear head.
    Encoders pool by the mean over real tokens (sentence-transformers' rule, and a good one
    for BERT-style bases); decoders by their last real token, the only one that saw them all."""

    def __init__(self, backbone: nn.Module, output_dim: int, pooling: str, dropout: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        config: Any = backbone.config  # a PretrainedConfig; nn.Module types it as a tensor
        hidden = int(config.hidden_size)
        self.head = nn.Linear(hidden, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, mask = x[:, 0], x[:, 1]
        h = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state  # (N, T, D)
        if self.pooling == "last":
            last = (mask.sum(dim=1) - 1).clamp(min=0)
            pooled = h[torch.arange(h.shape[0], device=h.device), last]
        else:
            weights = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.head(self.dropout(pooled))


class VisionModel(nn.Module):
    """(N, C, H, W) pixels, as the base's processor makes them → the base's pooled features →
    Dropout → Linear head. Features: the base's pooler output when it has one (ResNet and
    ConvNeXt average their last feature map; flattened from (N, D, 1, 1)), else the class
    token of the last hidden states (ViT's classifier reads that too).

    freeze_norms: the backbone's BatchNorm layers stay in eval mode while training (see
    train): its statistics are part of what a frozen backbone is."""

    def __init__(
        self, backbone: nn.Module, output_dim: int, dropout: float, freeze_norms: bool
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.freeze_norms = freeze_norms
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_size(backbone), output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.backbone(pixel_values=x)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = out.last_hidden_state[:, 0]  # (N, T, D) → the class token (N, D)
        return self.head(self.dropout(pooled.flatten(1)))

    def train(self, mode: bool = True) -> "VisionModel":
        """A frozen backbone's BatchNorm in training mode would normalize by each batch's
        statistics and overwrite its pretrained running averages with this data's; kept in
        eval mode, it normalizes as the base was trained to, and the loop's precise-BN pass
        (worker/training/loop.py) leaves alone what training left in eval mode."""
        super().train(mode)
        if mode and self.freeze_norms:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def feature_size(backbone: nn.Module) -> int:
    """The width of what VisionModel pools, from the config: the pooler's output size (ViT's
    own pooler), a conv base's last stage width, or the hidden size."""
    config: Any = backbone.config
    pooled = getattr(config, "pooler_output_size", None)
    if getattr(backbone, "pooler", None) is not None and pooled:
        return int(pooled)
    sizes = getattr(config, "hidden_sizes", None)
    if sizes:
        return int(sizes[-1])
    hidden = getattr(config, "hidden_size", None)
    if hidden is None:
        raise ValueError(f"cannot tell the feature width of a {config.model_type} base")
    return int(hidden)


class CausalLM(nn.Module):
    """(N, 2, T) ids and mask → next-token logits (N, T, vocabulary): a decoder fine-tuned to
    continue texts. Generation calls the backbone itself (app/ml/generate.py)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.backbone(input_ids=x[:, 0], attention_mask=x[:, 1])
        logits: torch.Tensor = out.logits
        return logits


class CausalLMLoss(nn.Module):
    """Mean cross-entropy of each real token given the ones before it. y is the batch in
    stored form, (N, 2, max_len) ids and mask, cut here to the logits' length."""

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        losses, weights = self._token_losses(logits, y)
        return (losses * weights).sum() / weights.sum().clamp(min=1.0)

    def tokens(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """How many tokens the loss of this batch averages over."""
        return y[:, 1, 1 : logits.shape[1]].sum()

    @staticmethod
    def _token_losses(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = logits.shape[1]
        ids, mask = y[:, 0, 1:t], y[:, 1, 1:t].to(logits.dtype)
        predicted = logits[:, :-1].reshape(-1, logits.shape[-1])
        losses = nn.functional.cross_entropy(predicted, ids.reshape(-1), reduction="none")
        return losses, mask.reshape(-1)


def load_backbone(folder: Path) -> nn.Module:
    """The base's network without its task head, in fp32 (autocast gives mixed precision)."""
    transformers = _transformers()
    backbone: nn.Module = transformers.AutoModel.from_pretrained(
        folder, use_safetensors=True, dtype=torch.float32, **LOCAL_ONLY
    )
    return backbone


def load_vision_backbone(folder: Path) -> nn.Module:
    """A vision base's network, every weight from its folder. A ViT saved from a classifier
    has no weights for the pooler AutoModel adds: transformers would draw it at random on every
    load, which no stored version could reproduce, so it is dropped (the class token is
    pooled instead). Any other weight missing would be as random: refused (a BatchNorm's step
    count is no weight: it only counts the base's own training steps)."""
    transformers = _transformers()
    backbone, info = transformers.AutoModel.from_pretrained(
        folder, use_safetensors=True, dtype=torch.float32, output_loading_info=True, **LOCAL_ONLY
    )
    missing = sorted(k for k in info["missing_keys"] if not k.endswith("num_batches_tracked"))
    pooler = getattr(backbone, "pooler", None)
    if missing and pooler is not None and all(k.startswith("pooler.") for k in missing):
        backbone.pooler = None
    elif missing:
        raise ValueError(f"the base's weights lack {missing[:5]}: they would be random")
    result: nn.Module = backbone
    return result


def image_stats(folder: Path) -> BaseImageStats:
    """The base's own image processor settings, read (never run): from preprocessor_config.json
    through transformers (which fills in what the file leaves to the processor class's
    defaults), else from image_processor_config.json as written, else from config.json."""
    config = json.loads((folder / "config.json").read_text())
    if (folder / PROCESSOR_FILES[0]).is_file():
        processor = _transformers().AutoImageProcessor.from_pretrained(
            folder, backend="pil", **LOCAL_ONLY
        )
        return BaseImageStats.from_processor(processor.to_dict(), config)
    if (folder / PROCESSOR_FILES[1]).is_file():
        written = json.loads((folder / PROCESSOR_FILES[1]).read_text())
        return BaseImageStats.from_processor(written, config)
    return BaseImageStats.from_processor(None, config)


def load_causal_lm(folder: Path) -> nn.Module:
    transformers = _transformers()
    lm: nn.Module = transformers.AutoModelForCausalLM.from_pretrained(
        folder, use_safetensors=True, dtype=torch.float32, **LOCAL_ONLY
    )
    return lm


def build_finetune(
    folder: Path,
    output_dim: int,
    options: dict[str, Any],
    initial: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """The network a pretrained job trains: the base, a new head (a generator keeps its own),
    and the fine-tuning mode applied (frozen base, or LoRA adapters in it). initial: a warm
    start's weights (a registered version's, adapters merged), laid in before the mode."""
    family, head = Family(options["family"]), Head(options["head"])
    mode = Finetune(options["finetune"])
    dropout = float(options.get("dropout", 0.0))
    model: TextModel | CausalLM | VisionModel
    if family == Family.vision:
        # the backbone's BatchNorm is frozen with its weights: in head and lora modes
        model = VisionModel(
            load_vision_backbone(folder), output_dim, dropout, mode != Finetune.full
        )
    elif head == Head.causal_lm:
        if mode == Finetune.head:
            raise ValueError("a generator has no new head to train alone; use full or lora")
        model = CausalLM(load_causal_lm(folder))
    else:
        pooling = "last" if family == Family.text_decoder else "mean"
        model = TextModel(load_backbone(folder), output_dim, pooling, dropout)
    if initial is not None:
        model.load_state_dict(initial)
    if mode != Finetune.full:
        for param in model.backbone.parameters():
            param.requires_grad_(False)
    if mode == Finetune.lora:
        targets = _vision_targets(model.backbone) if family == Family.vision else None
        model.backbone = _with_adapters(model.backbone, options["lora"], targets)
    return model


def _with_adapters(
    backbone: nn.Module, lora: dict[str, Any], targets: list[str] | None
) -> nn.Module:
    """LoRA adapters in `targets`, or the attention projections peft knows for the base's
    model type."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], target_modules=targets
    )
    return get_peft_model(backbone, config)


def _vision_targets(backbone: nn.Module) -> list[str]:
    """The query and value projections of a vision transformer, found by their names."""
    names = {n.rsplit(".", 1)[-1] for n, m in backbone.named_modules() if isinstance(m, nn.Linear)}
    for pair in LORA_PROJECTIONS:
        if set(pair) <= names:
            return list(pair)
    model_type = getattr(backbone.config, "model_type", "?")
    raise ValueError(f"no attention projections for LoRA adapters in this {model_type} base")


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for name, p in model.named_parameters() if name.startswith(HEAD_PREFIX)]


def trainable_names(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def stored_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a version stores on top of its base: the trained weights and every buffer."""
    keep = trainable_names(model) | {name for name, _ in model.named_buffers()}
    return {k: v for k, v in model.state_dict().items() if k in keep}


def load_finetuned(
    folder: Path, output_dim: int, options: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> nn.Module:
    """A registered version: its base from `folder`, the stored weights laid over it (every
    trained weight must be there, and nothing else), adapters merged for serving speed."""
    model = build_finetune(folder, output_dim, options)
    result = model.load_state_dict(tensors, strict=False)
    missing = trainable_names(model) & set(result.missing_keys)
    if result.unexpected_keys or missing:
        unexpected = sorted(result.unexpected_keys)[:5]
        raise ValueError(
            f"stored weights do not fit the base: unexpected {unexpected}, "
            f"missing {sorted(missing)[:5]}"
        )
    if Finetune(options["finetune"]) == Finetune.lora:
        model.backbone = model.backbone.merge_and_unload()  # type: ignore[union-attr,operator]
    return model

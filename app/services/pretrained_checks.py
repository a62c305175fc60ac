"""Checks of a pretrained job spec against its base model: the base exists for the caller, its
family fits the data and the head, max_len fits its positions (a vision base: its channels the
images, LoRA its layers), and its size fits the limits.
Refused at submission with a 422 naming the field, so no worker ever gets such a job.

The job keeps the base's id, not the name it was given: a base uploaded later under the same
name never changes what a submitted job trains on."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import invalid_field
from app.core.kinds import Family, Finetune, Head, Task
from app.ml.footprint import PretrainedFootprint, pretrained_vision
from app.ml.footprint import pretrained as pretrained_footprint
from app.ml.images import BaseImageStats
from app.ml.pretrained import LORA_VISION_TYPES
from app.models import SHARED, BaseModelRow
from app.schemas.dataset import DataKind
from app.schemas.job import JobSpec
from app.services.base_model_catalog import IMAGE_INPUT_SIZE, resolve_base
from app.services.dataset_catalog import DatasetInfo
from app.services.spec_checks import optimizer_states, too_big

FAMILY_KINDS = {
    Family.text_encoder: DataKind.text,
    Family.text_decoder: DataKind.text,
    Family.vision: DataKind.image,
}
FAMILY_HEADS = {
    Family.text_encoder: {Head.classification, Head.regression},
    Family.text_decoder: {Head.classification, Head.regression, Head.causal_lm},
    Family.vision: {Head.classification, Head.regression},
}
# What a head answers, and so what a dataset must be stored for.
HEAD_TASKS = {
    Head.classification: Task.classification,
    Head.regression: Task.regression,
    Head.causal_lm: Task.generation,
}
# Vision model types whose AutoModel is not an image backbone alone, and why.
VISION_REFUSED = {
    **dict.fromkeys(
        ("clip", "siglip", "siglip2", "metaclip_2", "shieldgemma2"),
        "a model of images and text together",
    ),
    "imagegpt": "a model of pixels as tokens",
    "perceiver": "a model of many kinds of input",
    "timm_wrapper": "a wrapper of the timm library, which trainserve does not load",
}


def check_pretrained(
    session: Session, spec: JobSpec, info: DatasetInfo, settings: Settings, project: str
) -> JobSpec:
    """Every check; returns the spec with model.base pinned to the base's id."""
    assert spec.model.base is not None  # the schema requires it for arch pretrained
    base = resolve_base(session, spec.model.base, project)
    if base is None:
        raise invalid_field(
            "model.base", f"no base model '{spec.model.base}'; {_known(session, project)}"
        )
    family = Family(base.family)
    _check_family(base, family, info)
    head = _check_head(spec, family, info)
    if family == Family.vision:
        _check_vision(spec, base, info)
    else:
        _check_max_len(spec, base)
    _check_size(spec, head, base, info, settings)
    model = spec.model.model_copy(update={"base": base.id, "head": head})
    return spec.model_copy(update={"model": model})


def _check_family(base: BaseModelRow, family: Family, info: DatasetInfo) -> None:
    if FAMILY_KINDS[family] != info.kind:
        raise invalid_field(
            "model.base",
            f"'{base.name}' is a {family} base ({base.model_type}); it takes "
            f"{FAMILY_KINDS[family]} data, and the dataset holds {info.kind}",
        )


def _check_head(spec: JobSpec, family: Family, info: DatasetInfo) -> Head:
    task = spec.model.task or info.task
    head = spec.model.head or next(h for h, t in HEAD_TASKS.items() if t == task)
    if head not in FAMILY_HEADS[family]:
        fits = ", ".join(sorted(FAMILY_HEADS[family]))
        raise invalid_field("model.head", f"a {family} base takes the heads {fits}")
    if HEAD_TASKS[head] != info.task:
        raise invalid_field(
            "model.head",
            f"the {head} head needs a dataset for {HEAD_TASKS[head]}, and this one is for "
            f"{info.task}",
        )
    if spec.model.task is not None and spec.model.task != HEAD_TASKS[head]:
        raise invalid_field("model.task", f"model.task and model.head disagree ({head})")
    if head == Head.causal_lm and spec.model.finetune == Finetune.head:
        raise invalid_field(
            "model.finetune", "a generator has no new head to train alone; use full or lora"
        )
    return head


def _check_vision(spec: JobSpec, base: BaseModelRow, info: DatasetInfo) -> None:
    if base.model_type in VISION_REFUSED:
        raise invalid_field(
            "model.base",
            f"'{base.name}' is {VISION_REFUSED[base.model_type]} ({base.model_type}); "
            "trainserve fine-tunes image backbones such as ViT, ResNet and ConvNeXt",
        )
    channels = int(base.config.get("num_channels") or 3)
    if channels == 1 and info.input_shape[:1] == [3]:
        raise invalid_field("model.base", f"'{base.name}' takes grayscale images; these are RGB")
    if spec.model.finetune == Finetune.lora and base.model_type not in LORA_VISION_TYPES:
        raise invalid_field(
            "model.finetune",
            f"'{base.name}' is a {base.model_type} base, without the attention projections "
            "LoRA adapters go in; use full or head",
        )


def _check_max_len(spec: JobSpec, base: BaseModelRow) -> None:
    positions = base.config.get("max_position_embeddings") or base.config.get("n_positions")
    if positions is not None and spec.model.max_len > int(positions):
        raise invalid_field(
            "model.max_len", f"'{base.name}' reads at most {positions} tokens per text"
        )


def _check_size(
    spec: JobSpec, head: Head, base: BaseModelRow, info: DatasetInfo, settings: Settings
) -> None:
    footprint = _footprint(spec, head, base, info)
    if footprint.parameters > settings.max_model_parameters:
        message = (
            f"'{base.name}' has {footprint.parameters:,} parameters, more than the "
            f"{settings.max_model_parameters:,} allowed (TRAINSERVE_MAX_MODEL_PARAMETERS)"
        )
        raise too_big(
            "model.base",
            message,
            "max_model_parameters",
            footprint.parameters,
            settings.max_model_parameters,
        )
    training = spec.training
    total = footprint.training_bytes(training.batch_size, optimizer_states(spec))
    if total > settings.max_training_bytes:
        message = (
            f"a training step needs about {total:,} bytes, more than the "
            f"{settings.max_training_bytes:,} allowed (TRAINSERVE_MAX_TRAINING_BYTES); a smaller "
            "batch_size (with gradient_accumulation), max_len (text), or finetune 'lora' or 'head' "
            "needs less"
        )
        raise too_big(
            "training.batch_size", message, "max_training_bytes", total, settings.max_training_bytes
        )


def _footprint(
    spec: JobSpec, head: Head, base: BaseModelRow, info: DatasetInfo
) -> PretrainedFootprint:
    outputs = info.n_classes or 1
    model = spec.model
    if Family(base.family) == Family.vision:
        # A base registered before its processor's size was recorded: its config's, or 224.
        h, w = (
            base.config.get(IMAGE_INPUT_SIZE)
            or BaseImageStats.from_processor(None, base.config).size
        )
        return pretrained_vision(
            base.parameters, base.config, (h, w), outputs, model.finetune, model.lora.r
        )
    return pretrained_footprint(
        base.parameters,
        base.config,
        model.max_len,
        outputs,
        model.finetune,
        model.lora.r,
        generates=head == Head.causal_lm,
    )


def _known(session: Session, project: str) -> str:
    names: list[Any] = list(
        session.scalars(
            select(BaseModelRow.name)
            .where(BaseModelRow.project.in_([project, SHARED]))
            .order_by(BaseModelRow.name)
            .limit(10)
        )
    )
    if not names:
        return "upload one with POST /v1/base-models"
    return f"this project can use: {', '.join(names)}"

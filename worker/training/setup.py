"""From a validated spec and prepared data to the objects the loop runs with."""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from app.datasets.raw import RawData
from app.ml import pretrained
from app.ml.bundle import ModelBundle
from app.ml.zoo import arch_options, build_model
from app.schemas.job import Arch, JobSpec, Task
from worker.data.prepare import TrainingData, prepare
from worker.training.base import Base
from worker.training.loop import LoopOptions, Precision, Scoring, Splits, Transform, random_order
from worker.training.regularize import (
    EarlyStopping,
    augment_images,
    balanced_sample_weights,
    class_weights,
)
from worker.training.schedule import ConstantLr, LrSchedule, Schedule

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def model_options(spec: JobSpec, data: TrainingData, base: Base | None) -> dict[str, Any]:
    """The arguments that rebuild the network, stored with the model."""
    if base is not None:
        model = spec.model
        return {
            "base": base.meta(),
            "family": base.family,
            "head": model.head,
            "finetune": model.finetune,
            "lora": model.lora.model_dump(),
            "dropout": model.dropout,
        }
    options = arch_options(spec.model.model_dump())
    if data.preprocessor.tokenizer is not None:
        options["num_embeddings"] = data.preprocessor.tokenizer.size
    return options


def make_model(
    spec: JobSpec,
    data: TrainingData,
    device: torch.device,
    base: Base | None,
    parent: ModelBundle | None = None,
) -> nn.Module:
    """A new network, or (warm start) the parent's weights in the same network."""
    torch.manual_seed(spec.training.seed)  # the new layers' initial weights
    options = model_options(spec, data, base)
    initial = parent.model.state_dict() if parent is not None else None
    if base is not None:
        model = pretrained.build_finetune(base.folder, data.output_dim, options, initial)
        return model.to(device)
    model = build_model(spec.model.arch, data.input_shape, data.output_dim, options)
    if initial is not None:
        model.load_state_dict(initial)  # the shapes were checked at submission
    return model.to(device)


def _parameter_groups(model: nn.Module, spec: JobSpec) -> list[dict[str, Any]]:
    """Only weights that train; a pretrained model's new head at training.head_lr."""
    head = {id(p) for p in pretrained.head_parameters(model)}
    trained = [p for p in model.parameters() if p.requires_grad]
    if spec.model.arch != Arch.pretrained or spec.training.head_lr is None:
        return [{"params": trained}]
    body = [p for p in trained if id(p) not in head]
    groups = [{"params": [p for p in trained if id(p) in head], "lr": spec.training.head_lr}]
    return ([{"params": body}] if body else []) + groups


def make_optimizer(model: nn.Module, spec: JobSpec) -> torch.optim.Optimizer:
    opt = spec.training.optimizer
    groups = _parameter_groups(model, spec)
    if opt.name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=opt.lr,
            momentum=opt.momentum,
            nesterov=opt.nesterov and opt.momentum > 0,
            weight_decay=opt.weight_decay,
        )
    cls = torch.optim.Adam if opt.name == "adam" else torch.optim.AdamW
    try:
        # One kernel for every tensor instead of a Python loop over them: a MiniLM step's
        # AdamW took 18 ms fused against 126 ms (bench/README.md, bench/finetune.py).
        return cls(groups, lr=opt.lr, weight_decay=opt.weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return cls(groups, lr=opt.lr, weight_decay=opt.weight_decay)


def make_loss(spec: JobSpec, data: TrainingData) -> nn.Module:
    if data.task == Task.generation:
        return pretrained.CausalLMLoss()
    if data.task == Task.regression:
        return nn.MSELoss()
    assert data.classes is not None
    weights = class_weights(spec.training.class_weights, data.y_train, data.classes)
    return nn.CrossEntropyLoss(
        weight=weights.to(data.y_train.device) if weights is not None else None,
        label_smoothing=spec.training.label_smoothing,
    )


def make_options(
    spec: JobSpec,
    data: TrainingData,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    device: torch.device,
) -> LoopOptions:
    training = spec.training
    return LoopOptions(
        scoring=Scoring(
            data.task,
            data.classes,
            float(data.y_scaler.std.item()) if data.y_scaler is not None else 1.0,
        ),
        epochs=training.epochs,
        batch_size=training.batch_size,
        transform=_transform(spec, data, generator),
        accumulate=training.gradient_accumulation,
        order=_order(spec, data),
        precision=_precision(spec, device),
        grad_clip=training.grad_clip,
        schedule=_schedule(spec, data, optimizer),
        early_stopping=EarlyStopping(training.early_stopping) if training.early_stopping else None,
    )


def _order(spec: JobSpec, data: TrainingData) -> Callable[[int, torch.Generator], torch.Tensor]:
    if spec.training.resample != "balanced" or data.task != Task.classification:
        return random_order
    # Against class imbalance: every class drawn equally often, rows of rare ones repeating.
    weights = balanced_sample_weights(data.y_train, data.output_dim).cpu()

    def balanced(n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.multinomial(weights, n, replacement=True, generator=generator)

    return balanced


def _precision(spec: JobSpec, device: torch.device) -> Precision:
    precision = Precision(AUTOCAST[spec.training.precision])
    if spec.training.precision == "fp16" and device.type == "cuda":
        precision.scaler = torch.amp.GradScaler("cuda")
    return precision


def _schedule(spec: JobSpec, data: TrainingData, optimizer: torch.optim.Optimizer) -> Schedule:
    training = spec.training
    if training.schedule.name == "none" and not training.schedule.warmup_epochs:
        return ConstantLr()
    rows_per_step = training.batch_size * training.gradient_accumulation
    steps_per_epoch = math.ceil(data.x_train.shape[0] / rows_per_step)
    return LrSchedule(optimizer, training.schedule, training.epochs, steps_per_epoch)


def _transform(spec: JobSpec, data: TrainingData, generator: torch.Generator) -> Transform:
    pre, augment = data.preprocessor, spec.training.augment
    if isinstance(pre.tokenizer, pretrained.BaseTokenizer):
        # Stored padded to max_len; each batch is cut to its longest text, as predict cuts it.
        return lambda x, _train: pre.batch(x)
    if pre.kind != "image":
        return lambda x, _train: x  # tabular and text rows are stored as model input

    def image_batch(x: torch.Tensor, train: bool) -> torch.Tensor:
        if train and (augment.flip or augment.crop_padding):
            x = augment_images(x, augment, generator)
        return pre.batch(x)

    return image_batch


def stateful_parts(opts: LoopOptions) -> dict[str, Any]:
    """The loop's pieces whose state a checkpoint must carry for an exact resume."""
    parts: dict[str, Any] = {}
    if isinstance(opts.schedule, LrSchedule):
        parts["schedule"] = opts.schedule
    if opts.early_stopping is not None:
        parts["early_stopping"] = opts.early_stopping
    if opts.precision.scaler.is_enabled():
        parts["scaler"] = opts.precision.scaler
    return parts


@dataclass
class Assembly:
    """Everything one training run needs, built from a spec and raw data; no I/O."""

    data: TrainingData
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    generator: torch.Generator
    opts: LoopOptions

    @property
    def splits(self) -> Splits:
        d = self.data
        return Splits(d.x_train, d.y_train, d.x_val, d.y_val)


def assemble(
    spec: JobSpec,
    raw: RawData,
    device: torch.device,
    base: Base | None = None,
    parent: ModelBundle | None = None,
) -> Assembly:
    """parent: a warm start's version, whose weights and preprocessing the run continues."""
    data = prepare(spec, raw, base.folder if base is not None else None, parent).to(device)
    model = make_model(spec, data, device, base, parent)
    optimizer = make_optimizer(model, spec)
    generator = torch.Generator().manual_seed(spec.training.seed)
    opts = make_options(spec, data, optimizer, generator, device)
    return Assembly(data, model, optimizer, make_loss(spec, data), generator, opts)

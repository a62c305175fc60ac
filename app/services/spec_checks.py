"""Checks of a job spec against its dataset and the running workers: everything the schema
alone cannot see, refused at submission (422 naming the field) so no worker ever gets it."""

import math
from typing import Any

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import Unprocessable, invalid_field
from app.core.kinds import IMAGE_ARCHS, Arch, Task
from app.core.pools import pool_key, pool_label
from app.ml.footprint import Footprint, estimate
from app.ml.zoo import arch_options
from app.schemas.dataset import DataKind
from app.schemas.job import JobSpec, TrainingConfig
from app.services import workers
from app.services.dataset_catalog import DatasetInfo

ARCH_KINDS = {
    Arch.mlp: {DataKind.tabular, DataKind.image},
    Arch.cnn: {DataKind.image},
    Arch.resnet: {DataKind.image},
    Arch.text: {DataKind.text},
    Arch.pretrained: {DataKind.text, DataKind.image},  # which one: the base's family decides
}
CLASSIFICATION_METRICS = {
    "val_loss",
    "val_accuracy",
    "val_precision_macro",
    "val_recall_macro",
    "val_f1_macro",
    "train_loss",
}
REGRESSION_METRICS = {"val_loss", "val_mse", "val_mae", "val_r2", "train_loss"}
GENERATION_METRICS = {"val_loss", "val_perplexity", "train_loss"}
# The field to make smaller when the weights are too many, and when one row's activations are
SIZE_FIELDS = {
    Arch.mlp: "model.hidden",
    Arch.cnn: "model.channels",
    Arch.resnet: "model.width",
    Arch.text: "model.embed_dim",
}
ROW_FIELDS = SIZE_FIELDS | {Arch.text: "model.max_len"}


def check_fit(
    spec: JobSpec, kind: DataKind, task: Task, classes: list[Any] | None, name: str
) -> None:
    """The spec's arch, task and training options against the dataset's kind and labels."""
    arch = Arch(spec.model.arch)
    if kind not in ARCH_KINDS[arch]:
        raise invalid_field(
            "model.arch",
            f"'{arch}' cannot train on {kind} data ('{name}'); "
            f"use {' or '.join(sorted(a for a, kinds in ARCH_KINDS.items() if kind in kinds))}",
        )
    effective = spec.model.task or task
    if effective == Task.classification and task == Task.regression:
        raise invalid_field("model.task", f"'{name}' has a continuous target; use regression")
    _check_generation(arch, effective, task, name)
    training = spec.training
    images = arch in IMAGE_ARCHS or (arch == Arch.pretrained and kind == DataKind.image)
    if (training.augment.flip or training.augment.crop_padding) and not images:
        raise invalid_field(
            "training.augment",
            "image augmentation needs an image model (cnn, resnet, or a pretrained vision base)",
        )
    if effective != Task.classification:
        _refuse_for_regression(spec)
    elif classes is not None:
        _check_class_weights(training.class_weights, classes)
    _check_early_stopping(spec, effective)


def _check_generation(arch: Arch, effective: Task, task: Task, name: str) -> None:
    """A corpus (format text) trains a generator, a pretrained decoder, and nothing else."""
    if (effective == Task.generation) == (task == Task.generation):
        if task == Task.generation and arch != Arch.pretrained:
            raise invalid_field(
                "model.arch",
                f"'{name}' is a corpus to generate from: fine-tune a pretrained decoder "
                "(arch pretrained, head causal-lm)",
            )
        return
    if task == Task.generation:
        raise invalid_field("model.task", f"'{name}' is a corpus without labels: generation only")
    raise invalid_field("model.task", "generation needs a corpus (dataset format text)")


def _refuse_for_regression(spec: JobSpec) -> None:
    if spec.training.class_weights is not None:
        raise invalid_field("training.class_weights", "class weights need a classification task")
    if spec.training.resample != "none":
        raise invalid_field("training.resample", "resampling by class needs a classification task")
    if spec.training.label_smoothing:
        raise invalid_field(
            "training.label_smoothing", "label smoothing needs a classification task"
        )


def _check_class_weights(weights: Any, classes: list[Any]) -> None:
    if isinstance(weights, list) and len(weights) != len(classes):
        raise invalid_field(
            "training.class_weights",
            f"give {len(classes)} weights, one per class, got {len(weights)}",
        )
    if isinstance(weights, dict):
        unknown = sorted(set(weights) - {str(c) for c in classes})
        if unknown:
            raise invalid_field(
                "training.class_weights", f"unknown class labels: {', '.join(unknown[:5])}"
            )
    values = (
        weights.values()
        if isinstance(weights, dict)
        else weights
        if isinstance(weights, list)
        else []
    )
    if any(w < 0 for w in values):
        raise invalid_field("training.class_weights", "weights must not be negative")


def _check_early_stopping(spec: JobSpec, task: Task) -> None:
    stopping = spec.training.early_stopping
    if stopping is None:
        return
    known = {
        Task.classification: CLASSIFICATION_METRICS,
        Task.regression: REGRESSION_METRICS,
        Task.generation: GENERATION_METRICS,
    }[task]
    if stopping.metric not in known:
        raise invalid_field(
            "training.early_stopping.metric", f"choose one of {', '.join(sorted(known))}"
        )
    if stopping.metric != "train_loss" and spec.training.validation_split <= 0:
        raise invalid_field(
            "training.early_stopping",
            "early stopping on a validation metric needs validation_split > 0",
        )


def check_workers(session: Session, pool: str | None, device: str) -> None:
    """A job is refused when no live worker could run it: a named pool needs a live worker
    of its own, and a CUDA job a live worker with a GPU in its pool (named or default). The
    default pool with no worker at all is accepted, and waits in the queue, as it always
    did (`trainserve up` starts its workers after the API, tests submit before)."""
    key = pool_key(pool)
    if key is not None and key not in (pools := workers.live_pools(session)):
        raise invalid_field(
            "training.pool",
            f"no live worker in pool '{key}'; live pools: {workers.describe(pools)}",
        )
    if device != "cuda":
        return
    gpus = workers.live_pools(session, cuda=True)
    if pool_label(key) not in gpus:
        where = f"in pool '{pool_label(key)}'"
        elsewhere = f"; pools with one: {workers.describe(gpus)}" if gpus else ""
        raise invalid_field(
            "training.device",
            f"no running worker has a CUDA GPU {where}; use 'auto' or 'cpu'{elsewhere}",
        )


def check_devices(session: Session, training: TrainingConfig, max_cpu_ranks: int) -> None:
    """A data-parallel job (devices > 1) needs a live worker of its pool with that many
    ranks: one GPU each on a CUDA worker, or up to max_cpu_ranks processes on a CPU (which
    any worker has, for a job whose device is 'cpu' or 'auto')."""
    n = training.devices
    if n == 1:
        return
    check_batch_split(training)
    gpus = workers.live_gpu_counts(session, pool_key(training.pool))
    cpu_ranks = 0 if training.device == "cuda" else max_cpu_ranks
    most = max([cpu_ranks, *(g for g in gpus if training.device != "cpu")])
    if n <= most:
        return
    pool = pool_label(pool_key(training.pool))
    gpus_said = f"the live workers of pool '{pool}' have at most {max(gpus, default=0)} CUDA GPUs"
    cpu_said = f"a CPU worker runs at most {max_cpu_ranks} ranks (TRAINSERVE_MAX_CPU_RANKS)"
    said = {"cuda": gpus_said, "cpu": cpu_said, "auto": f"{gpus_said}, and {cpu_said}"}
    raise invalid_field("training.devices", f"{n} asked for; {said[training.device]}", most=most)


def check_batch_split(training: TrainingConfig) -> None:
    """batch_size is the global batch: each of the devices ranks takes batch_size / devices
    rows a step."""
    n = training.devices
    if training.batch_size % n:
        below = training.batch_size // n * n
        fits = f"{below} or {below + n}" if below else str(n)
        raise invalid_field(
            "training.batch_size",
            f"is the global batch, split evenly across training.devices={n}: "
            f"{training.batch_size} is not a multiple of {n} (e.g. {fits})",
        )


def check_footprint(spec: JobSpec, info: DatasetInfo, settings: Settings) -> None:
    """The model's parameters, and the memory one training step needs (weights, gradients,
    optimizer state and a batch's activations, estimated from the spec and the dataset's
    shape), against TRAINSERVE_MAX_MODEL_PARAMETERS and TRAINSERVE_MAX_TRAINING_BYTES."""
    footprint = _footprint(spec, info)
    params, max_params = footprint.parameters, settings.max_model_parameters
    if params > max_params:
        message = (
            f"the model has {params:,} parameters, more than the {max_params:,} allowed "
            "(TRAINSERVE_MAX_MODEL_PARAMETERS)"
        )
        field = _size_field(spec, footprint)
        raise too_big(field, message, "max_model_parameters", params, max_params)
    training = spec.training
    states = optimizer_states(spec)
    state, limit = footprint.state_bytes(states), settings.max_training_bytes
    total = footprint.training_bytes(training.batch_size, states)
    if total <= limit:
        return
    per_row = footprint.activation_bytes_per_row
    step = f"a training step needs about {_size(total)}"
    allowed = f"more than the {_size(limit)} allowed (TRAINSERVE_MAX_TRAINING_BYTES)"
    if state >= limit:
        field = _size_field(spec, footprint)
        message = f"{step}, {allowed}; its weights, gradients and optimizer state alone take "
        message += _size(state)
    elif (fit := (limit - state) // per_row) == 0:
        field = ROW_FIELDS[Arch(spec.model.arch)]
        message = f"{step}, {allowed}; one row's activations ({_size(per_row)}) do not fit"
    else:
        field = "training.batch_size"
        message = f"{step} ({_size(per_row)} of activations per row), {allowed}; "
        message += f"at most {fit:,} rows per batch fit"
    raise too_big(field, message, "max_training_bytes", total, limit)


def optimizer_states(spec: JobSpec) -> int:
    """fp32 tensors of optimizer state per trained weight: SGD with momentum 1, Adam 2."""
    optimizer = spec.training.optimizer
    return 2 if optimizer.name != "sgd" else int(optimizer.momentum > 0)


def _footprint(spec: JobSpec, info: DatasetInfo) -> Footprint:
    model = spec.model
    options = arch_options(model.model_dump())
    shape = info.input_shape
    if model.arch == Arch.text:
        shape, options["num_embeddings"] = [model.max_len], model.vocab_size  # the most it fits
    elif model.arch == Arch.mlp:
        shape = [math.prod(shape)]  # images as pixels
    classification = (model.task or info.task) == Task.classification
    return estimate(model.arch, shape, (info.n_classes or 1) if classification else 1, options)


def _size_field(spec: JobSpec, footprint: Footprint) -> str:
    model = spec.model
    if model.arch == Arch.text and 2 * model.vocab_size * model.embed_dim > footprint.parameters:
        return "model.vocab_size"  # the embedding table is most of the model
    return SIZE_FIELDS[Arch(model.arch)]


def too_big(field: str, message: str, setting: str, estimate: int, limit: int) -> Unprocessable:
    return invalid_field(field, message, setting=setting, estimate=estimate, limit=limit)


def _size(n: int) -> str:
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB")
    power = min(int(math.log(max(n, 1), 1024)), len(units) - 1)
    return f"{n / 1024**power:.1f} {units[power]}" if power else f"{n} bytes"

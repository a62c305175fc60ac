"""The job spec (DESIGN.md: fixed names; more fields may be added) and the job's public shape."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    PositiveInt,
    Tag,
    model_validator,
)

from app.core.kinds import Arch, Finetune, Head, Task  # the spec names them (re-exported)
from app.core.pools import POOL_PATTERN

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"
# free text stored as given (key and dataset names): no control characters, no NUL
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"


def _weights_form(value: Any) -> str | None:
    if isinstance(value, str):
        return "name"
    if isinstance(value, list | tuple):
        return "list"
    return "map" if isinstance(value, dict) else None


# "balanced" weighs each class by n / (k * count); or one weight per class (list in class
# order, or {label: weight}). Told apart by the JSON type, so an error names one form's field
# (training.class_weights.list.0) instead of listing how the value fails all three.
ClassWeights = Annotated[
    Annotated[Literal["balanced"], Tag("name")]
    | Annotated[list[float], Tag("list")]
    | Annotated[dict[str, float], Tag("map")],
    Discriminator(
        _weights_form,
        custom_error_type="class_weights",
        custom_error_message="give 'balanced', a list of weights or {label: weight}",
    ),
]


class Strict(BaseModel):
    # Unknown fields are refused: a typo ("epoch") must not silently train with defaults.
    # NaN and ±Infinity are refused in every float (Python's json reads the literals): no JSON
    # column can store them (PostgreSQL refuses the row, SQLite writes null).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# DESIGN.md's example: the seed's digits MLP (builtin digits: 8x8 = 64 features, 10 classes),
# whole on JobSpec and in parts on the parts' own models.
OPTIMIZER_EXAMPLE: dict[str, JsonValue] = {
    "name": "sgd",
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 0.0,
}
TRAINING_EXAMPLE: dict[str, JsonValue] = {
    "epochs": 10,
    "batch_size": 64,
    "optimizer": OPTIMIZER_EXAMPLE,
    "validation_split": 0.1,
    "seed": 0,
}
MODEL_EXAMPLE: dict[str, JsonValue] = {"arch": "mlp", "hidden": [128], "dropout": 0.0}
SPEC_EXAMPLE: dict[str, JsonValue] = {
    "model_name": "digits-mlp",
    "dataset": {"builtin": "digits"},
    "model": MODEL_EXAMPLE,
    "training": TRAINING_EXAMPLE,
}


def _examples(*examples: dict[str, JsonValue]) -> ConfigDict:
    """A model's examples in its JSON schema (tests/unit/test_openapi_doc.py validates them)."""
    return ConfigDict(json_schema_extra={"examples": list(examples)})


class DatasetRef(Strict):
    model_config = _examples({"builtin": "digits"}, {"id": "5d0c1e2a-4b7f-4a57-9c1e-0e6b1f2d3c4a"})

    builtin: str | None = Field(
        None,
        pattern=NAME_PATTERN,
        description="A builtin dataset: iris, digits, wine, breast_cancer, diabetes",
    )
    id: str | None = Field(
        None, pattern=ID_PATTERN, description="An uploaded dataset's id (POST /v1/datasets)"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> "DatasetRef":
        if (self.builtin is None) == (self.id is None):
            raise ValueError("give exactly one of 'builtin' or 'id'")
        return self


class LoraConfig(Strict):
    """Low-rank adapters (Hu et al. 2021): the update of each adapted weight is B·A of rank r,
    scaled by alpha / r."""

    model_config = _examples({"r": 8, "alpha": 16.0, "dropout": 0.05})

    r: int = Field(8, ge=1, le=256, description="The adapters' rank")
    alpha: float = Field(
        16.0, gt=0.0, le=4096.0, description="Scale: the update is scaled by alpha / r"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the adapters' input")


class ModelConfig(Strict):
    """One flat config; each arch reads its own fields (app.ml.zoo.arch_options)."""

    model_config = _examples(
        MODEL_EXAMPLE,
        {"arch": "cnn", "channels": [32, 64]},
        {"arch": "pretrained", "base": "bert-tiny", "finetune": "lora", "lora": {"r": 8}},
    )

    arch: Arch = Field(
        Arch.mlp,
        description="mlp (tabular), cnn or resnet (images), text, or pretrained (a base model)",
    )
    task: Task | None = Field(
        None, description="classification, regression or generation; default: the dataset's"
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability")
    # mlp: hidden layer sizes (the seed's 784→128→10 is hidden [128])
    hidden: list[PositiveInt] = Field(
        default_factory=lambda: [128], description="mlp: the hidden layers' sizes"
    )
    # cnn: conv widths (at most 4096 each), one 3x3 conv + pool per entry
    channels: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [32, 64],
        max_length=6,
        description="cnn: one 3x3 conv and a pool per entry, of this many channels",
    )
    # resnet: base width and residual blocks per stage (3 stages, width doubling)
    width: int = Field(16, ge=4, le=256, description="resnet: the first stage's width")
    depth: int = Field(2, ge=1, le=8, description="resnet: residual blocks per stage (3 stages)")
    # text: a bag of embeddings or a small transformer encoder over a learned vocabulary
    encoder: Literal["bag", "transformer"] = Field(
        "bag", description="text: a bag of embeddings, or a small transformer encoder"
    )
    embed_dim: int = Field(64, ge=8, le=1024, description="text: the embedding size")
    max_len: int = Field(
        128, ge=4, le=2048, description="text and pretrained: tokens kept per text"
    )
    vocab_size: int = Field(
        20000, ge=100, le=200000, description="text: the learned vocabulary's size"
    )
    layers: int = Field(2, ge=1, le=12, description="text, transformer: encoder layers")
    heads: int = Field(4, ge=1, le=16, description="text, transformer: attention heads")
    # pretrained: a base model (GET /v1/base-models: its name or id; the job keeps the id), what
    # it is fine-tuned to answer (default: the dataset's task), and which weights train.
    # max_len above bounds the tokens per text.
    base: str | None = Field(
        None,
        pattern=NAME_PATTERN,
        description="pretrained: a base model's name or id (GET /v1/base-models)",
    )
    head: Head | None = Field(
        None, description="pretrained: what it is fine-tuned to answer; default: the task"
    )
    finetune: Finetune = Field(
        Finetune.full,
        description="pretrained: which weights train: full, head (base frozen), lora",
    )
    lora: LoraConfig = Field(
        default_factory=LoraConfig, description="pretrained, finetune lora: the adapters"
    )

    @model_validator(mode="after")
    def _heads_divide_embedding(self) -> "ModelConfig":
        if self.arch == Arch.text and self.encoder == "transformer" and self.embed_dim % self.heads:
            raise ValueError("embed_dim must be a multiple of heads")
        return self

    @model_validator(mode="after")
    def _pretrained_names_a_base(self) -> "ModelConfig":
        if (self.arch == Arch.pretrained) != (self.base is not None):
            raise ValueError(
                "arch 'pretrained' needs model.base (a base model's name or id), and only it"
            )
        return self


class OptimizerConfig(Strict):
    model_config = _examples(
        OPTIMIZER_EXAMPLE, {"name": "adamw", "lr": 0.001, "weight_decay": 0.01}
    )

    name: Literal["sgd", "adam", "adamw"] = Field("sgd", description="The optimizer")
    lr: float = Field(0.01, gt=0.0, le=10.0, description="Learning rate")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd: momentum")
    nesterov: bool = Field(False, description="sgd: Nesterov momentum")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="L2 penalty (adamw: decoupled)")


class ScheduleConfig(Strict):
    """Learning-rate schedule, stepped per epoch (one_cycle: per step), after a linear warm-up."""

    model_config = _examples({"name": "cosine", "warmup_epochs": 1})

    name: Literal["none", "step", "cosine", "one_cycle", "plateau"] = Field(
        "none", description="The schedule; none keeps lr constant"
    )
    warmup_epochs: int = Field(0, ge=0, description="Epochs of linear warm-up from 0 to lr")
    step_size: int = Field(10, ge=1, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="step: the decay factor")
    factor: float = Field(0.1, gt=0.0, lt=1.0, description="plateau: the decay factor")
    patience: int = Field(
        5, ge=0, description="plateau: epochs without val_loss improvement before a decay"
    )
    min_lr: float = Field(0.0, ge=0.0, description="The rate never decays below this")


class AugmentConfig(Strict):
    """Image augmentation, applied to training batches only."""

    model_config = _examples({"flip": True, "crop_padding": 4})

    flip: bool = Field(False, description="Random horizontal flips")
    crop_padding: int = Field(
        0, ge=0, le=32, description="Random crops after zero padding by this many pixels"
    )


class EarlyStoppingConfig(Strict):
    model_config = _examples({"metric": "val_loss", "patience": 3})

    metric: str = Field("val_loss", max_length=64, description="The metric watched, per epoch")
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="Better is lower or higher; auto: min for losses and errors, else max"
    )
    patience: int = Field(5, ge=1, description="Epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0.0, description="The least change that is improvement")


class TrainingConfig(Strict):
    model_config = _examples(TRAINING_EXAMPLE)

    epochs: int = Field(10, ge=1, description="Passes over the training rows")
    batch_size: int = Field(64, ge=1, description="Rows per batch")
    optimizer: OptimizerConfig = Field(
        default_factory=OptimizerConfig, description="The optimizer and its settings"
    )
    schedule: ScheduleConfig = Field(
        default_factory=ScheduleConfig, description="The learning-rate schedule"
    )
    validation_split: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of the rows held out to validate each epoch"
    )
    test_split: float = Field(
        0.0, ge=0.0, lt=1.0, description="Share held out, scored once at the end (the report)"
    )
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Seeds the split, the initial weights and shuffles"
    )
    grad_clip: float | None = Field(
        None, gt=0.0, description="Clip the gradients' norm to this; none: no clipping"
    )
    gradient_accumulation: int = Field(
        1,
        ge=1,
        le=1024,
        description="Step the optimizer every this many batches, their gradients summed: "
        "an effective batch of batch_size times this in the memory of one batch",
    )
    head_lr: float | None = Field(
        None,
        gt=0.0,
        le=10.0,
        description="pretrained: the new head's learning rate (a fresh head usually wants a "
        "larger one than the weights below it); default: the optimizer's lr",
    )
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="classification: label smoothing of the loss"
    )
    class_weights: ClassWeights | None = Field(
        None,
        description="classification: weigh the loss by class: 'balanced' (n / (k * count)), "
        "a list in class order, or {label: weight}",
    )
    resample: Literal["none", "balanced"] = Field(
        "none", description="balanced: draw each class equally often"
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig, description="images: augmentation of training batches"
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        None, description="Stop when a metric stops improving; none: train every epoch"
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="bf16 and fp16: mixed precision (CUDA)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where it trains; auto: CUDA when the worker has it"
    )
    pool: str | None = Field(
        None,
        pattern=POOL_PATTERN,
        description="The worker pool to train in (`trainserve worker --pool NAME`); a named "
        "pool needs a live worker at submission; none or 'default': the default pool",
    )
    devices: int = Field(
        1,
        ge=1,
        le=64,
        description="Devices that train the job together, data parallel (one process each): "
        "a GPU each on a CUDA worker, else CPU ranks (at most TRAINSERVE_MAX_CPU_RANKS); "
        "batch_size is the global batch, split evenly across them",
    )
    strategy: Literal["ddp"] = Field(
        "ddp",
        description="How several devices share the job: ddp (DistributedDataParallel: every "
        "device holds the whole model, gradients are averaged each step); the only one so far",
    )
    compile: bool = Field(
        False, description="torch.compile the model (CUDA only; numerics may differ slightly)"
    )
    max_runtime_s: int | None = Field(
        None,
        ge=1,
        description="Wall time from the first start; past it the job checkpoints and fails "
        "with timeout",
    )

    @model_validator(mode="after")
    def _splits_leave_training_rows(self) -> "TrainingConfig":
        if self.validation_split + self.test_split >= 0.9:
            raise ValueError("validation_split + test_split must leave at least 10% to train on")
        return self


class InitRef(Strict):
    """Warm start: begin from a registered version's weights and preprocessing (a model of
    the caller's project; an alias is resolved at submission, and the job keeps the number)."""

    model_config = _examples({"model": "digits-mlp", "alias": "production"})

    model: str = Field(pattern=NAME_PATTERN, description="The registered model to begin from")
    version: int | None = Field(None, ge=1, le=2**31 - 1, description="Its version number")
    alias: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Or an alias of it"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> "InitRef":
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of 'version' or 'alias'")
        return self


class JobSpec(Strict):
    """What to train, on what, and how. Unknown fields are refused."""

    model_config = ConfigDict(json_schema_extra={"examples": [SPEC_EXAMPLE]})

    model_name: str = Field(
        pattern=NAME_PATTERN,
        description="The model the job registers a new version of",
        examples=["digits-mlp"],
    )
    dataset: DatasetRef = Field(description="A builtin dataset or an uploaded one")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The network")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="How it trains")
    init: InitRef | None = Field(
        None, description="Warm start from a registered version; none: fresh weights"
    )


class JobProgress(BaseModel):
    epoch: int = Field(0, description="Epochs done")
    epochs: int = Field(0, description="Epochs it will train (at most)")
    step: int = Field(0, description="Optimizer steps done")
    samples_per_s: float | None = Field(
        None, description="Training rows per second over the last epoch"
    )


class JobEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    time: datetime = Field(description="When it happened (UTC)")
    attempt: int = Field(description="The attempt it happened in, from 1")
    kind: str = Field(
        description="queued, claimed, checkpoint, requeued, resumed, cancel_requested, "
        "succeeded, failed, cancelled, ..."
    )
    message: str = Field(description="What happened, for a person")


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The job's id")
    model_name: str = Field(description="The model it registers a version of")
    status: str = Field(
        description="queued, running, succeeded, failed or cancelled; the last three never change"
    )
    status_message: str | None = Field(description="Why it failed or stopped, for a person")
    spec: dict[str, Any] = Field(description="The job spec, as validated (with its defaults)")
    attempt: int = Field(description="Attempts so far: a requeued job resumes as the next")
    progress: JobProgress = Field(description="How far it has trained")
    metrics: dict[str, float] = Field(description="The latest value of each metric")
    model_version: int | None = Field(description="The version it registered, once succeeded")
    created_at: datetime = Field(description="When it was submitted (UTC)")
    started_at: datetime | None = Field(description="When a worker first started it")
    finished_at: datetime | None = Field(description="When it ended")


class JobDetail(JobPublic):
    report: dict[str, Any] = Field(
        default_factory=dict,
        description="Once trained: the best epoch, confusion matrix and per-class scores, "
        "test-split metrics",
    )
    events: list[JobEventPublic] = Field(
        default_factory=list, description="What happened to it, oldest first"
    )


class JobPage(BaseModel):
    items: list[JobPublic] = Field(description="This page's jobs, newest first")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; none: last")


class MetricPoint(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    epoch: int = Field(description="The epoch it was measured after")
    step: int = Field(description="The optimizer steps done by then")
    name: str = Field(description="e.g. loss, val_loss, val_accuracy")
    value: float = Field(description="Its value")
    time: datetime = Field(description="When it was recorded (UTC)")


class DryRunResult(BaseModel):
    valid: bool = Field(description="Always true: an invalid spec is a 422")
    spec: dict[str, Any] = Field(description="The spec as it would run, with its defaults")

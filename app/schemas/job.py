"""The job spec (DESIGN.md: fixed names; more fields may be added) and the job's public shape."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PositiveInt,
    Tag,
    model_validator,
)

from app.core.kinds import Arch, Finetune, Head, Task  # the spec names them (re-exported)

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


class DatasetRef(Strict):
    builtin: str | None = Field(None, pattern=NAME_PATTERN)
    id: str | None = Field(None, pattern=ID_PATTERN)

    @model_validator(mode="after")
    def _exactly_one(self) -> "DatasetRef":
        if (self.builtin is None) == (self.id is None):
            raise ValueError("give exactly one of 'builtin' or 'id'")
        return self


class LoraConfig(Strict):
    """Low-rank adapters (Hu et al. 2021): the update of each adapted weight is B·A of rank r,
    scaled by alpha / r."""

    r: int = Field(8, ge=1, le=256)
    alpha: float = Field(16.0, gt=0.0, le=4096.0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class ModelConfig(Strict):
    """One flat config; each arch reads its own fields (app.ml.zoo.arch_options)."""

    arch: Arch = Arch.mlp
    task: Task | None = None
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # mlp: hidden layer sizes (the seed's 784→128→10 is hidden [128])
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128])
    # cnn: conv widths (at most 4096 each), one 3x3 conv + pool per entry
    channels: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [32, 64], max_length=6
    )
    # resnet: base width and residual blocks per stage (3 stages, width doubling)
    width: int = Field(16, ge=4, le=256)
    depth: int = Field(2, ge=1, le=8)
    # text: a bag of embeddings or a small transformer encoder over a learned vocabulary
    encoder: Literal["bag", "transformer"] = "bag"
    embed_dim: int = Field(64, ge=8, le=1024)
    max_len: int = Field(128, ge=4, le=2048)
    vocab_size: int = Field(20000, ge=100, le=200000)
    layers: int = Field(2, ge=1, le=12)
    heads: int = Field(4, ge=1, le=16)
    # pretrained: a base model (GET /v1/base-models: its name or id; the job keeps the id), what
    # it is fine-tuned to answer (default: the dataset's task), and which weights train.
    # max_len above bounds the tokens per text.
    base: str | None = Field(None, pattern=NAME_PATTERN)
    head: Head | None = None
    finetune: Finetune = Finetune.full
    lora: LoraConfig = Field(default_factory=LoraConfig)

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
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0.0, le=10.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)


class ScheduleConfig(Strict):
    """Learning-rate schedule, stepped per epoch (one_cycle: per step), after a linear warm-up."""

    name: Literal["none", "step", "cosine", "one_cycle", "plateau"] = "none"
    warmup_epochs: int = Field(0, ge=0)
    step_size: int = Field(10, ge=1)  # step: epochs between decays
    gamma: float = Field(0.1, gt=0.0, le=1.0)  # step: decay factor
    factor: float = Field(0.1, gt=0.0, lt=1.0)  # plateau: decay factor
    patience: int = Field(5, ge=0)  # plateau: epochs without val_loss improvement
    min_lr: float = Field(0.0, ge=0.0)


class AugmentConfig(Strict):
    """Image augmentation, applied to training batches only."""

    flip: bool = False  # random horizontal flip
    crop_padding: int = Field(0, ge=0, le=32)  # random crop after zero padding by this much


class EarlyStoppingConfig(Strict):
    metric: str = Field("val_loss", max_length=64)
    mode: Literal["auto", "min", "max"] = "auto"  # auto: min for losses and errors, else max
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0.0)


class TrainingConfig(Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    validation_split: float = Field(0.1, ge=0.0, lt=1.0)
    test_split: float = Field(0.0, ge=0.0, lt=1.0)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    grad_clip: float | None = Field(None, gt=0.0)  # max gradient norm
    # Optimizer steps every this many batches (gradients summed over them): an effective batch
    # of batch_size x gradient_accumulation in the memory of one batch.
    gradient_accumulation: int = Field(1, ge=1, le=1024)
    # pretrained: the new head's learning rate (default: the optimizer's lr); a freshly
    # initialised head usually wants a larger rate than the pretrained weights below it.
    head_lr: float | None = Field(None, gt=0.0, le=10.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    class_weights: ClassWeights | None = None
    resample: Literal["none", "balanced"] = "none"  # balanced: draw classes equally often
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    early_stopping: EarlyStoppingConfig | None = None
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False  # torch.compile the model (CUDA only; numerics may differ slightly)
    # wall time from the first start; past it the job checkpoints and fails with "timeout"
    max_runtime_s: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _splits_leave_training_rows(self) -> "TrainingConfig":
        if self.validation_split + self.test_split >= 0.9:
            raise ValueError("validation_split + test_split must leave at least 10% to train on")
        return self


class InitRef(Strict):
    """Warm start: begin from a registered version's weights and preprocessing (a model of
    the caller's project; an alias is resolved at submission, and the job keeps the number)."""

    model: str = Field(pattern=NAME_PATTERN)
    version: int | None = Field(None, ge=1, le=2**31 - 1)
    alias: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

    @model_validator(mode="after")
    def _exactly_one(self) -> "InitRef":
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of 'version' or 'alias'")
        return self


class JobSpec(Strict):
    model_name: str = Field(pattern=NAME_PATTERN)
    dataset: DatasetRef
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    init: InitRef | None = None


class JobProgress(BaseModel):
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    samples_per_s: float | None = None


class JobEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    time: datetime
    attempt: int
    kind: str
    message: str


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    model_name: str
    status: str
    status_message: str | None
    spec: dict[str, Any]
    attempt: int
    progress: JobProgress
    metrics: dict[str, float]
    model_version: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobDetail(JobPublic):
    # the best epoch, confusion matrix and per-class scores, test-split metrics
    report: dict[str, Any] = Field(default_factory=dict)
    events: list[JobEventPublic] = Field(default_factory=list)


class JobPage(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None


class MetricPoint(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    epoch: int
    step: int
    name: str
    value: float
    time: datetime


class DryRunResult(BaseModel):
    valid: bool
    spec: dict[str, Any]

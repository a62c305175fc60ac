"""The API's public shapes, as the JSON the server sends (app/schemas on the server side).

TypedDicts, not classes: a value is the decoded JSON itself, so a field the server adds later
is there to read without a new client. Times are ISO 8601 strings, as sent.
"""

from typing import Any, Generic, Literal, NotRequired, TypedDict, TypeVar

T = TypeVar("T")

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class Page(TypedDict, Generic[T]):
    items: list[T]
    next_cursor: str | None


class JobProgress(TypedDict):
    epoch: int
    epochs: int
    step: int
    samples_per_s: float | None


class Job(TypedDict):
    """POST /v1/jobs, GET /v1/jobs (each item), POST /v1/jobs/{id}/cancel."""

    id: str
    model_name: str
    status: JobStatus
    status_message: str | None
    spec: dict[str, Any]
    attempt: int
    progress: JobProgress
    metrics: dict[str, float]
    model_version: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None


class JobEventRecord(TypedDict):
    """One entry of a job's recorded history (JobDetail.events)."""

    time: str
    attempt: int
    kind: str
    message: str


class JobDetail(Job):
    """GET /v1/jobs/{id}: the job, its report (best epoch, confusion matrix, test metrics)
    and its history."""

    report: dict[str, Any]
    events: list[JobEventRecord]


class JobEvent(TypedDict):
    """One message of GET /v1/jobs/{id}/events. `event` is status, event, metrics or end;
    `id` is the stream position (None on end); `data` is the message's JSON:
    status/event {"kind", "attempt", "message", "time"} (status adds "status"),
    metrics {"epoch", "step", "metrics"}, end {"status", "status_message", "model_version"}."""

    id: str | None
    event: str
    data: dict[str, Any]


class MetricPoint(TypedDict):
    epoch: int
    step: int
    name: str
    value: float
    time: str


class DryRun(TypedDict):
    """POST /v1/jobs?dry_run=true: the spec as the server would run it, defaults filled in."""

    valid: bool
    spec: dict[str, Any]


class Dataset(TypedDict):
    id: str
    name: str
    format: str
    kind: str
    task: str
    schema: dict[str, Any]
    sha256: str
    size_bytes: int
    created_at: str


class BaseModelFile(TypedDict):
    path: str
    bytes: int
    sha256: str


class BaseModel(TypedDict):
    """A pretrained Hugging Face folder that jobs fine-tune (GET /v1/base-models)."""

    id: str
    name: str
    family: str
    model_type: str
    parameters: int
    sha256: str
    size_bytes: int
    files: list[BaseModelFile]
    read_only: bool
    created_at: str


class ModelSummary(TypedDict):
    """GET /v1/models (each item)."""

    name: str
    project: str
    latest_version: int | None
    created_at: str


class ModelVersion(TypedDict):
    """A registered version and its lineage."""

    model_name: str
    project: str
    version: int
    job_id: str
    task: str
    spec: dict[str, Any]
    dataset: dict[str, Any]
    metrics: dict[str, Any]
    classes: list[Any] | None
    input_shape: list[int]
    checkpoint_sha256: str
    parent: dict[str, Any] | None
    created_at: str


class Model(TypedDict):
    """GET /v1/models/{name}: its aliases ({"production": 3}) and every version."""

    name: str
    project: str
    created_at: str
    aliases: dict[str, int]
    versions: list[ModelVersion]


class Alias(TypedDict):
    model_name: str
    alias: str
    version: int


class Prediction(TypedDict):
    """POST /v1/models/{name}/predict. No probabilities for a regression."""

    model_name: str
    model_version: int
    job_id: str
    predictions: list[Any]
    probabilities: NotRequired[list[list[float]]]


class Generation(TypedDict):
    """POST /v1/models/{name}/generate, and the totals that end a stream."""

    model_name: str
    model_version: int
    text: str
    tokens: int
    prompt_tokens: int
    finish_reason: str


class Token(TypedDict):
    """One token of a streamed generation: its position, its id, and the text it adds."""

    index: int
    token: int
    text: str


class Key(TypedDict):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    project: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class Worker(TypedDict):
    """A worker node (GET /v1/workers, admin): state is live, draining or gone."""

    id: str
    hostname: str
    pool: str
    devices: list[str]
    capacity: int
    running: list[str]
    state: str
    started_at: str
    last_seen: str


class KeyCreated(Key):
    """The answer to POST /v1/keys: `key` is the secret, shown this once."""

    key: str

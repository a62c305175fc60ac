"""One typed Settings object, read from TRAINSERVE_* environment variables."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.pools import POOL_PATTERN


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINSERVE_", extra="ignore")

    data_dir: Path = Field(
        Path(".trainserve"),
        description="Folder of the embedded SQLite database, the embedded broker's messages, "
        "and, unless TRAINSERVE_ARTIFACT_STORE names another store, the artifacts (datasets, "
        "checkpoints, model versions); a relative path is taken from the working directory. "
        "Hosts share it only on the embedded defaults; with PostgreSQL, Redis and an S3 store, "
        "each host has its own (read cache, staging, exports).",
    )
    # Empty means the embedded default: SQLite / a filesystem broker under data_dir.
    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the database, e.g. `postgresql+psycopg://user@host:5432/"
        "trainserve`. Empty: an SQLite file under the data dir.",
    )
    db_pool_size: int = Field(
        10,
        ge=1,
        le=1000,
        description="PostgreSQL: connections each process keeps open (SQLAlchemy's pool_size). "
        "Each API process and each worker process holds up to db_pool_size + "
        "db_max_overflow; docs/scaling.md counts them against the server's max_connections.",
    )
    db_max_overflow: int = Field(
        20,
        ge=0,
        le=1000,
        description="PostgreSQL: connections a process may open past db_pool_size at a peak, "
        "closed again when returned.",
    )
    broker_url: str = Field(
        "",
        description="Celery broker URL, e.g. `redis://127.0.0.1:6379/0`. Empty: the embedded "
        "filesystem broker under the data dir, which needs no server (Redis is the choice for "
        "real load).",
    )
    api_key: str | None = Field(
        None,
        description="An admin key with this value is created at start-up if missing; once "
        "revoked it stays revoked (start-up logs a warning). Unset, `trainserve up` creates an "
        "admin key when none exists, prints it once and writes it to `DATA_DIR/admin.key`.",
    )

    # Kombu's filesystem transport takes about one message per poll (DESIGN.md): keep it short.
    broker_polling_interval_s: float = Field(
        0.1,
        gt=0,
        le=5,
        description="Seconds between polls of the embedded filesystem broker, which delivers "
        "about one message per poll. Not used with `BROKER_URL`.",
    )
    queue_name: str = Field(
        "trainserve",
        description="Celery queue that job messages go to; a pool's jobs go to "
        "`<QUEUE_NAME>.pool.<pool>`.",
    )
    worker_pool: str | None = Field(
        None,
        pattern=POOL_PATTERN,
        description="The pool a worker takes jobs from (`trainserve worker --pool` sets it); "
        "unset: the default pool, jobs without `training.pool`.",
    )

    # A running job's worker renews its lease every heartbeat_s from a thread of its own,
    # whatever training is doing; a lease that lapsed (on the database's clock) means the
    # worker is gone. A SIGKILLed worker's job resumes within about lease_s + reaper_interval_s.
    lease_s: float = Field(
        10.0,
        ge=1,
        description="Seconds a running job's lease lasts, on the database's clock; a job whose "
        "lease lapsed has lost its worker and is requeued, resuming from its last checkpoint.",
    )
    heartbeat_s: float = Field(
        1.0,
        gt=0,
        description="Seconds between a worker's renewals of its job's lease (from a thread of "
        "its own, whatever training is doing); at most a third of `LEASE_S`, else start-up "
        "fails.",
    )
    # The reaper: requeues jobs whose lease lapsed (up to max_attempts), and sends again the
    # message of a job still queued after requeue_after_s while a worker is idle (a lost
    # message; duplicates are dropped before they take a process).
    reaper_interval_s: float = Field(
        2.0,
        gt=0,
        description="Seconds between the reaper's rounds: it requeues jobs whose lease lapsed "
        "and resends lost messages. A killed worker's job resumes within about `LEASE_S` + "
        "`REAPER_INTERVAL_S`.",
    )
    requeue_after_s: float = Field(
        60.0,
        gt=0,
        description="Seconds a job may stay queued before its message is sent again (only "
        "while a live worker has room).",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description="Attempts per job; a job that lost its worker this many times fails.",
    )
    max_job_runtime_s: int = Field(
        7 * 24 * 3600,
        ge=1,
        description="Seconds of wall time a job may run from its first start, and the most its "
        "`training.max_runtime_s` may ask for (422 above it); past it the job checkpoints and "
        "fails with `timeout`.",
    )
    max_active_jobs_per_project: int = Field(
        50,
        ge=1,
        description="Queued + running jobs of one project; a submission beyond it is a 429 "
        "(exactly, also for submissions arriving at once).",
    )

    # Explicit limits, enforced with a clear error.
    max_epochs: int = Field(1000, ge=1, description="`training.epochs` of a job (422 above it).")
    max_batch_size: int = Field(
        65536, ge=1, description="`training.batch_size` of a job (422 above it)."
    )
    max_hidden_units: int = Field(
        16384, ge=1, description="Units of each `model.hidden` layer of a job (422 above it)."
    )
    max_hidden_layers: int = Field(
        16, ge=1, description="Entries of a job's `model.hidden` (422 above it)."
    )
    # What one job's model may cost, estimated at submission (app/ml/footprint.py): its
    # parameters, and the memory of a training step (fp32 weights, gradients and optimizer
    # state, plus one batch's activations). 1 G parameters is 16 GB with Adam's state; 32 GiB
    # fits a large GPU or a server's RAM. Lower them to what the workers have.
    max_model_parameters: int = Field(
        1_000_000_000,
        ge=1,
        description="Parameters of a job's model, counted at submission from the spec and the "
        "dataset's shape (422 naming `model.hidden`, `model.channels`, `model.width`, "
        "`model.embed_dim` or `model.vocab_size`). Lower it to what the workers have.",
    )
    max_training_bytes: int = Field(
        32 * 1024**3,
        ge=1,
        description="Bytes of a training step's memory, estimated at submission: fp32 weights, "
        "gradients and optimizer state (SGD with momentum 1, Adam 2 per weight) plus one "
        "batch's activations, attention matrices included. 422 naming `training.batch_size` "
        "with the largest batch that fits, or the model field when the weights or one row "
        "alone do not fit. Lower it to what the workers have.",
    )
    max_predict_rows: int = Field(
        4096,
        ge=1,
        description="Rows per predict request, and a V2 tensor's `shape[0]`, checked before "
        "anything is built (413 `too_many_rows`).",
    )
    # Pixels of the PNG/JPEG images in one predict request, summed, read from each image's
    # header before it is decoded: a few KB of PNG can decode to 81 M pixels.
    max_predict_pixels: int = Field(
        16 * 1024 * 1024,
        ge=1,
        description="Pixels of the PNG/JPEG images in one predict request, summed, read from "
        "each image's header before it is decoded (413 `too_many_pixels`).",
    )
    max_request_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Bytes of a predict or infer request body (413).",
    )
    # Every other JSON body (a job spec, an alias, a key, a prompt) is small; parsed and
    # validated it costs ~100x its size (a body of unknown keys is one error each), so it
    # gets a bound of its own well below predict's.
    max_json_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Bytes of any other request body but a dataset or base model upload: a "
        "job spec, an alias, a key, a prompt (413).",
    )
    model_cache_size: int = Field(
        16,
        ge=1,
        description="Model versions kept loaded for predict per API process (least recently "
        "used first out).",
    )
    model_cache_bytes: int = Field(
        2 * 1024**3,
        ge=1,
        description="Bytes of the loaded versions' tensors kept per API process (least "
        "recently used first out).",
    )
    # Dynamic batching: a forward pass takes up to batch_max_rows rows, waiting at most
    # batch_max_delay_ms for them; at most predict_queue_rows rows wait per model (then 503).
    batch_max_rows: int = Field(
        64, ge=1, description="Rows of one forward pass of dynamic batching, per model version."
    )
    batch_max_delay_ms: float = Field(
        2.0,
        ge=0,
        description="Milliseconds a batch waits for more rows, counted from the arrival of its "
        "oldest row (not at all when nothing else is on its way).",
    )
    predict_queue_rows: int = Field(
        16384, ge=1, description="Rows waiting per model version (503 beyond)."
    )
    predict_timeout_s: float = Field(
        30.0, gt=0, description="Seconds a predict request waits for its answer (then 503)."
    )
    # Where predict runs: "auto" is the GPU when torch sees one, else the CPU.
    serve_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where predict runs: `auto` (the GPU when torch sees one, else the CPU), "
        "`cpu`, or `cuda` (refused at start without a GPU).",
    )
    # Generation (POST /v1/models/{name}/generate): tokens in a prompt, tokens one request may
    # ask for, and generations running at once per API process (beyond: 429).
    max_prompt_tokens: int = Field(
        1024, ge=1, description="Tokens of a generation request's prompt (422 above it)."
    )
    max_new_tokens: int = Field(
        512, ge=1, description="New tokens one generation request may ask for (422 above it)."
    )
    max_concurrent_generations: int = Field(
        4,
        ge=1,
        description="Generations running at once per API process (429 with `Retry-After` beyond).",
    )
    # How long an API process trusts a key or an alias it read for predict (app/serving/lookup.py);
    # changes made through the process itself are seen at once. 0: look up on every request.
    predict_cache_s: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="Seconds an API process trusts a key or a name → version it read for "
        "predict; changes made through the process itself are seen at once (0: read every "
        "time).",
    )
    # uvicorn's line per request. Off by default: at predict rates it cost ~13% of a request's
    # CPU, and /metrics counts requests per route and status.
    access_log: bool = Field(
        False,
        description="uvicorn's log line per request (it costs ~13% of a small predict's CPU; "
        "`/metrics` counts requests anyway).",
    )
    # /metrics takes a key with the metrics (or admin) scope. Open: it takes none, and its
    # per-model series are summed over models, so it names no project's models.
    metrics_open: bool = Field(
        False,
        description="`/metrics` without a key (else a key with the metrics or admin scope); "
        "its per-model series are then summed over models, so it names no project's models.",
    )
    # FastAPI's own OpenTelemetry spans and metrics, for a provider you configure (app/main.py).
    otel: bool = Field(
        False,
        description="FastAPI's own OpenTelemetry spans and metrics, for a provider you configure.",
    )
    checkpoints_kept: int = Field(3, ge=1, description="Training checkpoints kept per job.")

    # Data parallel (training.devices > 1): a CUDA worker runs one rank per GPU it sees; a
    # CPU has no devices to count, so ranks there are processes sharing its cores, bounded here.
    max_cpu_ranks: int = Field(
        4,
        ge=1,
        le=64,
        description="The most ranks a data-parallel job (`training.devices`) may run on a CPU "
        "worker, one process each, sharing its cores. Read at submission (422 above it when no "
        "live worker of the pool has that many GPUs) and by the worker; give the API and the "
        "workers the same value.",
    )
    ddp_timeout_s: float = Field(
        300.0,
        ge=5,
        description="Seconds the ranks of a data-parallel job wait for each other: to start, "
        "and at each collective. A rank that hangs fails the attempt after this long; one "
        "that dies fails it at once.",
    )

    # Dataset uploads. A file is refused with 413 past these, before anything is kept.
    max_upload_bytes: int = Field(
        256 * 1024 * 1024, ge=1, description="Bytes of a dataset upload (413)."
    )
    max_dataset_rows: int = Field(1_000_000, ge=1, description="Rows of an uploaded dataset (413).")
    max_dataset_columns: int = Field(
        10_000,
        ge=1,
        description="Feature columns of an uploaded dataset, counted after one-hot encoding (413).",
    )
    max_classes: int = Field(10_000, ge=2, description="Classes of an uploaded dataset (413).")
    max_zip_files: int = Field(100_000, ge=1, description="Entries of an images-zip upload (413).")
    max_zip_uncompressed_bytes: int = Field(
        2 * 1024 * 1024 * 1024,
        ge=1,
        description="Bytes of an images-zip upload once unpacked (413).",
    )
    max_image_size: int = Field(
        256,
        ge=4,
        le=4096,
        description="Pixels a side of a dataset's images: the most an images-zip upload's "
        "`image_size` or an npz upload's images may be (422).",
    )
    # The decoded arrays (rows x features floats, N x C x H x W pixels, padded texts) must fit
    # in a worker's memory: a small file can still decode to something huge.
    max_dataset_bytes: int = Field(
        4 * 1024 * 1024 * 1024,
        ge=1,
        description="Bytes of an uploaded dataset once decoded into arrays (413).",
    )

    # Pretrained base models (Hugging Face folders; app/base_models). An uploaded archive is
    # refused past these: its bytes on the wire, its files, and its bytes once unpacked.
    max_base_model_upload_bytes: int = Field(
        4 * 1024**3, ge=1, description="Bytes of a base model upload on the wire (413)."
    )
    max_base_model_files: int = Field(
        256, ge=1, description="Files in a base model's archive or folder (413)."
    )
    max_base_model_bytes: int = Field(
        8 * 1024**3, ge=1, description="Bytes of a base model once unpacked (413)."
    )
    # Operator-provided base models: each subfolder is one, read-only and visible to every
    # project. Nothing is ever downloaded.
    base_models_dir: Path | None = Field(
        None,
        description="Operator-provided base models, one per subfolder, read-only and shared by "
        "every project (the workers need the same folder). Nothing is ever downloaded.",
    )

    # Below this much free space under data_dir, /readyz says not ready (storage "low").
    min_free_bytes: int = Field(
        256 * 1024 * 1024,
        ge=0,
        description="Bytes of free space under the data dir below which `/readyz` says not "
        "ready (storage `low`).",
    )
    # A job that ran out of disk goes back to the queue and is tried again this much later,
    # resuming from its last checkpoint; once its attempts are spent it fails as storage_full.
    storage_retry_s: float = Field(
        30.0,
        ge=0,
        description="Seconds after which a job that ran out of disk is tried again, resuming "
        "from its last checkpoint; once its attempts are spent it fails as `storage_full`.",
    )

    @model_validator(mode="after")
    def _heartbeats_fit_in_a_lease(self) -> "Settings":
        if self.heartbeat_s * 3 > self.lease_s:
            raise ValueError(
                f"TRAINSERVE_HEARTBEAT_S ({self.heartbeat_s}) must be at most a third of "
                f"TRAINSERVE_LEASE_S ({self.lease_s}): a lease must outlive a missed renewal"
            )
        return self

    @field_validator("data_dir", "base_models_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'trainserve.db'}"

    @property
    def broker(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def embedded_broker(self) -> bool:
        return self.broker.startswith("filesystem://")

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def uploaded_base_models_dir(self) -> Path:
        return self.data_dir / "base-models"

    def broker_transport_options(self) -> dict[str, object]:
        if not self.embedded_broker:
            return {}
        folder = str(self.broker_dir)
        return {
            "data_folder_in": folder,
            "data_folder_out": folder,
            "control_folder": str(self.data_dir / "broker-control"),
            "store_processed": False,
            "polling_interval": self.broker_polling_interval_s,
        }

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.artifacts_dir):
            path.mkdir(parents=True, exist_ok=True)
        if self.embedded_broker:
            self.broker_dir.mkdir(parents=True, exist_ok=True)
            (self.data_dir / "broker-control").mkdir(parents=True, exist_ok=True)

    # The artifact store (app/storage).
    artifact_store: str = Field(
        "",
        description="Where datasets, checkpoints and model bundles are kept: empty for "
        "DATA_DIR/artifacts, an absolute folder every host mounts, or s3://bucket/prefix (AWS "
        "S3, MinIO, Ceph, R2; endpoint and credentials from AWS_ENDPOINT_URL, "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION). Every host of one deployment "
        "names the same store.",
    )
    artifact_cache_bytes: int = Field(
        10 * 1024**3,
        ge=0,
        description="Each host's read cache of fetched S3 objects (DATA_DIR/artifact-cache) is "
        "kept under this many bytes, least recently used files evicted first.",
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()

"""One typed Settings object, read from TRAINSERVE_* environment variables."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINSERVE_", extra="ignore")

    data_dir: Path = Path(".trainserve")
    # Empty means the embedded default: SQLite / a filesystem broker under data_dir.
    database_url: str = ""
    broker_url: str = ""
    api_key: str | None = None

    # Kombu's filesystem transport takes about one message per poll (DESIGN.md): keep it short.
    broker_polling_interval_s: float = Field(0.1, gt=0, le=5)
    queue_name: str = "trainserve"

    # A running job's worker renews its lease every heartbeat_s from a thread of its own,
    # whatever training is doing; a lease that lapsed (on the database's clock) means the
    # worker is gone. A SIGKILLed worker's job resumes within about lease_s + reaper_interval_s.
    lease_s: float = Field(10.0, ge=1)
    heartbeat_s: float = Field(1.0, gt=0)
    # The reaper: requeues jobs whose lease lapsed (up to max_attempts), and sends again the
    # message of a job still queued after requeue_after_s while a worker is idle (a lost
    # message; duplicates are dropped before they take a process).
    reaper_interval_s: float = Field(2.0, gt=0)
    requeue_after_s: float = Field(60.0, gt=0)
    max_attempts: int = Field(3, ge=1, le=100)
    max_job_runtime_s: int = Field(7 * 24 * 3600, ge=1)
    max_active_jobs_per_project: int = Field(50, ge=1)  # queued + running; beyond: 429

    # Explicit limits, enforced with a clear error.
    max_epochs: int = Field(1000, ge=1)
    max_batch_size: int = Field(65536, ge=1)
    max_hidden_units: int = Field(16384, ge=1)
    max_hidden_layers: int = Field(16, ge=1)
    # What one job's model may cost, estimated at submission (app/ml/footprint.py): its
    # parameters, and the memory of a training step (fp32 weights, gradients and optimizer
    # state, plus one batch's activations). 1 G parameters is 16 GB with Adam's state; 32 GiB
    # fits a large GPU or a server's RAM. Lower them to what the workers have.
    max_model_parameters: int = Field(1_000_000_000, ge=1)
    max_training_bytes: int = Field(32 * 1024**3, ge=1)
    max_predict_rows: int = Field(4096, ge=1)
    # Pixels of the PNG/JPEG images in one predict request, summed, read from each image's
    # header before it is decoded: a few KB of PNG can decode to 81 M pixels.
    max_predict_pixels: int = Field(16 * 1024 * 1024, ge=1)
    max_request_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    model_cache_size: int = Field(16, ge=1)
    model_cache_bytes: int = Field(2 * 1024**3, ge=1)  # loaded versions' tensors, per API process
    # Dynamic batching: a forward pass takes up to batch_max_rows rows, waiting at most
    # batch_max_delay_ms for them; at most predict_queue_rows rows wait per model (then 503).
    batch_max_rows: int = Field(64, ge=1)
    batch_max_delay_ms: float = Field(2.0, ge=0)
    predict_queue_rows: int = Field(16384, ge=1)
    predict_timeout_s: float = Field(30.0, gt=0)
    # How long an API process trusts a key or an alias it read for predict (app/serving/lookup.py);
    # changes made through the process itself are seen at once. 0: look up on every request.
    # Where predict runs: "auto" is the GPU when torch sees one, else the CPU.
    serve_device: Literal["auto", "cpu", "cuda"] = "auto"
    # Generation (POST /v1/models/{name}/generate): tokens in a prompt, tokens one request may
    # ask for, and generations running at once per API process (beyond: 429).
    max_prompt_tokens: int = Field(1024, ge=1)
    max_new_tokens: int = Field(512, ge=1)
    max_concurrent_generations: int = Field(4, ge=1)
    predict_cache_s: float = Field(1.0, ge=0, le=3600)
    # uvicorn's line per request. Off by default: at predict rates it cost ~13% of a request's
    # CPU, and /metrics counts requests per route and status.
    access_log: bool = False
    # /metrics takes a key with the metrics (or admin) scope. Open: it takes none, and its
    # per-model series are summed over models, so it names no project's models.
    metrics_open: bool = False
    # FastAPI's own OpenTelemetry spans and metrics, for a provider you configure (app/main.py).
    otel: bool = False
    checkpoints_kept: int = Field(3, ge=1)

    # Dataset uploads. A file is refused with 413 past these, before anything is kept.
    max_upload_bytes: int = Field(256 * 1024 * 1024, ge=1)
    max_dataset_rows: int = Field(1_000_000, ge=1)
    max_dataset_columns: int = Field(10_000, ge=1)  # after one-hot encoding, too
    max_classes: int = Field(10_000, ge=2)
    max_zip_files: int = Field(100_000, ge=1)
    max_zip_uncompressed_bytes: int = Field(2 * 1024 * 1024 * 1024, ge=1)
    max_image_size: int = Field(256, ge=4, le=4096)
    # The decoded arrays (rows x features floats, N x C x H x W pixels, padded texts) must fit
    # in a worker's memory: a small file can still decode to something huge.
    max_dataset_bytes: int = Field(4 * 1024 * 1024 * 1024, ge=1)

    # Pretrained base models (Hugging Face folders; app/base_models). An uploaded archive is
    # refused past these: its bytes on the wire, its files, and its bytes once unpacked.
    max_base_model_upload_bytes: int = Field(4 * 1024**3, ge=1)
    max_base_model_files: int = Field(256, ge=1)
    max_base_model_bytes: int = Field(8 * 1024**3, ge=1)
    # Operator-provided base models: each subfolder is one, read-only and visible to every
    # project. Nothing is ever downloaded.
    base_models_dir: Path | None = None

    # Below this much free space under data_dir, /readyz says not ready (storage "low").
    min_free_bytes: int = Field(256 * 1024 * 1024, ge=0)
    # A job that ran out of disk goes back to the queue and is tried again this much later,
    # resuming from its last checkpoint; once its attempts are spent it fails as storage_full.
    storage_retry_s: float = Field(30.0, ge=0)

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

    # The artifact store (app/storage); at the end of the class to keep this edit small.
    artifact_store: str = Field(
        "",
        description="Where artifacts are kept: empty for DATA_DIR/artifacts, an absolute "
        "folder, or s3://bucket/prefix (endpoint and credentials from the AWS_* variables). "
        "Read by app.storage.store_from_url; datasets, checkpoints and bundles do not use it yet.",
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

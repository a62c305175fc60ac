"""Per-model serving metrics, on the process-wide Prometheus registry of /metrics."""

from prometheus_client import Counter, Gauge, Histogram

from app.core.prometheus import REGISTRY

ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

PREDICTS = Counter(
    "trainserve_predict_requests", "Predict requests", ["model", "status"], registry=REGISTRY
)
ROWS = Counter("trainserve_predict_rows", "Rows predicted", ["model"], registry=REGISTRY)
LATENCY = Histogram(
    "trainserve_predict_seconds",
    "Predict latency, request in to result out",
    ["model"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
BATCH_ROWS = Histogram(
    "trainserve_predict_batch_rows",
    "Rows per forward pass",
    ["model"],
    buckets=ROW_BUCKETS,
    registry=REGISTRY,
)
LOADS = Counter(
    "trainserve_model_loads", "Versions loaded into the model cache", ["model"], registry=REGISTRY
)
EVICTIONS = Counter(
    "trainserve_model_evictions",
    "Versions evicted from the model cache",
    ["model"],
    registry=REGISTRY,
)
QUEUE_ROWS = Gauge(
    "trainserve_predict_queue_rows",
    "Rows waiting for a forward pass",
    ["model"],
    registry=REGISTRY,
    multiprocess_mode="livesum",  # api --processes N: the rows waiting in all of them
)


GENERATIONS_RUNNING = Gauge(
    "trainserve_generations_running",
    "Generations running now (each holds one of TRAINSERVE_MAX_CONCURRENT_GENERATIONS)",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
GENERATED_TOKENS = Counter(
    "trainserve_generated_tokens", "Tokens generated", ["model"], registry=REGISTRY
)


def model_label(project: str | None, name: str) -> str:
    """The `model` label of a served model's series: the one place that decides what a
    per-model series is called. Names are unique only within a project, so both are in it
    (None: requests that named no model we serve)."""
    return name if project is None else f"{project}/{name}"


class ModelMetrics:
    """One model's series, looked up once: `.labels()` takes a lock and a dict lookup per call,
    and predict updates five of them per request. `model` is its model_label()."""

    def __init__(self, model: str) -> None:
        self.ok = PREDICTS.labels(model, "200")
        self.rows = ROWS.labels(model)
        self.latency = LATENCY.labels(model)
        self.batch_rows = BATCH_ROWS.labels(model)
        self.queue_rows = QUEUE_ROWS.labels(model)
        self.model = model

    def failed(self, status: int) -> None:
        PREDICTS.labels(self.model, str(status)).inc()

"""Per-model serving metrics, on the process-wide Prometheus registry of /metrics."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()
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
QUEUE_ROWS = Gauge(
    "trainserve_predict_queue_rows", "Rows waiting for a forward pass", ["model"], registry=REGISTRY
)

"""An open /metrics sums per-model series over their models (app/core/prometheus.py): the sums must
be exact (a scraper's rates and quantiles rest on them) and no tenant label may survive."""

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.core.prometheus import WithoutTenants


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(WithoutTenants(registry)).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_histograms_and_gauges_add_up_over_models_and_projects() -> None:
    registry = CollectorRegistry()
    requests = Counter("req", "r", ["model", "status"], registry=registry)
    latency = Histogram("lat", "l", ["model"], buckets=(0.1, 1.0), registry=registry)
    queued = Gauge("queued", "q", ["project", "model"], registry=registry)
    plain = Counter("plain", "p", ["route"], registry=registry)
    requests.labels("a/churn", "200").inc(3)
    requests.labels("b/churn", "200").inc(4)
    requests.labels("b/churn", "503").inc()
    for model, seconds in (("a/churn", 0.05), ("b/churn", 0.5), ("b/churn", 5.0)):
        latency.labels(model).observe(seconds)
    queued.labels("a", "x").set(2)
    queued.labels("b", "y").set(5)
    plain.labels("/v1/jobs").inc(2)

    got = samples(registry)
    assert got[("req_total", (("status", "200"),))] == 7
    assert got[("req_total", (("status", "503"),))] == 1
    assert got[("lat_bucket", (("le", "0.1"),))] == 1
    assert got[("lat_bucket", (("le", "1.0"),))] == 2
    assert got[("lat_bucket", (("le", "+Inf"),))] == 3
    assert got[("lat_count", ())] == 3 and got[("lat_sum", ())] == pytest.approx(5.55)
    assert got[("queued", ())] == 7
    assert got[("plain_total", (("route", "/v1/jobs"),))] == 2  # labels of no tenant stay
    created = [v for (name, _), v in got.items() if name == "req_created"]
    assert len(created) == 2 and all(v > 0 for v in created)
    names = {label for _, labels in got for label, _ in labels}
    assert names == {"status", "le", "route"}

"""The process's Prometheus registry, and how /metrics reads it: every process's values
under `api --processes N`, and without the labels that name tenants when it is open."""

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()
# Labels whose values name a tenant's model or project. An open /metrics
# (TRAINSERVE_METRICS_OPEN) sums them away (WithoutTenants, below), whatever values they hold.
TENANT_LABELS = frozenset({"model", "project"})


def all_processes() -> Collector:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # `api --processes N`: every process's values
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


class WithoutTenants:
    """Another collector's metrics with the tenant labels (TENANT_LABELS) summed away."""

    def __init__(self, source: Collector) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            yield _summed_over_tenants(family)


def _summed_over_tenants(family: Metric) -> Metric:
    """Counts, sums, buckets and gauges add up across models; a `_created` sample (when a
    series began) keeps the earliest. Samples keep their order, so buckets stay in order."""
    if not any(TENANT_LABELS & sample.labels.keys() for sample in family.samples):
        return family
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for sample in family.samples:
        labels = tuple((k, v) for k, v in sample.labels.items() if k not in TENANT_LABELS)
        key = (sample.name, labels)
        if key not in values:
            values[key] = sample.value
        elif sample.name.endswith("_created"):
            values[key] = min(values[key], sample.value)
        else:
            values[key] += sample.value
    summed = Metric(family.name, family.documentation, family.type, family.unit)
    for (name, labels), value in values.items():
        summed.add_sample(name, dict(labels), value)
    return summed

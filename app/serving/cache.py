"""Loaded models, kept in an LRU so each version is read from disk once.

Concurrent first requests for one version load it once: each key has its own lock, and
the map's lock is held only to look up or insert, never while a checkpoint loads.
"""

import threading
from collections import OrderedDict
from pathlib import Path

from app.core.errors import AppError
from app.ml.bundle import ModelBundle, load_bundle
from app.ml.checkpoint import CheckpointError, sha256_file
from app.serving import metrics


class ModelUnavailable(AppError):
    """A registered version whose checkpoint is missing, corrupt or altered."""

    status_code = 409
    code = "model_unavailable"


def bundle_bytes(bundle: ModelBundle) -> int:
    """What a loaded version holds in memory: its tensors (weights, buffers, preprocessing)."""
    return sum(t.numel() * t.element_size() for t in bundle.tensors().values())


class ModelCache:
    """Bounded by count and by memory: the least recently used versions go first, but the
    newest load always stays, even alone over the budget."""

    def __init__(self, capacity: int, max_bytes: int | None = None, device: str = "cpu") -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.device = device  # where loaded versions live and run
        self._sizes: dict[int, int] = {}
        self._labels: dict[int, str] = {}  # version id → model name, for the metrics
        self._models: OrderedDict[int, ModelBundle] = OrderedDict()
        self._locks: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()
        self.loads = 0
        self.evictions = 0

    def get(self, version_id: int, path: Path, sha256: str, model: str = "") -> ModelBundle:
        """`model` labels the version's loads and evictions in the metrics."""
        bundle = self._lookup(version_id)
        if bundle is not None:
            return bundle
        with self._key_lock(version_id):
            bundle = self._lookup(version_id)
            if bundle is None:
                bundle = self._load(path, sha256)
                metrics.LOADS.labels(model).inc()
                self._insert(version_id, bundle, model)
            return bundle

    def peek(self, version_id: int) -> ModelBundle | None:
        """The loaded bundle, if it is loaded (never loads)."""
        return self._lookup(version_id)

    def _lookup(self, version_id: int) -> ModelBundle | None:
        with self._lock:
            bundle = self._models.get(version_id)
            if bundle is not None:
                self._models.move_to_end(version_id)
            return bundle

    def _key_lock(self, version_id: int) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(version_id, threading.Lock())

    def _load(self, path: Path, sha256: str) -> ModelBundle:
        try:
            if path.is_file() and sha256_file(path) != sha256:
                raise CheckpointError("checkpoint does not match the sha256 the registry recorded")
            bundle = load_bundle(path, self.device)
        except CheckpointError as exc:
            raise ModelUnavailable(f"this model version cannot be loaded: {exc}") from exc
        self.loads += 1
        return bundle

    @property
    def loaded_bytes(self) -> int:
        return sum(self._sizes.values())

    def _insert(self, version_id: int, bundle: ModelBundle, model: str) -> None:
        size = bundle_bytes(bundle)
        with self._lock:
            self._models[version_id] = bundle
            self._sizes[version_id] = size
            self._labels[version_id] = model
            while len(self._models) > 1 and self._over_budget():
                evicted, _ = self._models.popitem(last=False)
                self._sizes.pop(evicted, None)
                self._locks.pop(evicted, None)
                metrics.EVICTIONS.labels(self._labels.pop(evicted, "")).inc()
                self.evictions += 1

    def _over_budget(self) -> bool:
        over_bytes = self.max_bytes is not None and self.loaded_bytes > self.max_bytes
        return len(self._models) > self.capacity or over_bytes

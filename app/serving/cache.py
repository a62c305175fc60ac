"""Loaded models, kept in an LRU so each version is read from disk once.

Concurrent first requests for one version load it once: each key has its own lock, and
the map's lock is held only to look up or insert, never while a checkpoint loads.
"""

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from app.core.errors import ModelUnavailable, Unavailable
from app.core.files import sha256_file
from app.ml.bundle import BaseFolders, ModelBundle, load_bundle
from app.ml.checkpoint import CheckpointError
from app.serving import model_metrics
from app.serving.lookup import VersionKey


def bundle_bytes(bundle: ModelBundle) -> int:
    """What a loaded version holds in memory: its tensors (weights, buffers, preprocessing),
    a fine-tuned model's base weights included."""
    tensors = [*bundle.tensors().values(), *bundle.model.state_dict().values()]
    unique = {t.data_ptr(): t.numel() * t.element_size() for t in tensors}
    return sum(unique.values())


class ModelCache:
    """Bounded by count and by memory: the least recently used versions go first, but the
    newest load always stays, even alone over the budget. Keyed by (version id, checkpoint
    sha256): a loaded model answers only for the exact version and weights it was loaded as."""

    def __init__(
        self,
        capacity: int,
        max_bytes: int | None = None,
        device: str = "cpu",
        base_folders: BaseFolders | None = None,
    ) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.device = device  # where loaded versions live and run
        self.base_folders = base_folders  # a fine-tuned version's base → its folder here
        self._sizes: dict[VersionKey, int] = {}
        self._labels: dict[VersionKey, str] = {}  # → its model as the metrics name it
        self._models: OrderedDict[VersionKey, ModelBundle] = OrderedDict()
        self._locks: dict[VersionKey, threading.Lock] = {}
        self._lock = threading.Lock()
        self.loads = 0
        self.evictions = 0

    def get(
        self, key: VersionKey, source: Path | Callable[[], Path], model: str = ""
    ) -> ModelBundle:
        """The version's bundle, loaded once: from a path, checked here against key's sha256,
        or from what source() fetches (the artifact store, which checked it), called only
        by the one request that loads it. `model` labels its loads and evictions."""
        bundle = self._lookup(key)
        if bundle is not None:
            return bundle
        with self._key_lock(key):
            bundle = self._lookup(key)
            if bundle is None:
                if callable(source):
                    bundle = self._load(source(), None)
                else:
                    bundle = self._load(source, key[1])
                model_metrics.LOADS.labels(model).inc()
                self._insert(key, bundle, model)
            return bundle

    def peek(self, key: VersionKey) -> ModelBundle | None:
        """The loaded bundle, if it is loaded (never loads)."""
        return self._lookup(key)

    def evict(self, version_id: str) -> None:
        """Forget a version (deleted): whatever weights it was loaded with."""
        with self._lock:
            for key in [k for k in self._models if k[0] == version_id]:
                self._drop(key)

    def _lookup(self, key: VersionKey) -> ModelBundle | None:
        with self._lock:
            bundle = self._models.get(key)
            if bundle is not None:
                self._models.move_to_end(key)
            return bundle

    def _key_lock(self, key: VersionKey) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def _load(self, path: Path, sha256: str | None) -> ModelBundle:
        try:
            if sha256 is not None and path.is_file() and sha256_file(path) != sha256:
                raise CheckpointError("checkpoint does not match the sha256 the registry recorded")
            bundle = load_bundle(path, self.device, self.base_folders)
        except (CheckpointError, Unavailable) as exc:
            raise ModelUnavailable(f"this model version cannot be loaded: {exc}") from exc
        self.loads += 1
        return bundle

    @property
    def loaded_bytes(self) -> int:
        return sum(self._sizes.values())

    def _insert(self, key: VersionKey, bundle: ModelBundle, model: str) -> None:
        size = bundle_bytes(bundle)
        with self._lock:
            self._models[key] = bundle
            self._sizes[key] = size
            self._labels[key] = model
            while len(self._models) > 1 and self._over_budget():
                self._drop(next(iter(self._models)))

    def _drop(self, key: VersionKey) -> None:
        """Under self._lock."""
        del self._models[key]
        self._sizes.pop(key, None)
        self._locks.pop(key, None)
        model_metrics.EVICTIONS.labels(self._labels.pop(key, "")).inc()
        self.evictions += 1

    def _over_budget(self) -> bool:
        over_bytes = self.max_bytes is not None and self.loaded_bytes > self.max_bytes
        return len(self._models) > self.capacity or over_bytes

"""What the predict path reads from the database, kept for a moment.

Predict is the hot path. Looking up the caller's key and the version a name or alias points
to took a database round trip each, on a worker thread, and cost more CPU than the forward
pass (bench/README.md). Each API process keeps what it read for `predict_cache_s`:

- a change made through this process (an alias moved, a version deleted, a key revoked) is
  seen by the next request: the route clears the cache after its commit;
- a change made elsewhere (another API process, `trainserve keys revoke`) is seen within
  predict_cache_s. 0 turns the cache off.

Only successes are kept: an unknown key or model is looked up again every time.
"""

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from app.serving.model_metrics import model_label

K = TypeVar("K")
V = TypeVar("V")


# What a loaded version is kept under: its id (never reused) and its checkpoint's digest, so
# nothing but the exact weights the registry recorded for this version can answer for it.
VersionKey = tuple[str, str]


@dataclass(frozen=True)
class ServedVersion:
    """The columns of a model version that predict needs (not its spec, metrics or lineage)."""

    id: str
    project: str
    model_name: str
    version: int
    job_id: str
    checkpoint_path: str
    checkpoint_sha256: str

    @property
    def key(self) -> VersionKey:
        return (self.id, self.checkpoint_sha256)

    @property
    def label(self) -> str:
        """Its model, as the metrics name it."""
        return model_label(self.project, self.model_name)


class TtlCache(Generic[K, V]):
    """A dict whose entries expire after ttl_s. Bounded: when full, it starts over (the
    entries are cheap to read again, and a flood of distinct keys cannot grow it)."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Task[V]] = {}
        self._generation = 0  # bumped by clear(): a read that began before it is not kept
        # clear() comes from the sync routes' worker threads; the rest runs on the event loop.
        # The lock makes "is this read still current? keep it" one step against clear().
        self._lock = threading.Lock()

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The entry, or one load shared by every request that misses it at once: when an
        entry expires under load, the database sees one read, not one per waiting request.
        A load's error goes to all of them and is not kept."""
        value = self.get(key)
        if value is not None:
            return value
        task = self._loading.get(key)
        if task is None:
            task = self._loading[key] = asyncio.create_task(self._load(key, load))
        return await asyncio.shield(task)  # a caller that gives up does not stop the others

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        generation = self._generation
        try:
            value = await load()
        finally:
            with self._lock:
                if self._generation == generation:
                    self._loading.pop(key, None)
        with self._lock:
            if self._generation == generation:
                self.put(key, value)
        return value

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            self._entries.pop(key, None)  # clear() may have emptied it meanwhile
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl_s, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._loading.clear()
            self._generation += 1

    def __len__(self) -> int:
        return len(self._entries)

"""The model cache: one load per version however many ask at once, LRU by count and by bytes,
and a clear error for a missing or altered checkpoint."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.core.errors import ModelUnavailable
from app.core.files import sha256_file
from app.serving import model_metrics
from app.serving.cache import ModelCache, bundle_bytes
from tests.support import identity_mlp, tabular_bundle


def key(version: object, sha: str) -> tuple[str, str]:
    return (f"version-{version}", sha)


def saved(tmp_path: Path, name: str, width: int = 2, mean: float = 0.0) -> tuple[Path, str]:
    """A bundle file and its digest; another `mean` gives other tensors, so another digest
    (the same tensors saved within one second would give the same one)."""
    bundle = tabular_bundle(
        identity_mlp(width), [str(i) for i in range(width)], [mean] * width, [1.0] * width
    )
    path = tmp_path / f"{name}.safetensors"
    return path, bundle.save(path)


def test_concurrent_first_requests_load_once(tmp_path: Path) -> None:
    cache = ModelCache(capacity=4)
    path, sha = saved(tmp_path, "a")
    with ThreadPoolExecutor(8) as pool:
        bundles = list(pool.map(lambda _: cache.get(key(1, sha), path), range(16)))
    assert cache.loads == 1 and all(b is bundles[0] for b in bundles)


def test_least_recently_used_goes_first_by_count(tmp_path: Path) -> None:
    cache = ModelCache(capacity=2)
    (a, sha_a), (b, sha_b), (c, sha_c) = [saved(tmp_path, n) for n in "abc"]
    cache.get(key(1, sha_a), a)
    cache.get(key(2, sha_b), b)
    cache.get(key(1, sha_a), a)  # 1 is now the most recent
    cache.get(key(3, sha_c), c)
    assert cache.peek(key(2, sha_b)) is None and cache.peek(key(1, sha_a)) is not None
    assert cache.evictions == 1


def test_loads_and_evictions_are_counted_per_model(tmp_path: Path) -> None:
    cache = ModelCache(capacity=1)
    (a, sha_a), (b, sha_b) = [saved(tmp_path, n) for n in "ab"]
    cache.get(key(1, sha_a), a, model="per-model-a")
    cache.get(key(2, sha_b), b, model="per-model-b")  # evicts a
    cache.get(key(2, sha_b), b, model="per-model-b")  # a hit: no load
    assert _count("loads", "per-model-a") == 1
    assert _count("loads", "per-model-b") == 1
    assert _count("evictions", "per-model-a") == 1
    assert _count("evictions", "per-model-b") == 0


def _count(kind: str, model: str) -> float:
    value = model_metrics.REGISTRY.get_sample_value(
        f"trainserve_model_{kind}_total", {"model": model}
    )
    return value or 0.0


def test_the_memory_budget_bounds_the_cache(tmp_path: Path) -> None:
    path, sha = saved(tmp_path, "big", width=64)
    size = bundle_bytes(ModelCache(1).get(key(0, sha), path))
    cache = ModelCache(capacity=10, max_bytes=int(size * 2.5))
    for version in range(1, 5):
        cache.get(key(version, sha), path)
    assert cache.loaded_bytes <= size * 2.5
    assert cache.peek(key(4, sha)) is not None and cache.peek(key(1, sha)) is None
    alone = ModelCache(capacity=10, max_bytes=1)  # over budget alone: still served
    assert alone.get(key(9, sha), path) is not None and alone.peek(key(9, sha)) is not None


def test_a_missing_or_altered_checkpoint_is_a_clear_409(tmp_path: Path) -> None:
    path, sha = saved(tmp_path, "x")
    with pytest.raises(ModelUnavailable, match="missing") as exc:
        ModelCache(2).get(key(1, sha), tmp_path / "gone.safetensors")
    assert exc.value.status_code == 409
    path.write_bytes(path.read_bytes()[:-8] + b"tampered")
    assert sha256_file(path) != sha
    with pytest.raises(ModelUnavailable, match="sha256"):
        ModelCache(2).get(key(1, sha), path)


def test_a_version_is_kept_under_its_weights_digest_and_evicted_by_id(tmp_path: Path) -> None:
    """Another version id, or the same id with other weights, never gets a loaded bundle; a
    deleted version's bundles go at once, whatever digest they were loaded under."""
    (a, sha_a), (b, sha_b) = saved(tmp_path, "a"), saved(tmp_path, "b", mean=1.0)
    assert sha_a != sha_b
    cache = ModelCache(capacity=4)
    first = cache.get(("v1", sha_a), a)
    assert cache.peek(("v2", sha_a)) is None and cache.peek(("v1", sha_b)) is None
    assert cache.get(("v1", sha_b), b) is not first
    cache.evict("v1")
    assert cache.peek(("v1", sha_a)) is None and cache.peek(("v1", sha_b)) is None

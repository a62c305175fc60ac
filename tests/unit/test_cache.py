"""The model cache: one load per version however many ask at once, LRU by count and by bytes,
and a clear error for a missing or altered checkpoint."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.ml.checkpoint import sha256_file
from app.serving import metrics
from app.serving.cache import ModelCache, ModelUnavailable, bundle_bytes
from tests.support import identity_mlp, tabular_bundle


def saved(tmp_path: Path, name: str, width: int = 2) -> tuple[Path, str]:
    bundle = tabular_bundle(
        identity_mlp(width), [str(i) for i in range(width)], [0.0] * width, [1.0] * width
    )
    path = tmp_path / f"{name}.safetensors"
    return path, bundle.save(path)


def test_concurrent_first_requests_load_once(tmp_path: Path) -> None:
    cache = ModelCache(capacity=4)
    path, sha = saved(tmp_path, "a")
    with ThreadPoolExecutor(8) as pool:
        bundles = list(pool.map(lambda _: cache.get(1, path, sha), range(16)))
    assert cache.loads == 1 and all(b is bundles[0] for b in bundles)


def test_least_recently_used_goes_first_by_count(tmp_path: Path) -> None:
    cache = ModelCache(capacity=2)
    files = [saved(tmp_path, n) for n in "abc"]
    cache.get(1, *files[0])
    cache.get(2, *files[1])
    cache.get(1, *files[0])  # 1 is now the most recent
    cache.get(3, *files[2])
    assert cache.peek(2) is None and cache.peek(1) is not None and cache.evictions == 1


def test_loads_and_evictions_are_counted_per_model(tmp_path: Path) -> None:
    cache = ModelCache(capacity=1)
    files = [saved(tmp_path, n) for n in "ab"]
    cache.get(1, *files[0], model="per-model-a")
    cache.get(2, *files[1], model="per-model-b")  # evicts a
    cache.get(2, *files[1], model="per-model-b")  # a hit: no load
    assert _count("loads", "per-model-a") == 1
    assert _count("loads", "per-model-b") == 1
    assert _count("evictions", "per-model-a") == 1
    assert _count("evictions", "per-model-b") == 0


def _count(kind: str, model: str) -> float:
    value = metrics.REGISTRY.get_sample_value(f"trainserve_model_{kind}_total", {"model": model})
    return value or 0.0


def test_the_memory_budget_bounds_the_cache(tmp_path: Path) -> None:
    path, sha = saved(tmp_path, "big", width=64)
    size = bundle_bytes(ModelCache(1).get(0, path, sha))
    cache = ModelCache(capacity=10, max_bytes=int(size * 2.5))
    for version in range(1, 5):
        cache.get(version, path, sha)
    assert cache.loaded_bytes <= size * 2.5 and cache.peek(4) is not None and cache.peek(1) is None
    alone = ModelCache(capacity=10, max_bytes=1)  # over budget alone: still served
    assert alone.get(9, path, sha) is not None and alone.peek(9) is not None


def test_a_missing_or_altered_checkpoint_is_a_clear_409(tmp_path: Path) -> None:
    path, sha = saved(tmp_path, "x")
    with pytest.raises(ModelUnavailable, match="missing") as exc:
        ModelCache(2).get(1, tmp_path / "gone.safetensors", sha)
    assert exc.value.status_code == 409
    path.write_bytes(path.read_bytes()[:-8] + b"tampered")
    assert sha256_file(path) != sha
    with pytest.raises(ModelUnavailable, match="sha256"):
        ModelCache(2).get(1, path, sha)

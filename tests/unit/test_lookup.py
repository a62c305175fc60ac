"""The predict path's cache: expiry, one shared load per miss, and clear() beating a load
that read the database before the change it announces."""

import asyncio
import time

import pytest

from app.serving.lookup import TtlCache


def test_entries_expire_after_ttl() -> None:
    cache: TtlCache[str, int] = TtlCache(0.05)
    cache.put("a", 1)
    assert cache.get("a") == 1
    time.sleep(0.06)
    assert cache.get("a") is None and len(cache) == 0


def test_a_ttl_of_0_keeps_nothing() -> None:
    cache: TtlCache[str, int] = TtlCache(0)
    cache.put("a", 1)
    assert cache.get("a") is None


def test_a_full_cache_starts_over_instead_of_growing() -> None:
    cache: TtlCache[int, int] = TtlCache(60, max_entries=3)
    for i in range(7):
        cache.put(i, i)
    assert len(cache) <= 3 and cache.get(6) == 6


def test_concurrent_misses_share_one_load() -> None:
    cache: TtlCache[str, int] = TtlCache(60)
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return 42

    async def main() -> list[int]:
        return await asyncio.gather(*(cache.get_or_load("k", load) for _ in range(50)))

    assert asyncio.run(main()) == [42] * 50
    assert loads == 1 and cache.get("k") == 42


def test_a_failed_load_reaches_every_waiter_and_is_not_kept() -> None:
    cache: TtlCache[str, int] = TtlCache(60)
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise LookupError("no such model")

    async def main() -> list[BaseException | int]:
        return await asyncio.gather(
            *(cache.get_or_load("k", load) for _ in range(5)), return_exceptions=True
        )

    results = asyncio.run(main())
    assert calls == 1 and all(isinstance(r, LookupError) for r in results)
    assert cache.get("k") is None
    with pytest.raises(LookupError):
        asyncio.run(cache.get_or_load("k", load))
    assert calls == 2


def test_a_caller_that_gives_up_does_not_cancel_the_shared_load() -> None:
    cache: TtlCache[str, int] = TtlCache(60)

    async def load() -> int:
        await asyncio.sleep(0.05)
        return 7

    async def main() -> int:
        impatient = asyncio.create_task(cache.get_or_load("k", load))
        patient = asyncio.create_task(cache.get_or_load("k", load))
        await asyncio.sleep(0.01)
        impatient.cancel()
        return await patient

    assert asyncio.run(main()) == 7 and cache.get("k") == 7


def test_clear_during_a_load_keeps_the_old_read_out_of_the_cache() -> None:
    """A read that began before an alias moved must not be cached after the move."""
    cache: TtlCache[str, str] = TtlCache(60)
    database = {"production": "v1"}

    async def load() -> str:
        value = database["production"]  # read before the move...
        await asyncio.sleep(0.02)  # ...answered after it
        return value

    async def main() -> tuple[str, str]:
        stale = asyncio.create_task(cache.get_or_load("production", load))
        await asyncio.sleep(0.005)
        database["production"] = "v2"
        cache.clear()  # what the alias route does after its commit
        fresh = await cache.get_or_load("production", load)
        return await stale, fresh

    stale, fresh = asyncio.run(main())
    assert (stale, fresh) == ("v1", "v2")
    assert cache.get("production") == "v2"

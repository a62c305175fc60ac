"""Dynamic batching: rows (not requests) fill a batch, the delay is bounded, the queue is
bounded, every wait has a timeout, and each request gets exactly its own rows back."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from app.serving.batcher import Batcher, BatchPolicy, Overloaded
from app.serving.predictor import Prediction

EXECUTOR = ThreadPoolExecutor(max_workers=1)


def echo(batches: list[int], delay_s: float = 0.0):  # type: ignore[no-untyped-def]
    """A forward pass that predicts each row's first value and records batch sizes."""

    def forward(x: torch.Tensor) -> Prediction:
        batches.append(int(x.shape[0]))
        time.sleep(delay_s)
        return Prediction(x[:, 0].tolist(), [[1.0]] * x.shape[0])

    return forward


def policy(**overrides: float) -> BatchPolicy:
    base = {"max_rows": 8, "max_delay_s": 0.05, "max_queue_rows": 1000, "timeout_s": 5.0}
    return BatchPolicy(**(base | overrides))  # type: ignore[arg-type]


def rows(start: int, n: int) -> torch.Tensor:
    return torch.arange(start, start + n, dtype=torch.float32).unsqueeze(1)


def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    batches: list[int] = []

    async def main() -> list[Prediction]:
        batcher = Batcher(echo(batches), policy(), EXECUTOR)
        return await asyncio.gather(*(batcher.submit(rows(10 * i, 2)) for i in range(8)))

    results = asyncio.run(main())
    assert [r.predictions for r in results] == [[10.0 * i, 10.0 * i + 1] for i in range(8)]
    assert sum(batches) == 16 and max(batches) <= 8 and len(batches) == 2


def test_a_big_request_counts_its_rows_and_runs_alone() -> None:
    batches: list[int] = []

    async def main() -> list[Prediction]:
        batcher = Batcher(echo(batches), policy(), EXECUTOR)
        return await asyncio.gather(batcher.submit(rows(0, 64)), batcher.submit(rows(100, 1)))

    big, small = asyncio.run(main())
    assert len(big.predictions) == 64 and small.predictions == [100.0]
    assert batches == [64, 1]


def test_a_lone_request_waits_at_most_the_delay() -> None:
    async def main() -> float:
        batcher = Batcher(echo([]), policy(max_delay_s=0.02), EXECUTOR)
        began = time.perf_counter()
        await batcher.submit(rows(0, 1))
        return time.perf_counter() - began

    assert asyncio.run(main()) < 0.5


def test_a_full_queue_answers_503_with_retry_after() -> None:
    async def main() -> None:
        batcher = Batcher(echo([], delay_s=0.2), policy(max_queue_rows=4, max_rows=2), EXECUTOR)
        first = asyncio.create_task(batcher.submit(rows(0, 4)))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as exc:
            await batcher.submit(rows(0, 1))
        assert exc.value.status_code == 503 and exc.value.headers == {"Retry-After": "1"}
        assert len((await first).predictions) == 4

    asyncio.run(main())


def test_every_wait_has_a_timeout() -> None:
    async def main() -> None:
        batcher = Batcher(echo([], delay_s=0.5), policy(timeout_s=0.1), EXECUTOR)
        with pytest.raises(Overloaded, match="no result within"):
            await batcher.submit(rows(0, 1))

    asyncio.run(main())


def test_a_failing_forward_fails_its_requests_and_the_batcher_goes_on() -> None:
    calls: list[int] = []

    def flaky(x: torch.Tensor) -> Prediction:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return Prediction(x[:, 0].tolist(), None)

    async def main() -> None:
        batcher = Batcher(flaky, policy(), EXECUTOR)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(rows(0, 1))
        assert (await batcher.submit(rows(5, 1))).predictions == [5.0]

    asyncio.run(main())


def test_no_wait_when_no_other_request_is_on_its_way() -> None:
    async def timed(more_coming: bool) -> float:
        batcher = Batcher(
            echo([]), policy(max_delay_s=0.5), EXECUTOR, more_coming=lambda: more_coming
        )
        began = time.perf_counter()
        await batcher.submit(rows(0, 1))
        return time.perf_counter() - began

    assert asyncio.run(timed(False)) < 0.25  # dispatched at once
    assert asyncio.run(timed(True)) >= 0.45  # waited for company, up to max_delay_s

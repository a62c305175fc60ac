"""Dynamic batching: rows (not requests) fill a batch, the delay is bounded, the queue is
bounded, every wait has a timeout, and each request gets exactly its own rows back."""

import asyncio
import threading
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


def traced(threads: list[int], delay_s: float = 0.0):  # type: ignore[no-untyped-def]
    """A forward pass that records the thread it ran on."""

    def forward(x: torch.Tensor) -> Prediction:
        threads.append(threading.get_ident())
        time.sleep(delay_s)
        return Prediction(x[:, 0].tolist(), None)

    return forward


def test_a_cheap_forward_runs_on_the_event_loop_not_the_forward_thread() -> None:
    """A pass that is cheaper than handing it over is not handed over: each hand-over costs
    a thread wake-up and two GIL hand-offs, up to a switch interval each under load (the
    predict tail of issue 10)."""
    threads: list[int] = []

    async def main() -> int:
        batcher = Batcher(traced(threads), policy(inline_max_s=1.0), EXECUTOR)
        for i in range(5):
            assert (await batcher.submit(rows(i, 1))).predictions == [float(i)]
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert threads[0] != loop_thread  # the first pass is measured off the loop
    assert threads[1:] == [loop_thread] * 4


def test_a_dear_forward_stays_on_the_forward_thread_and_the_loop_keeps_going() -> None:
    threads: list[int] = []

    async def main() -> tuple[int, int]:
        batcher = Batcher(traced(threads, 0.05), policy(inline_max_s=0.005), EXECUTOR)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        ticker = asyncio.create_task(tick())
        for i in range(4):
            await batcher.submit(rows(i, 1))
        ticker.cancel()
        return threading.get_ident(), ticks

    loop_thread, ticks = asyncio.run(main())
    assert len(threads) == 4 and loop_thread not in threads
    assert ticks >= 10  # 4 passes of 50 ms: the loop ran all along


def test_a_forward_that_turns_dear_goes_back_to_the_forward_thread() -> None:
    threads: list[int] = []
    slow = [False]

    def forward(x: torch.Tensor) -> Prediction:
        threads.append(threading.get_ident())
        if slow[0]:
            time.sleep(0.03)
        return Prediction(x[:, 0].tolist(), None)

    async def main() -> int:
        batcher = Batcher(forward, policy(inline_max_s=0.01), EXECUTOR)
        for i in range(3):
            await batcher.submit(rows(i, 1))
        slow[0] = True
        for i in range(12):
            await batcher.submit(rows(i, 1))
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert threads[1:3] == [loop_thread] * 2  # cheap: on the loop
    assert threads[-1] != loop_thread  # dear for a few passes running: off it again
    assert threads.count(loop_thread) <= 2 + 5  # a median of 9: at most 5 dear passes decide


def test_the_delay_counts_from_the_oldest_rows_arrival_not_from_the_last_batch() -> None:
    """A request that arrived while a forward pass ran has waited already: when the pass
    ends after its max_delay_s, it goes at once, not max_delay_s later."""
    release = threading.Event()
    started: list[float] = []

    def forward(x: torch.Tensor) -> Prediction:
        started.append(time.monotonic())
        if len(started) == 1:
            release.wait(5)
        return Prediction(x[:, 0].tolist(), None)

    async def main() -> float:
        batcher = Batcher(
            forward,
            policy(max_rows=100, max_delay_s=0.3, inline_max_s=0.0),
            EXECUTOR,
            more_coming=lambda: True,  # always company on its way: wait the full delay
        )
        first = asyncio.create_task(batcher.submit(rows(0, 1)))
        while not started:  # the first batch waited its delay and runs now
            await asyncio.sleep(0.005)
        second = asyncio.create_task(batcher.submit(rows(1, 1)))
        await asyncio.sleep(0.4)  # longer than max_delay_s: the second row is due
        released = time.monotonic()
        release.set()
        await asyncio.gather(first, second)
        return started[1] - released

    assert asyncio.run(main()) < 0.15  # before: 0.3, a second full delay


@pytest.mark.parametrize("inline_max_s", [1.0, 0.0], ids=["on the loop", "on the thread"])
def test_under_steady_arrivals_requests_go_oldest_first_and_no_batch_is_too_big(
    inline_max_s: float,
) -> None:
    """No request is passed over: batches take the queue in arrival order, so a request
    waits through at most the batches that the rows ahead of it fill."""
    batches: list[list[float]] = []

    def forward(x: torch.Tensor) -> Prediction:
        batches.append(x[:, 0].tolist())
        time.sleep(0.003)
        return Prediction(x[:, 0].tolist(), None)

    async def main() -> list[Prediction]:
        batcher = Batcher(forward, policy(max_rows=4, inline_max_s=inline_max_s), EXECUTOR)
        tasks = []
        for i in range(60):
            tasks.append(asyncio.create_task(batcher.submit(rows(i, 1 + i % 2))))
            await asyncio.sleep(0.001)
        return await asyncio.gather(*tasks)

    results = asyncio.run(main())
    assert [r.predictions[0] for r in results] == [float(i) for i in range(60)]
    order = [value for batch in batches for value in batch]
    assert order == sorted(order)  # oldest first, every time
    assert max(len(batch) for batch in batches) <= 4


def test_back_to_back_batches_on_the_loop_let_answers_out_between_them() -> None:
    events: list[str] = []

    def forward(x: torch.Tensor) -> Prediction:
        events.append(f"forward {int(x[0, 0])}")
        return Prediction(x[:, 0].tolist(), None)

    async def main() -> None:
        batcher = Batcher(forward, policy(max_rows=2, inline_max_s=1.0), EXECUTOR)
        await batcher.submit(rows(100, 1))  # measured: the next batches run on the loop

        async def one(i: int) -> None:
            await batcher.submit(rows(i, 1))
            events.append(f"answered {i}")

        await asyncio.gather(*(one(i) for i in range(6)))

    asyncio.run(main())
    assert events.index("answered 0") < events.index("forward 4")


def test_a_batch_far_bigger_than_those_measured_goes_to_the_forward_thread() -> None:
    """Cheap one-row passes do not vouch for a 64-row one: it is expected at 64 times a
    row's cost, and runs off the loop."""
    threads: list[tuple[int, int]] = []

    def forward(x: torch.Tensor) -> Prediction:
        threads.append((int(x.shape[0]), threading.get_ident()))
        time.sleep(0.0005 * x.shape[0])  # a cost that grows with the rows
        return Prediction(x[:, 0].tolist(), None)

    async def main() -> int:
        batcher = Batcher(forward, policy(max_rows=64, inline_max_s=0.01), EXECUTOR)
        for i in range(3):
            await batcher.submit(rows(i, 1))
        await batcher.submit(rows(0, 64))
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert [t == loop_thread for _, t in threads] == [False, True, True, False]


def test_a_cheap_request_that_fills_a_batch_alone_runs_at_once_but_never_ahead_of_others() -> None:
    """With nothing queued and no batch running, a cheap request of max_rows rows would be
    the next batch on its own: it runs in the request's own task (no batch task, future or
    timer). With rows queued before it, it waits its turn, oldest first."""
    batches: list[tuple[list[float], asyncio.Task[object] | None]] = []

    def forward(x: torch.Tensor) -> Prediction:
        running = (
            asyncio.current_task() if threading.current_thread().name == "MainThread" else None
        )
        batches.append((x[:, 0].tolist(), running))
        return Prediction(x[:, 0].tolist(), None)

    async def main() -> asyncio.Task[object] | None:
        batcher = Batcher(forward, policy(max_rows=2, inline_max_s=1.0), EXECUTOR)
        await batcher.submit(rows(0, 2))  # measured on the thread: a cost is known after
        await batcher.submit(rows(10, 2))
        queued = asyncio.create_task(batcher.submit(rows(20, 1)))
        await asyncio.sleep(0)  # queued, its batch waiting for a second row
        assert (await batcher.submit(rows(30, 2))).predictions == [30.0, 31.0]
        assert (await queued).predictions == [20.0]
        return asyncio.current_task()

    request_task = asyncio.run(main())
    values = [b[0] for b in batches]
    assert values == [[0.0, 1.0], [10.0, 11.0], [20.0], [30.0, 31.0]]  # oldest first
    assert batches[1][1] is request_task  # alone and idle: run by the request itself
    assert batches[2][1] is not request_task and batches[3][1] is not request_task

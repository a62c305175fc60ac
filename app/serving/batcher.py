"""Dynamic batching, per loaded model version.

Requests queue their rows; one task per version takes them, oldest first, in batches of at
most `max_rows` rows (rows, not requests: a 64-row request counts 64), waiting at most
`max_delay_s` after the oldest queued row arrived for more. The queue is bounded in rows: a
request that would overflow it is refused at once (503 with Retry-After), and every wait
has a timeout.

Where a batch's forward pass runs is measured, not fixed. A pass that takes longer than
`inline_max_s` runs on the forward thread, so the event loop keeps accepting requests and
the next batch forms meanwhile. A cheaper one runs on the event loop itself: handing it to a
thread costs more than it saves. Each hand-over wakes a thread and passes the GIL twice,
and while the loop is busy with requests the forward thread waits up to the interpreter's
switch interval (5 ms) for the GIL at each step, and the loop as long again to see the
result; a one-row MLP's pass takes tens of microseconds (bench/README.md, predict tail).
Every batch's duration is measured where it ran, per row; the first runs on the thread.
A batch is expected to take its rows times the recent cost of a row: a pass costs less per
row the more rows it has, so a batch bigger than those measured is expected dearer than it
will be, and goes to the thread (the safe side), never the other way round.
"""

import asyncio
import statistics
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import torch

from app.core.errors import AppError
from app.serving.predictor import Prediction

Forward = Callable[[torch.Tensor], Prediction]


class Overloaded(AppError):
    status_code = 503
    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, details={"retry_after_s": retry_after_s})
        self.headers = {"Retry-After": str(retry_after_s)}


@dataclass
class _Pending:
    x: torch.Tensor  # (rows, ...) model input
    future: asyncio.Future[Prediction]
    queued_at: float  # time.monotonic() when it was queued

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class BatchPolicy:
    max_rows: int
    max_delay_s: float
    max_queue_rows: int
    timeout_s: float
    # A forward pass expected to take at most this long runs on the event loop (see above).
    inline_max_s: float = 0.002


# A row's cost is the median of the last few passes': a few batches decide, and a pass that
# was slow because the process lost its core for a moment does not.
COST_SAMPLES = 9


class Batcher:
    def __init__(
        self,
        forward: Forward,
        policy: BatchPolicy,
        executor: Executor,
        on_batch: Callable[[int], None] = lambda rows: None,
        more_coming: Callable[[], bool] = lambda: True,
    ) -> None:
        # more_coming: whether requests on their way could still join this batch; when none
        # are, waiting max_delay_s would only add latency.
        self.more_coming = more_coming
        self.forward, self.policy, self.executor, self.on_batch = (
            forward,
            policy,
            executor,
            on_batch,
        )
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._row_costs: deque[float] = deque(maxlen=COST_SAMPLES)  # recent passes, s/row

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    async def submit(self, x: torch.Tensor) -> Prediction:
        if self._queued_rows + x.shape[0] > self.policy.max_queue_rows:
            raise Overloaded(
                f"the model's queue is full ({self._queued_rows} rows waiting); retry shortly"
            )
        rows = int(x.shape[0])
        if rows >= self.policy.max_rows and self._idle() and self.inline(rows):
            return self._alone(x)
        item = _Pending(x, asyncio.get_running_loop().create_future(), time.monotonic())
        self._queue.append(item)
        self._queued_rows += item.rows
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        # A timer, not asyncio.wait_for: that wraps every request in a task of its own.
        timer = asyncio.get_running_loop().call_later(
            self.policy.timeout_s, self._expire, item.future
        )
        try:
            return await item.future  # a request cancelled while queued is skipped by _take
        finally:
            timer.cancel()

    def _idle(self) -> bool:
        """Nothing queued and no batch running: a request now would be taken first, alone."""
        return not self._queue and (self._task is None or self._task.done())

    def _alone(self, x: torch.Tensor) -> Prediction:
        """A cheap request that fills a batch by itself, with nothing ahead of it: the batch
        task would take it next, alone, and run it on the loop; it runs here instead, without
        the future, timer and task switches that cost as much as a one-row MLP's pass."""
        self.on_batch(int(x.shape[0]))
        result, took_s = self._timed(x)
        self._row_costs.append(took_s / int(x.shape[0]))
        return result

    def _expire(self, future: "asyncio.Future[Prediction]") -> None:
        if not future.done():  # the batch loop skips it if it has not run yet
            message = f"no result within {self.policy.timeout_s:.0f} s; retry shortly"
            future.set_exception(Overloaded(message))

    def inline(self, rows: int) -> bool:
        """Whether a batch of `rows` rows runs on the event loop: expected to be cheap."""
        if not self._row_costs:
            return False
        return statistics.median(self._row_costs) * rows <= self.policy.inline_max_s

    async def _run(self) -> None:
        while self._queue:
            await self._fill()
            batch = self._take()
            if not batch:
                continue
            inline = self.inline(sum(item.rows for item in batch))
            await self._execute(batch, inline)
            if inline and self._queue:
                # Batches back to back on the loop: let the answered requests write their
                # responses, and new ones queue, before the next.
                await asyncio.sleep(0)

    async def _fill(self) -> None:
        """Wait until max_rows are queued, or max_delay_s has passed since the oldest queued
        row arrived (not since this wait began: that row may have waited through a forward
        pass already)."""
        if not self._queue:
            return
        deadline = self._queue[0].queued_at + self.policy.max_delay_s
        while self._queued_rows < self.policy.max_rows and self.more_coming():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except TimeoutError:
                return

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = 0
        while self._queue and (not batch or rows + self._queue[0].rows <= self.policy.max_rows):
            item = self._queue.popleft()
            self._queued_rows -= item.rows
            if not item.future.done():  # timed out or cancelled: drop it
                batch.append(item)
                rows += item.rows
        return batch

    async def _execute(self, batch: list[_Pending], inline: bool) -> None:
        x = torch.cat([item.x for item in batch]) if len(batch) > 1 else batch[0].x
        self.on_batch(int(x.shape[0]))
        try:
            if inline:
                result, took_s = self._timed(x)
            else:
                result, took_s = await asyncio.get_running_loop().run_in_executor(
                    self.executor, self._timed, x
                )
        except Exception as exc:  # the batch's requests get the error; the loop goes on
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        self._row_costs.append(took_s / int(x.shape[0]))
        if len(batch) == 1:  # its own rows: nothing to split
            if not batch[0].future.done():
                batch[0].future.set_result(result)
            return
        start = 0
        for item in batch:
            end = start + item.rows
            part = Prediction(
                result.predictions[start:end],
                result.probabilities[start:end] if result.probabilities is not None else None,
                result.classes,
            )
            if not item.future.done():
                item.future.set_result(part)
            start = end

    def _timed(self, x: torch.Tensor) -> tuple[Prediction, float]:
        """The forward pass and its wall time, measured where it runs. On the thread that
        includes its waits for the GIL, so a cheap pass may be taken for a dear one for a
        while (it stays off the loop, the safe side), never the other way round."""
        began = time.perf_counter()
        result = self.forward(x)
        return result, time.perf_counter() - began

"""Generation in one API process: bounded prompts and lengths, at most
max_concurrent_generations at once (a 429 beyond: each holds a forward pass per token for
seconds), and each token handed to the client as it is made.

A generation runs on a thread of its own, off the event loop; a streamed one computes a token
only when the client has taken the one before, so a client that goes away stops it."""

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from app.core.config import Settings
from app.core.errors import TooManyRequests, Unprocessable, invalid_field
from app.core.kinds import Task
from app.ml.bundle import ModelBundle
from app.ml.generate import Sampling, Step, generate, max_positions
from app.ml.pretrained import BaseTokenizer
from app.schemas.generate import GenerateRequest, GenerateResponse
from app.serving import model_metrics


@dataclass(frozen=True)
class Prepared:
    """A request checked against its model and the limits, ready to run."""

    bundle: ModelBundle
    prompt_ids: list[int]
    sampling: Sampling
    label: str  # the model's metrics label


class Generations:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._running = 0

    def prepare(self, bundle: ModelBundle, request: GenerateRequest, label: str) -> Prepared:
        """422 for a model that does not generate, a prompt or a length past its limit."""
        tokenizer = bundle.preprocessor.tokenizer
        if bundle.task != Task.generation or not isinstance(tokenizer, BaseTokenizer):
            raise Unprocessable(
                "this model does not generate text: POST /v1/models/{name}/predict",
                code="not_a_generator",
            )
        limit = self.settings.max_new_tokens
        if request.max_new_tokens > limit:
            raise invalid_field("max_new_tokens", f"at most {limit} (TRAINSERVE_MAX_NEW_TOKENS)")
        ids = tokenizer.hf(request.prompt, add_special_tokens=False)["input_ids"]
        if len(ids) > self.settings.max_prompt_tokens:
            raise invalid_field(
                "prompt",
                f"{len(ids)} tokens, more than the {self.settings.max_prompt_tokens} allowed "
                "(TRAINSERVE_MAX_PROMPT_TOKENS)",
            )
        if not ids:
            raise invalid_field("prompt", "holds no token")
        positions = max_positions(bundle.model.backbone)  # type: ignore[arg-type]
        if positions is not None and len(ids) + request.max_new_tokens > positions:
            raise invalid_field(
                "max_new_tokens",
                f"the prompt's {len(ids)} tokens and {request.max_new_tokens} new ones are more "
                f"than the {positions} positions this model has",
            )
        seed = request.seed if request.seed is not None else secrets.randbits(63)
        sampling = Sampling(
            request.max_new_tokens,
            request.temperature,
            request.top_p,
            seed,
            request.min_new_tokens,
        )
        return Prepared(bundle, list(ids), sampling, label)

    async def complete(self, job: Prepared, name: str, version: int) -> GenerateResponse:
        slot = self.slot()
        try:
            steps = await run_in_threadpool(lambda: list(self._steps(job)))
        finally:
            slot.release()
        return self._totals(job, steps, name, version)

    def stream(self, job: Prepared, name: str, version: int, slot: "Slot") -> AsyncIterator[str]:
        """Server-Sent Events: `token` {"index", "token", "text"} each, then `done` with what
        `complete` answers. `slot` was taken before the response started (so a 429 is a
        429); it is given back when the stream ends, however it ends."""

        async def events() -> AsyncIterator[str]:
            steps: list[Step] = []
            try:
                async for step in iterate_in_threadpool(self._steps(job)):
                    steps.append(step)
                    body = {"index": len(steps) - 1, "token": step.token, "text": step.text}
                    yield _sse("token", body)
                yield _sse("done", self._totals(job, steps, name, version).model_dump())
            finally:
                slot.release()

        return events()

    def _steps(self, job: Prepared) -> Iterator[Step]:
        tokenizer = job.bundle.preprocessor.tokenizer
        assert isinstance(tokenizer, BaseTokenizer)
        lm = job.bundle.model.backbone
        counter = model_metrics.GENERATED_TOKENS.labels(job.label)
        for step in generate(lm, tokenizer.hf, job.prompt_ids, job.sampling):  # type: ignore[arg-type]
            counter.inc()
            yield step

    def _totals(
        self, job: Prepared, steps: list[Step], name: str, version: int
    ) -> GenerateResponse:
        reason = "length" if len(steps) == job.sampling.max_new_tokens else "stop"
        return GenerateResponse(
            model_name=name,
            model_version=version,
            text="".join(step.text for step in steps),
            tokens=len(steps),
            prompt_tokens=len(job.prompt_ids),
            finish_reason=reason,
        )

    def slot(self) -> "Slot":
        """One of the process's generation slots, or a 429 when all are taken. Counted on the
        event loop only, so no lock is needed."""
        limit = self.settings.max_concurrent_generations
        if self._running >= limit:
            raise TooManyRequests(
                f"{limit} generations are running in this process "
                "(TRAINSERVE_MAX_CONCURRENT_GENERATIONS); try again shortly",
                retry_after_s=1,
            )
        self._running += 1
        model_metrics.GENERATIONS_RUNNING.inc()
        return Slot(self)

    @property
    def running(self) -> int:
        return self._running


class Slot:
    """Given back once: by the end of its stream, or by the response's background task when a
    client left before the stream started (an async generator never started runs no finally)."""

    def __init__(self, owner: Generations) -> None:
        self._owner: Generations | None = owner

    def release(self) -> None:
        if self._owner is not None:
            self._owner._running -= 1
            model_metrics.GENERATIONS_RUNNING.dec()
            self._owner = None


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"

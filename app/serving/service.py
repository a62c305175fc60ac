"""The predict path of one API process: the model cache, one batcher per loaded version, and
the thread that runs forward passes off the event loop."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.core.config import Settings
from app.core.errors import AppError, PayloadTooLarge
from app.ml.bundle import ModelBundle
from app.models import ModelVersion
from app.schemas.model import PredictResponse
from app.services import registry
from app.serving import metrics
from app.serving.batcher import Batcher, BatchPolicy
from app.serving.cache import ModelCache
from app.serving.predictor import model_input, predict


class Serving:
    def __init__(self, settings: Settings) -> None:
        self.cache = ModelCache(settings.model_cache_size, settings.model_cache_bytes)
        self.policy = BatchPolicy(
            max_rows=settings.batch_max_rows,
            max_delay_s=settings.batch_max_delay_ms / 1000,
            max_queue_rows=settings.predict_queue_rows,
            timeout_s=settings.predict_timeout_s,
        )
        # Forward passes run one at a time per process: torch already uses every core within
        # one, and batches queue up instead of competing.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        self._batchers: dict[int, tuple[ModelBundle, Batcher]] = {}
        self._arriving = 0  # requests being resolved and decoded: rows on their way to a batcher

    async def handle(
        self,
        session: Session,
        settings: Settings,
        name: str,
        ref: str | None,
        inputs: list[Any],
        tenant: str | None = None,
    ) -> PredictResponse:
        """One predict request: resolve the version now (an alias moved since is not seen by
        this request), load it once, batch its rows with other requests', answer."""
        if len(inputs) > settings.max_predict_rows:
            raise PayloadTooLarge(
                f"inputs: at most {settings.max_predict_rows} rows per request",
                code="too_many_rows",
            )
        started = time.perf_counter()
        try:
            version, bundle, x = await self._prepare(session, settings, name, ref, inputs, tenant)
            batcher = self._batcher(name, version.id, bundle)
            metrics.QUEUE_ROWS.labels(name).set(batcher.queued_rows + len(inputs))
            result = await batcher.submit(x)
        except AppError as exc:
            metrics.PREDICTS.labels(name, str(exc.status_code)).inc()
            raise
        metrics.PREDICTS.labels(name, "200").inc()
        metrics.ROWS.labels(name).inc(len(inputs))
        metrics.LATENCY.labels(name).observe(time.perf_counter() - started)
        return PredictResponse(
            model_name=name,
            model_version=version.version,
            job_id=version.job_id,
            predictions=result.predictions,
            probabilities=result.probabilities,
        )

    async def _prepare(
        self,
        session: Session,
        settings: Settings,
        name: str,
        ref: str | None,
        inputs: list[Any],
        tenant: str | None,
    ) -> tuple[ModelVersion, ModelBundle, torch.Tensor]:
        """Resolve, load and decode: while a request is here, its rows are on their way, and
        batchers wait for them; once it leaves, nothing is gained by waiting for it."""
        self._arriving += 1
        try:
            version = await run_in_threadpool(registry.resolve, session, name, ref, tenant)
            path = settings.artifacts_dir / version.checkpoint_path
            bundle = await self.load(version.id, path, version.checkpoint_sha256)
            x = await run_in_threadpool(model_input, bundle, inputs)  # decoding is CPU work too
            return version, bundle, x
        finally:
            self._arriving -= 1

    async def load(self, version_id: int, path: Path, sha256: str) -> ModelBundle:
        bundle = self.cache.peek(version_id)
        if bundle is None:  # the first request loads it, off the event loop
            bundle = await run_in_threadpool(self.cache.get, version_id, path, sha256)
        return bundle

    def _batcher(self, model_name: str, version_id: int, bundle: ModelBundle) -> Batcher:
        entry = self._batchers.get(version_id)
        if entry is None or entry[0] is not bundle:
            self._forget_evicted()
            batcher = Batcher(
                lambda x: predict(bundle, x),
                self.policy,
                self.executor,
                on_batch=metrics.BATCH_ROWS.labels(model_name).observe,
                more_coming=lambda: self._arriving > 0,
            )
            entry = self._batchers[version_id] = (bundle, batcher)
        return entry[1]

    def _forget_evicted(self) -> None:
        for version_id in [v for v in self._batchers if self.cache.peek(v) is None]:
            del self._batchers[version_id]

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown)

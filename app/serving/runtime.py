"""The predict path of one API process: who may call (cached), which version a name points
to (cached), the model cache, one batcher per loaded version, and the thread that runs
forward passes off the event loop. No database session is held while a request waits."""

import asyncio
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from starlette.concurrency import run_in_threadpool

from app.base_models.location import folder_finder
from app.core.config import Settings
from app.core.db import session_scope
from app.core.errors import AppError, ModelUnavailable, PayloadTooLarge
from app.ml.bundle import ModelBundle
from app.ml.devices import resolve_device
from app.services import auth, registry
from app.services.artifacts import fetch_artifact
from app.services.auth import PROJECT_HEADER, Principal
from app.serving.batcher import Batcher, BatchPolicy
from app.serving.cache import ModelCache
from app.serving.generation import Generations
from app.serving.lookup import ServedVersion, TtlCache, VersionKey
from app.serving.model_metrics import ModelMetrics, model_label
from app.serving.predictor import INLINE_VALUES, Prediction, decode, predict
from app.storage import store_for

UNRESOLVED = "-"  # the metrics label of requests that named no model we serve (bounded series)


@dataclass(frozen=True)
class Answer:
    model_name: str
    model_version: int
    job_id: str
    prediction: Prediction


class Serving:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = store_for(settings)  # where versions are loaded from
        self.device = resolve_device(settings.serve_device, "TRAINSERVE_SERVE_DEVICE")
        self.cache = ModelCache(
            settings.model_cache_size,
            settings.model_cache_bytes,
            str(self.device),
            folder_finder(settings),
        )
        self.policy = BatchPolicy(
            max_rows=settings.batch_max_rows,
            max_delay_s=settings.batch_max_delay_ms / 1000,
            max_queue_rows=settings.predict_queue_rows,
            timeout_s=settings.predict_timeout_s,
        )
        # Dear forward passes run one at a time per process, on this thread: torch already
        # uses every core within one, and batches queue up instead of competing. Cheap ones
        # run on the event loop (app/serving/batcher.py), so they may overlap a dear one.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        self._keys: TtlCache[str, Principal] = TtlCache(settings.predict_cache_s)
        # (project, name, ref) → the version it meant when read: never a name alone
        self._versions: TtlCache[tuple[str, str, str | None], ServedVersion] = TtlCache(
            settings.predict_cache_s
        )
        self._batchers: dict[VersionKey, tuple[ModelBundle, Batcher]] = {}
        self._metrics: dict[str, ModelMetrics] = {}
        self._arriving = 0  # requests being resolved and decoded: rows on their way to a batcher
        self.generations = Generations(settings)

    async def principal(self, headers: Mapping[str, str], scope: str) -> Principal:
        """The caller's key, checked against the database at most once per predict_cache_s,
        acting in the project its request names (X-Trainserve-Project; admin keys only)."""
        key_hash = auth.bearer_key_hash(headers.get("authorization"))
        principal = await self._keys.get_or_load(
            key_hash, lambda: run_in_threadpool(_read_key, key_hash)
        )
        principal.require(scope)
        return principal.in_project(headers.get(PROJECT_HEADER))

    async def resolve(self, project: str, name: str, ref: str | None) -> ServedVersion:
        """What `ref` means now: a version number, an alias, or (None) production, else latest."""
        return await self._versions.get_or_load(
            (project, name, ref), lambda: run_in_threadpool(_read_version, project, name, ref)
        )

    def forget(self) -> None:
        """A key, alias or version changed (and is committed): read them again."""
        self._keys.clear()
        self._versions.clear()

    def evict(self, version_id: str) -> None:
        """A deleted version: drop it from this process's memory at once (other processes stop
        reaching it within predict_cache_s; its id is never given to another version)."""
        self.cache.evict(version_id)
        for key in [k for k in self._batchers if k[0] == version_id]:
            del self._batchers[key]

    async def handle(
        self,
        project: str,
        name: str,
        ref: str | None,
        inputs: list[Any],
        numbers_only: bool = False,
    ) -> Answer:
        """One predict request: resolve the version now (an alias moved since is not seen by
        this request), load it once, batch its rows with other requests', answer.
        numbers_only: the body held no value but numbers (predictor.rows_to_tensor)."""
        started = time.perf_counter()
        model_metrics: ModelMetrics | None = None
        try:
            if len(inputs) > self.settings.max_predict_rows:
                raise PayloadTooLarge(
                    f"inputs: at most {self.settings.max_predict_rows} rows per request",
                    code="too_many_rows",
                )
            # While a request is resolved and decoded its rows are on their way, and batchers
            # wait for them; once it is queued, nothing is gained by waiting for it.
            with self._on_the_way():
                version = await self.resolve(project, name, ref)
                model_metrics = self._model_metrics(project, name)
                bundle = await self.load(version)
                x = await self._decode(bundle, inputs, numbers_only)
            batcher = self._batcher(version.key, bundle, model_metrics)
            model_metrics.queue_rows.set(batcher.queued_rows + len(inputs))
            result = await batcher.submit(x)
        except AppError as exc:
            (model_metrics or self._model_metrics(None, UNRESOLVED)).failed(exc.status_code)
            raise
        model_metrics.ok.inc()
        model_metrics.rows.inc(len(inputs))
        model_metrics.latency.observe(time.perf_counter() - started)
        return Answer(name, version.version, version.job_id, result)

    @contextmanager
    def _on_the_way(self) -> Iterator[None]:
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1

    async def _decode(
        self, bundle: ModelBundle, inputs: list[Any], numbers_only: bool
    ) -> torch.Tensor:
        pre, max_pixels = bundle.preprocessor, self.settings.max_predict_pixels
        if pre.kind == "tabular" and len(inputs) * pre.input_shape[0] <= INLINE_VALUES:
            # A few rows of numbers are checked and stacked in tens of microseconds: a thread
            # hop would cost more. More rows, images and text decode on a thread, off the loop.
            return decode(bundle, inputs, max_pixels, numbers_only)
        return await run_in_threadpool(decode, bundle, inputs, max_pixels, numbers_only)

    async def load(self, version: ServedVersion) -> ModelBundle:
        bundle = self.cache.peek(version.key)
        if bundle is None:  # the first request loads it, off the event loop
            fetch = partial(
                fetch_artifact,
                self.store,
                version.checkpoint_path,
                version.checkpoint_sha256,
                _unloadable,
            )
            bundle = await run_in_threadpool(self.cache.get, version.key, fetch, version.label)
        return bundle

    def _model_metrics(self, project: str | None, name: str) -> ModelMetrics:
        label = model_label(project, name)
        found = self._metrics.get(label)
        if found is None:
            found = self._metrics[label] = ModelMetrics(label)
        return found

    def _batcher(self, key: VersionKey, bundle: ModelBundle, metrics: ModelMetrics) -> Batcher:
        entry = self._batchers.get(key)
        if entry is None or entry[0] is not bundle:
            self._forget_evicted()
            batcher = Batcher(
                lambda x: predict(bundle, x),
                self.policy,
                self.executor,
                on_batch=metrics.batch_rows.observe,
                more_coming=lambda: self._arriving > 0,
            )
            entry = self._batchers[key] = (bundle, batcher)
        return entry[1]

    def _forget_evicted(self) -> None:
        for key in [k for k in self._batchers if self.cache.peek(k) is None]:
            del self._batchers[key]

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown)


def _unloadable(reason: str) -> ModelUnavailable:
    return ModelUnavailable(f"this model version cannot be loaded: {reason}")


def _read_key(key_hash: str) -> Principal:
    with session_scope() as session:  # commits last_used_at, when it is due
        return auth.principal_for(session, key_hash)


def _read_version(project: str, name: str, ref: str | None) -> ServedVersion:
    with session_scope() as session:
        row = registry.resolve(session, project, name, ref)
        return ServedVersion(
            id=row.id,
            project=project,
            model_name=row.model_name,
            version=row.version,
            job_id=row.job_id,
            checkpoint_path=row.checkpoint_path,
            checkpoint_sha256=row.checkpoint_sha256,
        )

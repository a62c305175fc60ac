"""AsyncClient: Client's methods, awaited (lists and streams with `async for`).

    async with AsyncClient() as ts:
        job = await ts.jobs.submit(spec)
        async for event in ts.jobs.events(job["id"]):
            print(event["event"], event["data"])

The Calls are _calls.py's, as Client's; this module is the asyncio transport and the
methods that await it.
"""

import asyncio
import builtins
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, overload

import httpx

from trainserve_client import _calls
from trainserve_client._http import Call, Deadline, Download, Settings, Source, settings
from trainserve_client._sse import JobEventStream, TokenStream
from trainserve_client.client import PAGE_SIZE
from trainserve_client.errors import error_from_response
from trainserve_client.types import (
    TERMINAL,
    Alias,
    BaseModel,
    Dataset,
    DryRun,
    Generation,
    Job,
    JobDetail,
    JobEvent,
    Key,
    KeyCreated,
    MetricPoint,
    Model,
    ModelSummary,
    ModelVersion,
    Page,
    Prediction,
    Token,
    Worker,
)

T = TypeVar("T")


class _AsyncTransport:
    """Sends Calls over one httpx.AsyncClient: retries, error answers raised."""

    def __init__(self, config: Settings) -> None:
        self.config = config
        self.http = httpx.AsyncClient(**config.http_options())

    async def send(self, call: Call[T]) -> T:
        return call.parse(await self._respond(call, stream=False))

    @asynccontextmanager
    async def stream(self, call: Call[Any]) -> AsyncIterator[httpx.Response]:
        response = await self._respond(call, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def pages(self, page: Callable[[str | None], Call[Page[T]]]) -> AsyncIterator[T]:
        cursor = None
        while True:
            body = await self.send(page(cursor))
            for item in body["items"]:
                yield item
            cursor = body["next_cursor"]
            if not cursor:
                return

    async def _respond(self, call: Call[Any], stream: bool) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._send_once(call, stream)
            except httpx.TransportError:
                delay = self.config.retry_delay(call, attempt, None)
                if delay is None:
                    raise
            else:
                delay = self.config.retry_delay(call, attempt, response)
                if delay is None:
                    return await _checked(response)
                await response.aclose()
            await asyncio.sleep(delay)

    async def _send_once(self, call: Call[Any], stream: bool) -> httpx.Response:
        with self.config.request_args(call) as args:
            return await self.http.send(self.http.build_request(**args), stream=stream)


async def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    await response.aread()
    await response.aclose()
    raise error_from_response(response)


class AsyncDatasets:
    def __init__(self, transport: _AsyncTransport) -> None:
        self._t = transport

    async def upload(self, source: Source, name: str, format: str, **form: Any) -> Dataset:
        """As Client.datasets.upload."""
        return await self._t.send(_calls.upload_dataset(source, name, format, form))

    def list(self, *, page_size: int = PAGE_SIZE) -> AsyncIterator[Dataset]:
        return self._t.pages(lambda cursor: _calls.list_datasets(cursor, page_size))

    async def get(self, dataset_id: str) -> Dataset:
        return await self._t.send(_calls.get_dataset(dataset_id))

    async def delete(self, dataset_id: str) -> None:
        await self._t.send(_calls.delete_dataset(dataset_id))


class AsyncBaseModels:
    def __init__(self, transport: _AsyncTransport) -> None:
        self._t = transport

    async def upload(self, source: Source, name: str) -> BaseModel:
        return await self._t.send(_calls.upload_base_model(source, name))

    def list(self, *, page_size: int = PAGE_SIZE) -> AsyncIterator[BaseModel]:
        return self._t.pages(lambda cursor: _calls.list_base_models(cursor, page_size))

    async def get(self, base_id: str) -> BaseModel:
        return await self._t.send(_calls.get_base_model(base_id))

    async def delete(self, base_id: str) -> None:
        await self._t.send(_calls.delete_base_model(base_id))


class AsyncJobs:
    def __init__(self, transport: _AsyncTransport) -> None:
        self._t = transport

    async def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> Job:
        """As Client.jobs.submit: one job however often it is sent again."""
        return await self._t.send(_calls.submit_job(spec, idempotency_key))

    async def validate(self, spec: dict[str, Any]) -> DryRun:
        return await self._t.send(_calls.validate_job(spec))

    async def get(self, job_id: str) -> JobDetail:
        return await self._t.send(_calls.get_job(job_id))

    def list(self, status: str | None = None, *, page_size: int = PAGE_SIZE) -> AsyncIterator[Job]:
        return self._t.pages(lambda cursor: _calls.list_jobs(status, cursor, page_size))

    async def metrics(self, job_id: str) -> builtins.list[MetricPoint]:
        return await self._t.send(_calls.job_metrics(job_id))

    async def cancel(self, job_id: str) -> Job:
        return await self._t.send(_calls.cancel_job(job_id))

    async def wait(
        self, job_id: str, timeout: float | None = None, *, interval: float = 0.5
    ) -> JobDetail:
        deadline = Deadline(f"job {job_id}", timeout, interval)
        while True:
            job = await self.get(job_id)
            if job["status"] in TERMINAL:
                return job
            await asyncio.sleep(deadline.sleep_s())

    async def events(
        self, job_id: str, last_event_id: str | None = None
    ) -> AsyncIterator[JobEvent]:
        """As Client.jobs.events: to the end message, reconnecting where a connection drops."""
        stream = JobEventStream(job_id, last_event_id, self._t.config.retry)
        while True:
            try:
                async with self._t.stream(stream.call()) as response:
                    async for line in response.aiter_lines():
                        event = stream.feed(line)
                        if event is not None:
                            yield event
                        if stream.ended:
                            return
            except httpx.TransportError:
                delay = stream.reconnect_delay()
                if delay is None:
                    raise
            else:
                delay = stream.reconnect_delay()
                if delay is None:
                    raise stream.gave_up()
            await asyncio.sleep(delay)


class AsyncModels:
    def __init__(self, transport: _AsyncTransport) -> None:
        self._t = transport

    def list(self, *, page_size: int = PAGE_SIZE) -> AsyncIterator[ModelSummary]:
        return self._t.pages(lambda cursor: _calls.list_models(cursor, page_size))

    async def get(self, name: str) -> Model:
        return await self._t.send(_calls.get_model(name))

    async def version(self, name: str, version: int) -> ModelVersion:
        return await self._t.send(_calls.get_version(name, version))

    async def delete_version(self, name: str, version: int) -> None:
        await self._t.send(_calls.delete_version(name, version))

    async def set_alias(self, name: str, alias: str, version: int) -> Alias:
        return await self._t.send(_calls.set_alias(name, alias, version))

    async def delete_alias(self, name: str, alias: str) -> None:
        await self._t.send(_calls.delete_alias(name, alias))

    async def predict(
        self, name: str, inputs: builtins.list[Any], version: int | str | None = None
    ) -> Prediction:
        return await self._t.send(_calls.predict(name, inputs, version))

    async def generate(
        self, name: str, prompt: str, *, version: int | str | None = None, **options: Any
    ) -> Generation:
        return await self._t.send(_calls.generate(name, prompt, version, False, options))

    async def generate_stream(
        self, name: str, prompt: str, *, version: int | str | None = None, **options: Any
    ) -> AsyncIterator[Token]:
        tokens = TokenStream()
        call = _calls.generate(name, prompt, version, True, options)
        async with self._t.stream(call) as response:
            async for line in response.aiter_lines():
                token = tokens.feed(line)
                if token is not None:
                    yield token

    @overload
    async def artifact(
        self, name: str, version: int, format: str = ..., path: None = None
    ) -> bytes: ...

    @overload
    async def artifact(
        self, name: str, version: int, format: str = ..., *, path: str | os.PathLike[str]
    ) -> Path: ...

    async def artifact(
        self,
        name: str,
        version: int,
        format: str = "safetensors",
        path: str | os.PathLike[str] | None = None,
    ) -> bytes | Path:
        async with self._t.stream(_calls.artifact(name, version, format)) as response:
            if path is None:
                return await response.aread()
            download = Download(path, response)
            try:
                async for chunk in response.aiter_bytes():
                    download.write(chunk)
            except BaseException:
                download.abandon()
                raise
            return download.finish()


class AsyncKeys:
    def __init__(self, transport: _AsyncTransport) -> None:
        self._t = transport

    async def create(
        self, name: str | None, scopes: list[str], project: str | None = None
    ) -> KeyCreated:
        return await self._t.send(_calls.create_key(name, scopes, project))

    def list(self, *, page_size: int = PAGE_SIZE) -> AsyncIterator[Key]:
        return self._t.pages(lambda cursor: _calls.list_keys(cursor, page_size))

    async def revoke(self, key_id: str) -> None:
        await self._t.send(_calls.revoke_key(key_id))


class AsyncWorkers:
    def __init__(self, transport: _AsyncTransport) -> None:
        self._t = transport

    def list(self, pool: str | None = None, *, page_size: int = PAGE_SIZE) -> AsyncIterator[Worker]:
        return self._t.pages(lambda cursor: _calls.list_workers(pool, cursor, page_size))


class AsyncClient:
    """As Client (same arguments and defaults), for asyncio."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        project: str | None = None,
        timeout: float = 30,
        retries: int = 3,
    ) -> None:
        self._transport = _AsyncTransport(settings(url, api_key, project, timeout, retries))
        self.datasets = AsyncDatasets(self._transport)
        self.base_models = AsyncBaseModels(self._transport)
        self.jobs = AsyncJobs(self._transport)
        self.models = AsyncModels(self._transport)
        self.keys = AsyncKeys(self._transport)
        self.workers = AsyncWorkers(self._transport)

    @property
    def url(self) -> str:
        return self._transport.config.url

    async def aclose(self) -> None:
        await self._transport.http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

"""Client: trainserve's HTTP API from synchronous code.

    with Client("http://127.0.0.1:8000", "ts_...") as ts:
        job = ts.jobs.wait(ts.jobs.submit(spec)["id"])
        ts.models.predict(job["model_name"], [[5.1, 3.5, 1.4, 0.2]])

AsyncClient (async_client.py) has the same methods, awaited; both send the Calls of
_calls.py, so only the transport below differs.
"""

import builtins
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, overload

import httpx

from trainserve_client import _calls
from trainserve_client._http import Call, Deadline, Download, Settings, Source, settings
from trainserve_client._sse import JobEventStream, TokenStream
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
PAGE_SIZE = 50


class _Transport:
    """Sends Calls over one httpx.Client: retries, error answers raised."""

    def __init__(self, config: Settings) -> None:
        self.config = config
        self.http = httpx.Client(**config.http_options())

    def send(self, call: Call[T]) -> T:
        return call.parse(self._respond(call, stream=False))

    @contextmanager
    def stream(self, call: Call[Any]) -> Iterator[httpx.Response]:
        """The response with its body still to read."""
        response = self._respond(call, stream=True)
        try:
            yield response
        finally:
            response.close()

    def pages(self, page: Callable[[str | None], Call[Page[T]]]) -> Iterator[T]:
        """Every item of a paginated list, fetching the next page as the last one runs out."""
        cursor = None
        while True:
            body = self.send(page(cursor))
            yield from body["items"]
            cursor = body["next_cursor"]
            if not cursor:
                return

    def _respond(self, call: Call[Any], stream: bool) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send_once(call, stream)
            except httpx.TransportError:
                delay = self.config.retry_delay(call, attempt, None)
                if delay is None:
                    raise
            else:
                delay = self.config.retry_delay(call, attempt, response)
                if delay is None:
                    return _checked(response)
                response.close()
            time.sleep(delay)

    def _send_once(self, call: Call[Any], stream: bool) -> httpx.Response:
        with self.config.request_args(call) as args:
            return self.http.send(self.http.build_request(**args), stream=stream)


def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    response.read()
    response.close()
    raise error_from_response(response)


class Datasets:
    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    def upload(self, source: Source, name: str, format: str, **form: Any) -> Dataset:
        """Upload a file (a path, bytes or a binary file): format csv, npz, images-zip,
        text-csv or text; form: target (csv's label column), task, image_size, channels,
        impute."""
        return self._t.send(_calls.upload_dataset(source, name, format, form))

    def list(self, *, page_size: int = PAGE_SIZE) -> Iterator[Dataset]:
        return self._t.pages(lambda cursor: _calls.list_datasets(cursor, page_size))

    def get(self, dataset_id: str) -> Dataset:
        return self._t.send(_calls.get_dataset(dataset_id))

    def delete(self, dataset_id: str) -> None:
        self._t.send(_calls.delete_dataset(dataset_id))


class BaseModels:
    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    def upload(self, source: Source, name: str) -> BaseModel:
        """Upload a .zip or .tar.gz of a Hugging Face model folder (safetensors weights)."""
        return self._t.send(_calls.upload_base_model(source, name))

    def list(self, *, page_size: int = PAGE_SIZE) -> Iterator[BaseModel]:
        return self._t.pages(lambda cursor: _calls.list_base_models(cursor, page_size))

    def get(self, base_id: str) -> BaseModel:
        return self._t.send(_calls.get_base_model(base_id))

    def delete(self, base_id: str) -> None:
        self._t.send(_calls.delete_base_model(base_id))


class Jobs:
    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> Job:
        """Queue a training job. Sent with an Idempotency-Key (a new uuid4 unless given), and
        sent again with the same key after a transport error or a 503: one job either way."""
        return self._t.send(_calls.submit_job(spec, idempotency_key))

    def validate(self, spec: dict[str, Any]) -> DryRun:
        """Check a spec without queueing it (dry_run): the spec with defaults filled in."""
        return self._t.send(_calls.validate_job(spec))

    def get(self, job_id: str) -> JobDetail:
        return self._t.send(_calls.get_job(job_id))

    def list(self, status: str | None = None, *, page_size: int = PAGE_SIZE) -> Iterator[Job]:
        """Every job (of one status), newest first, page after page."""
        return self._t.pages(lambda cursor: _calls.list_jobs(status, cursor, page_size))

    def metrics(self, job_id: str) -> builtins.list[MetricPoint]:
        return self._t.send(_calls.job_metrics(job_id))

    def cancel(self, job_id: str) -> Job:
        return self._t.send(_calls.cancel_job(job_id))

    def wait(
        self, job_id: str, timeout: float | None = None, *, interval: float = 0.5
    ) -> JobDetail:
        """The job once it has ended (succeeded, failed or cancelled: check its status);
        TimeoutError after `timeout` seconds."""
        deadline = Deadline(f"job {job_id}", timeout, interval)
        while True:
            job = self.get(job_id)
            if job["status"] in TERMINAL:
                return job
            time.sleep(deadline.sleep_s())

    def events(self, job_id: str, last_event_id: str | None = None) -> Iterator[JobEvent]:
        """The job's status changes, events and per-epoch metrics, live, ending with its
        `end` message. A dropped connection is reopened from the last message received;
        `last_event_id` starts after a message of an earlier stream."""
        stream = JobEventStream(job_id, last_event_id, self._t.config.retry)
        while True:
            try:
                with self._t.stream(stream.call()) as response:
                    for line in response.iter_lines():
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
            time.sleep(delay)


class Models:
    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    def list(self, *, page_size: int = PAGE_SIZE) -> Iterator[ModelSummary]:
        return self._t.pages(lambda cursor: _calls.list_models(cursor, page_size))

    def get(self, name: str) -> Model:
        return self._t.send(_calls.get_model(name))

    def version(self, name: str, version: int) -> ModelVersion:
        return self._t.send(_calls.get_version(name, version))

    def delete_version(self, name: str, version: int) -> None:
        self._t.send(_calls.delete_version(name, version))

    def set_alias(self, name: str, alias: str, version: int) -> Alias:
        return self._t.send(_calls.set_alias(name, alias, version))

    def delete_alias(self, name: str, alias: str) -> None:
        self._t.send(_calls.delete_alias(name, alias))

    def predict(
        self, name: str, inputs: builtins.list[Any], version: int | str | None = None
    ) -> Prediction:
        """One answer per row of `inputs`; `version`: a number or an alias (default: the
        production alias if set, else the latest version)."""
        return self._t.send(_calls.predict(name, inputs, version))

    def generate(
        self, name: str, prompt: str, *, version: int | str | None = None, **options: Any
    ) -> Generation:
        """Continue `prompt`; options: max_new_tokens, min_new_tokens, temperature, top_p,
        seed."""
        return self._t.send(_calls.generate(name, prompt, version, False, options))

    def generate_stream(
        self, name: str, prompt: str, *, version: int | str | None = None, **options: Any
    ) -> Iterator[Token]:
        """generate's tokens as they are made: "".join(t["text"] for t in ...) is the text."""
        tokens = TokenStream()
        with self._t.stream(_calls.generate(name, prompt, version, True, options)) as response:
            for line in response.iter_lines():
                token = tokens.feed(line)
                if token is not None:
                    yield token

    @overload
    def artifact(self, name: str, version: int, format: str = ..., path: None = None) -> bytes: ...

    @overload
    def artifact(
        self, name: str, version: int, format: str = ..., *, path: str | os.PathLike[str]
    ) -> Path: ...

    def artifact(
        self,
        name: str,
        version: int,
        format: str = "safetensors",
        path: str | os.PathLike[str] | None = None,
    ) -> bytes | Path:
        """A version's file (format safetensors, onnx or hf): its bytes, or with `path` (a
        file, or a folder to put the server's file name in) the path written."""
        with self._t.stream(_calls.artifact(name, version, format)) as response:
            if path is None:
                return response.read()
            download = Download(path, response)
            try:
                for chunk in response.iter_bytes():
                    download.write(chunk)
            except BaseException:
                download.abandon()
                raise
            return download.finish()


class Keys:
    """API keys; every method needs an admin key."""

    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    def create(self, name: str | None, scopes: list[str], project: str | None = None) -> KeyCreated:
        """A new key (`name` None: the server names it); the answer's `key` is its secret,
        shown this once."""
        return self._t.send(_calls.create_key(name, scopes, project))

    def list(self, *, page_size: int = PAGE_SIZE) -> Iterator[Key]:
        return self._t.pages(lambda cursor: _calls.list_keys(cursor, page_size))

    def revoke(self, key_id: str) -> None:
        self._t.send(_calls.revoke_key(key_id))


class Workers:
    """The worker nodes: pool, devices, capacity, running jobs, state; needs an admin key."""

    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    def list(self, pool: str | None = None, *, page_size: int = PAGE_SIZE) -> Iterator[Worker]:
        return self._t.pages(lambda cursor: _calls.list_workers(pool, cursor, page_size))


class Client:
    """trainserve's API. `url` defaults to TRAINSERVE_URL (else http://127.0.0.1:8000) and
    `api_key` to TRAINSERVE_KEY; `project` names the project an admin key acts in.
    Reads are retried `retries` times after a transport error or a 503, and so is submit."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        project: str | None = None,
        timeout: float = 30,
        retries: int = 3,
    ) -> None:
        self._transport = _Transport(settings(url, api_key, project, timeout, retries))
        self.datasets = Datasets(self._transport)
        self.base_models = BaseModels(self._transport)
        self.jobs = Jobs(self._transport)
        self.models = Models(self._transport)
        self.keys = Keys(self._transport)
        self.workers = Workers(self._transport)

    @property
    def url(self) -> str:
        return self._transport.config.url

    def close(self) -> None:
        self._transport.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

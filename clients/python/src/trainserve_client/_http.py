"""The request layer Client and AsyncClient share: a Call says what to send and how to read
the answer; this module turns it into httpx arguments, decides retries, checks answers and
writes downloads. Only the transport (httpx.Client or httpx.AsyncClient, and how to sleep)
differs between the two clients."""

import os
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import httpx

from trainserve_client._version import __version__
from trainserve_client.errors import retry_after

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8000"
PROJECT_HEADER = "X-Trainserve-Project"
# A file to upload: a path, its bytes, or a file opened in binary mode.
Source = str | os.PathLike[str] | bytes | IO[bytes]


def json_body(response: httpx.Response) -> Any:
    return response.json()


def no_body(response: httpx.Response) -> None:
    return None


@dataclass(frozen=True)
class Upload:
    """A multipart body: one file field `file` and form fields."""

    source: Source
    form: dict[str, str]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request of the API and how its answer is read."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    upload: Upload | None = None
    # Safe to send again after a transport error or a 503: reads, and submits that carry
    # an Idempotency-Key.
    retry: bool = False
    # Seconds to wait for data on an open stream or a slow answer, if longer than the
    # client's timeout (an event stream's keep-alives come every 15 s).
    read_timeout: float | None = None
    parse: Callable[[httpx.Response], T] = json_body


@dataclass(frozen=True)
class Retry:
    """How many times, and how long apart, a retryable call is sent again."""

    retries: int = 3
    base_s: float = 0.25
    max_s: float = 8.0

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float | None:
        """The wait before sending again after `attempt` (1 = the first send) ended in a
        transport error (response None) or in `response`; None: do not send again."""
        if attempt > self.retries:
            return None
        if response is not None:
            if response.status_code != 503:
                return None
            after = retry_after(response)
            if after is not None:
                return min(after, self.max_s)
        return self.backoff(attempt)

    def backoff(self, attempt: int, base_s: float | None = None) -> float:
        # Jitter, so that clients refused together do not come back together.
        step = (self.base_s if base_s is None else base_s) * 2.0 ** (attempt - 1)
        return min(self.max_s, step) * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class Settings:
    url: str
    headers: dict[str, str]
    timeout: float
    retry: Retry

    def http_options(self) -> dict[str, Any]:
        """The keyword arguments of httpx.Client / httpx.AsyncClient."""
        return {"base_url": self.url, "headers": self.headers, "timeout": self.timeout}

    def retry_delay(
        self, call: Call[Any], attempt: int, response: httpx.Response | None
    ) -> float | None:
        """The wait before sending `call` again, or None: answer (or raise) now."""
        return self.retry.delay(attempt, response) if call.retry else None

    def request_args(self, call: Call[Any]) -> AbstractContextManager[dict[str, Any]]:
        return request_args(call, self.timeout)


def settings(
    url: str | None, api_key: str | None, project: str | None, timeout: float, retries: int
) -> Settings:
    """The client's settings; url and key default to TRAINSERVE_URL and TRAINSERVE_KEY."""
    url = url or os.environ.get("TRAINSERVE_URL") or DEFAULT_URL
    key = api_key if api_key is not None else os.environ.get("TRAINSERVE_KEY")
    headers = {"User-Agent": f"trainserve-client/{__version__}"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if project:
        headers[PROJECT_HEADER] = project
    return Settings(url.rstrip("/"), headers, timeout, Retry(retries=retries))


@contextmanager
def request_args(call: Call[Any], timeout: float) -> Iterator[dict[str, Any]]:
    """The arguments of httpx's build_request for `call`; an uploaded file stays open
    while the block runs."""
    args: dict[str, Any] = {
        "method": call.method,
        "url": call.path,
        "params": call.params,
        "json": call.json,
        "headers": call.headers,
    }
    if call.read_timeout is not None and call.read_timeout > timeout:
        args["timeout"] = httpx.Timeout(timeout, read=call.read_timeout)
    with ExitStack() as stack:
        if call.upload is not None:
            args["files"] = {"file": stack.enter_context(_file(call.upload.source))}
            args["data"] = call.upload.form
        yield args


@contextmanager
def _file(source: Source) -> Iterator[tuple[str, bytes | IO[bytes]]]:
    """(filename, content) for a multipart file field; a path is opened here and streamed."""
    if isinstance(source, bytes):
        yield "upload", source
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        with path.open("rb") as file:
            yield path.name, file
    else:
        name = getattr(source, "name", None)  # an open file's path (an int for a raw fd)
        yield Path(name).name if isinstance(name, str) else "upload", source


def form_fields(fields: dict[str, Any]) -> dict[str, str]:
    """Form values as the server reads them: None left out, booleans as true/false."""
    out = {}
    for name, value in fields.items():
        if value is None:
            continue
        out[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


class Deadline:
    """The polling of Jobs.wait: when to look again, and when to give up."""

    def __init__(self, what: str, timeout: float | None, interval: float) -> None:
        self.what = what
        self.interval = interval
        self.end = None if timeout is None else time.monotonic() + timeout

    def sleep_s(self) -> float:
        """Seconds to sleep before the next look; TimeoutError once the time is up."""
        if self.end is None:
            return self.interval
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out waiting for {self.what}")
        return min(self.interval, left)


class Download:
    """An artifact written to a file: into a temporary file beside it, then moved into
    place, so the path holds either nothing new or the whole file."""

    def __init__(self, path: str | os.PathLike[str], response: httpx.Response) -> None:
        target = Path(path)
        if target.is_dir():
            target = target / _attachment_name(response)
        self.path = target
        self.partial = target.with_name(f".{target.name}.part")
        self._file = self.partial.open("wb")

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)

    def finish(self) -> Path:
        self._file.close()
        os.replace(self.partial, self.path)
        return self.path

    def abandon(self) -> None:
        self._file.close()
        self.partial.unlink(missing_ok=True)


def _attachment_name(response: httpx.Response) -> str:
    """The file name the server gave (Content-Disposition), without any folder in it."""
    disposition = response.headers.get("content-disposition", "")
    match = re.search(r'filename="?([^";]+)"?', disposition)
    name = Path(match[1]).name if match else ""
    return name if name not in ("", ".", "..") else "artifact"

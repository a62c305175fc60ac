"""The load generator of bench/predict.py: closed-loop HTTP load over keep-alive connections.

`concurrency` workers, each with its own keep-alive HTTP/1.1 connection, each sending its next
request when its last one answers: a warm-up (not counted), then a measured window. The client
is h11 over asyncio streams by default, or httpx.AsyncClient (bench/README.md says why).
"""

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11
import httpx


class H11Client:
    """One keep-alive HTTP/1.1 connection, one request at a time: h11 (the HTTP/1.1 parser
    under httpx) over asyncio streams. About 0.1-0.2 ms of CPU a request here, against
    ~1 ms for httpx.AsyncClient (bench/README.md), so the load generator is not the limit."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "", parts.port or 80, parts.path
        self.headers = [("Host", parts.netloc), *headers.items()]
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._http = h11.Connection(h11.CLIENT)

    async def post(self, body: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
            self._http = h11.Connection(h11.CLIENT)
        reader, writer = self._streams
        http = self._http
        headers = [*self.headers, ("Content-Length", str(len(body)))]
        request = h11.Request(method="POST", target=self.path, headers=headers)
        writer.write(
            http.send(request) + http.send(h11.Data(data=body)) + http.send(h11.EndOfMessage())
        )
        status, chunks = 0, []
        while not isinstance(event := http.next_event(), h11.EndOfMessage):
            if event is h11.NEED_DATA:
                http.receive_data(await reader.read(1 << 16))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection mid-response")
        if http.our_state is h11.MUST_CLOSE or http.their_state is h11.MUST_CLOSE:
            await self.close()
        else:
            http.start_next_cycle()
        return status, b"".join(chunks)

    async def close(self) -> None:
        """Also after an error: the next request opens a new connection."""
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class HttpxClient:
    """httpx.AsyncClient with a pool of one connection (--client httpx). One per worker: one
    client with a pool of 32 costs ~4 ms of CPU a request here (bench/README.md)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.client = httpx.AsyncClient(limits=limits, headers=headers, timeout=60)

    async def post(self, body: bytes) -> tuple[int, bytes]:
        response = await self.client.post(self.url, content=body)
        return response.status_code, response.content

    async def close(self) -> None:
        await self.client.aclose()


CLIENTS = {"h11": H11Client, "httpx": HttpxClient}
REQUEST_ERRORS = (OSError, TimeoutError, h11.ProtocolError, httpx.HTTPError)


@dataclass
class Load:
    """What one measured window saw."""

    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    errors: int = 0  # non-2xx answers and exceptions
    first_error: str = ""
    wall_s: float = 0.0  # includes the requests still in flight when the window closes
    server_cpu_s: float = 0.0  # server_cpu_seconds() over the window
    client_cpu_s: float = 0.0  # this process, over the window


async def closed_loop(
    url: str,
    headers: dict[str, str],
    concurrency: int,
    body: bytes,
    warmup_s: float,
    seconds: float,
    client: str,
    server_cpu_seconds: Callable[[], float],
) -> Load:
    """`concurrency` workers, each with its own keep-alive connection, each sending its next
    request when its last one answers. server_cpu_seconds() is read before and after the
    measured window: the server's CPU time so far (its whole process tree)."""
    clients = [CLIENTS[client](url, headers) for _ in range(concurrency)]
    try:
        await _phase(clients, body, warmup_s, server_cpu_seconds)
        return await _phase(clients, body, seconds, server_cpu_seconds)
    finally:
        for each in clients:
            await each.close()


async def _phase(
    clients: list[H11Client] | list[HttpxClient],
    body: bytes,
    seconds: float,
    server_cpu_seconds: Callable[[], float],
) -> Load:
    result = Load()
    stop_at = time.perf_counter() + seconds

    async def worker(client: H11Client | HttpxClient) -> None:
        while (sent := time.perf_counter()) < stop_at:
            try:
                async with asyncio.timeout(60):
                    status, content = await client.post(body)
                error = "" if 200 <= status < 300 else f"{status} {content[:300]!r}"
            except REQUEST_ERRORS as exc:
                error = f"{type(exc).__name__}: {exc}"
                await client.close()
            if error:
                result.errors += 1
                result.first_error = result.first_error or error[:300]
            else:
                result.latencies.append(time.perf_counter() - sent)

    server_cpu, client_cpu = server_cpu_seconds(), time.process_time()
    began = time.perf_counter()
    await asyncio.gather(*(worker(client) for client in clients))
    result.wall_s = time.perf_counter() - began
    result.server_cpu_s = server_cpu_seconds() - server_cpu
    result.client_cpu_s = time.process_time() - client_cpu
    return result

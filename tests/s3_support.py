"""A real S3 endpoint for tests: moto's standalone server in a subprocess, and a TCP proxy
that puts faults in front of it (moto itself injects none)."""

import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from tests.support import Proc, base_env, free_port, wait_until

# An S3 error body, so botocore reads the 503 as S3's own "slow down", which it retries.
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)


def use_aws(mp: pytest.MonkeyPatch, tmp: Path, endpoint: str | None = None) -> None:
    """Set the AWS variables as an operator sets them for the store (this process and what
    it starts), with no config or credentials file of this machine's read."""
    none = str(tmp / "none")
    variables = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": none,
        "AWS_SHARED_CREDENTIALS_FILE": none,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": None,
        "AWS_PROFILE": None,
    }
    for name, value in variables.items():
        if value is None:
            mp.delenv(name, raising=False)
        else:
            mp.setenv(name, value)


@contextmanager
def moto_server(log_dir: Path) -> Iterator[str]:
    """`python -m moto.server` on a free port; its URL once it answers."""
    port = free_port()
    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = Proc(args, base_env(), log_dir / "moto.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url, proc), 30, "moto's S3 server to answer")
        yield url
    finally:
        proc.stop()


def _answers(url: str, proc: Proc) -> bool:
    assert proc.alive(), f"moto exited:\n{proc.output()[-2000:]}"
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.TransportError:
        return False


class FaultProxy:
    """Forwards bind:port (an ephemeral port) to upstream_host:upstream_port. fail([...])
    makes the next connections fail, one mode each: "drop" (closed at once), "503" (S3's
    SlowDown), "hang" (never answered); it also cuts the connections open now, so the
    client's next request reconnects. Without faults it is a plain TCP forwarder (the
    multi-host test's way from a namespace to the root namespace's services)."""

    def __init__(
        self, upstream_port: int, *, bind: str = "127.0.0.1", upstream_host: str = "127.0.0.1"
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server((bind, 0))
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://{bind}:{self.port}"
        self.faults: list[str] = []
        self.served: list[str] = []  # the faults served so far, in order
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def fail(self, modes: list[str]) -> None:
        with self.lock:
            self.faults = list(modes)
            cut, self.open = self.open, []
        for sock in cut:
            _close(sock)

    def close(self) -> None:
        self.fail([])
        _close(self.listener)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                mode = self.faults.pop(0) if self.faults else None
                if mode:
                    self.served.append(mode)
            threading.Thread(target=self._serve, args=(conn, mode), daemon=True).start()

    def _serve(self, conn: socket.socket, mode: str | None) -> None:
        if mode == "drop":
            _close(conn)
        elif mode == "503":
            _read_head(conn)
            head = (
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(SLOW_DOWN)}\r\nConnection: close\r\n\r\n"
            )
            with suppress(OSError):
                conn.sendall(head.encode() + SLOW_DOWN)
            _close(conn)
        elif mode == "hang":
            with self.lock:
                self.open.append(conn)
        else:
            self._pipe(conn)

    def _pipe(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            _close(conn)
            return
        upstream.settimeout(None)
        with self.lock:
            self.open += [conn, upstream]
        threading.Thread(target=_copy, args=(upstream, conn), daemon=True).start()
        _copy(conn, upstream)


def _read_head(conn: socket.socket) -> None:
    data = b""
    with suppress(OSError):
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk


def _copy(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(1 << 16):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        _close(src)
        _close(dst)


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()

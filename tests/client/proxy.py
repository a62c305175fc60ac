"""A TCP proxy in front of the API that cuts connections where a test says: the way a
network drops a stream, or loses an answer the server already sent."""

import contextlib
import socket
import threading
from collections.abc import Callable

from tests.support import free_port

# Given the bytes the server has sent on a connection so far: how many of them reach the
# client before the connection is cut, or None to pass them all.
CutRule = Callable[[bytes], int | None]


class CuttingProxy:
    def __init__(self, upstream_port: int, cut: CutRule, cuts: int = 1) -> None:
        """The first `cuts` connections that `cut` picks are cut; the rest pass untouched."""
        self.upstream_port, self.rule, self.cuts_left = upstream_port, cut, cuts
        self.cut_count = 0
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=_pump, args=(downstream, upstream), daemon=True).start()
            threading.Thread(target=self._answer, args=(upstream, downstream), daemon=True).start()

    def _answer(self, upstream: socket.socket, downstream: socket.socket) -> None:
        sent = b""
        try:
            while chunk := upstream.recv(65536):
                keep = self._cut_at(sent + chunk)
                if keep is not None:
                    downstream.sendall((sent + chunk)[len(sent) : keep])
                    return
                downstream.sendall(chunk)
                sent += chunk
        except OSError:
            pass
        finally:
            _close(upstream, downstream)

    def _cut_at(self, received: bytes) -> int | None:
        with self._lock:
            if self.cuts_left == 0:
                return None
            keep = self.rule(received)
            if keep is not None:
                self.cuts_left -= 1
                self.cut_count += 1
            return keep


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        _close(source, sink)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):  # the other side may have closed it already
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

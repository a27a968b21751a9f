"""A counting proxy in front of the Docker engine's socket: what the engine is asked, request by request.

A cycle run as a real process is pointed at it with DOCKER_HOST=unix://<proxy.socket>; every byte goes
through unchanged to the real engine, and each request line (`GET /v1.41/containers/json?...`) is recorded.
Requests are found by their HTTP framing (Content-Length, or chunked transfer encoding), so one that follows
another's body on the same keep-alive connection is counted too.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


class RequestStream:
    """One connection's client-to-engine bytes, split into requests by their framing, wherever a read happens to
    begin or end."""

    def __init__(self) -> None:
        self.buffer = b""
        self.body_left = 0  # bytes of the current body (or chunk, with its CRLF) still to skip
        self.chunked = False

    def feed(self, data: bytes) -> list[str]:
        """The request lines ("METHOD target") that `data` completes."""
        self.buffer += data
        found: list[str] = []
        while True:
            if self.body_left:
                take = min(self.body_left, len(self.buffer))
                self.buffer, self.body_left = self.buffer[take:], self.body_left - take
                if self.body_left:
                    return found
            if self.chunked:
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    return found
                size = int(self.buffer[:end].split(b";")[0], 16)
                self.buffer = self.buffer[end + 2:]
                if size == 0:  # the last chunk; the SDK sends no trailers, only the closing CRLF
                    self.chunked, self.body_left = False, 2
                else:
                    self.body_left = size + 2
                continue
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return found
            head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4:]
            request_line, *header_lines = head.split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            found.append(f"{method} {target}")
            headers = {name.strip().lower(): value.strip()
                       for name, _, value in (line.partition(":") for line in header_lines)}
            self.chunked = headers.get("transfer-encoding", "").lower() == "chunked"
            self.body_left = 0 if self.chunked else int(headers.get("content-length") or 0)



class CountingProxy:
    def __init__(self, upstream: str = "/var/run/docker.sock") -> None:
        self.upstream = upstream
        self._dir = tempfile.mkdtemp(prefix="docker-proxy-")
        self.socket_path = os.path.join(self._dir, "docker.sock")
        self.requests: list[str] = []
        self.sent = bytearray()  # everything the client sent, for tests that look at headers (first 16 MiB)
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.socket_path)
        self._server.listen(64)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket_path}"

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.sent.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, count: bool) -> None:
        stream = RequestStream()
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if count:
                    found = stream.feed(chunk)
                    with self._lock:
                        self.requests += found
                        if len(self.sent) < 16 * 2**20:
                            self.sent += chunk
                target.sendall(chunk)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.close()
        Path(self.socket_path).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)


@contextlib.contextmanager
def counting_proxy(upstream: str = "/var/run/docker.sock") -> Iterator[CountingProxy]:
    proxy = CountingProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()

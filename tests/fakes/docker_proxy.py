"""A counting proxy in front of the Docker engine's socket: what the engine is asked, request by request.

A cycle run as a real process is pointed at it with DOCKER_HOST=unix://<proxy.socket>; every byte goes
through unchanged to the real engine, and each request line (`GET /v1.41/containers/json?...`) is recorded.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

_REQUEST_LINE = re.compile(rb"(?:^|\r\n)(GET|POST|PUT|DELETE|HEAD) (\S+) HTTP/1\.[01]\r\n")


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
        tail = b""
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if count:
                    seen = tail + chunk
                    with self._lock:
                        if len(self.sent) < 16 * 2**20:
                            self.sent += chunk
                        self.requests += [f"{m[1].decode()} {m[2].decode()}" for m in _REQUEST_LINE.finditer(seen)
                                          if m.end() > len(tail)]
                    tail = seen[-512:]
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

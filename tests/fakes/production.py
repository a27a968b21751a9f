"""A local stand-in for production: a threaded HTTP server on 127.0.0.1 that answers as told.

Each request takes the next behaviour from `behaviours` (the last one repeats):
an int is the status code to answer with, `HANG` accepts the request and never answers,
`ENDLESS` answers 200 and then streams a body that never ends (a check that downloads
bodies would never finish). Two trickle, one byte every `trickle_s` seconds (0.5 by default), so that
no single read ever waits long enough to time out: `TRICKLE_HEAD` sends a 200's status line and headers
that way, `TRICKLE_BODY` sends them at once and then trickles a body that never ends.
`refused_url()` gives a URL where nothing listens.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

HANG: Literal["hang"] = "hang"
ENDLESS: Literal["endless"] = "endless"
TRICKLE_HEAD: Literal["trickle-head"] = "trickle-head"
TRICKLE_BODY: Literal["trickle-body"] = "trickle-body"
Behaviour = int | Literal["hang", "endless", "trickle-head", "trickle-body"]


class ProductionServer:
    def __init__(self, behaviours: Sequence[Behaviour], trickle_s: float = 0.5) -> None:
        if not behaviours:
            raise ValueError("give at least one behaviour")
        self._behaviours = list(behaviours)
        self.trickle_s = trickle_s
        self._lock = threading.Lock()
        self.requests: list[str] = []  # request paths, in arrival order
        # Set on stop: hanging and streaming handlers end, so the server can shut down.
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-production", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def answer(self, *behaviours: Behaviour) -> None:
        """From now on, answer as told (the last one repeating): production changing under a running fleet."""
        if not behaviours:
            raise ValueError("give at least one behaviour")
        with self._lock:
            self._behaviours = list(behaviours)
            self.requests.clear()

    def _next_behaviour(self, path: str) -> Behaviour:
        with self._lock:
            index = min(len(self.requests), len(self._behaviours) - 1)
            self.requests.append(path)
            return self._behaviours[index]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        production = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                behaviour = production._next_behaviour(self.path)
                if behaviour == HANG:
                    production._stopping.wait()
                    return
                if behaviour == TRICKLE_HEAD:
                    head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"
                    self._trickle(head)
                    return
                if behaviour == TRICKLE_BODY:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()  # no Content-Length: the body lasts until the connection closes
                    self._trickle(b"x" * 1_000_000)
                    return
                if behaviour == ENDLESS:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.end_headers()
                    chunk = b"x" * 65536
                    try:
                        while not production._stopping.is_set():
                            self.wfile.write(chunk)
                    except OSError:  # the client closed the connection: what a health check should do
                        return
                    return
                body = f"status {behaviour}\n".encode()
                self.send_response(int(behaviour))
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _trickle(self, data: bytes) -> None:
                try:
                    for index in range(len(data)):
                        if production._stopping.wait(production.trickle_s):
                            return
                        self.wfile.write(data[index : index + 1])
                except OSError:  # the client gave up and closed the connection
                    return

            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

        return Handler

    def start(self) -> ProductionServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def production(*behaviours: Behaviour, trickle_s: float = 0.5) -> Iterator[ProductionServer]:
    server = ProductionServer(behaviours, trickle_s).start()
    try:
        yield server
    finally:
        server.stop()


def refused_port() -> int:
    """A port on 127.0.0.1 where nothing listens: bound, then closed, so connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def refused_url() -> str:
    return f"http://127.0.0.1:{refused_port()}/health"

"""The scheduler's HTTP server: a few GET routes, bounded in connections, time and memory.

Anyone who can reach the metrics port can open connections to it, and an idle one costs the server
whatever it holds for it. prometheus_client's own server gives each connection a thread and waits on
it forever: 1,100 idle sockets held a scheduler at 560 threads and 565 open files, still rising. This
one holds every connection in a single thread (a `selectors` loop), so threads stay constant, and bounds the rest:

- a connection has REQUEST_TIMEOUT_S to send its whole request head (a slow sender is dropped as
  surely as a silent one), and as long again to take the response; one request per connection;
- at most MAX_CONNECTIONS are open at once; one more closes the oldest. A scrape takes milliseconds,
  so the oldest is the one least likely to be a request in progress, and a new scrape always gets in
  (refusing the newcomer instead would let 64 idle sockets lock every scrape out);
- a request head is at most MAX_HEAD_BYTES, and no request body is read.

So its open files are at most MAX_CONNECTIONS, the listening socket and the selector, whatever a client does.
A route is a plain function of the request to a `Response`, run in the loop's thread: each answers in milliseconds.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

REQUEST_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 64
MAX_HEAD_BYTES = 16 * 1024
# Connections the kernel completes while the loop is busy; beyond it a client's connect waits (SYN retries).
LISTEN_BACKLOG = 128
# Connections taken per wake of the loop, so a flood of them cannot keep it from serving the ones it holds.
_ACCEPT_BATCH = 16
_READ_BYTES = 4096
# The loop wakes at least this often, to see a stop request.
_WAKE_S = 0.2


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # names lower-cased


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


Route = Callable[[Request], Response]


def text_response(status: HTTPStatus, text: str) -> Response:
    return Response(int(status), (text + "\n").encode())


def parse_head(head: bytes) -> Request:
    """The request line and headers of one request; ValueError when they are not HTTP/1.x."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError("not an HTTP/1.x request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError("a header line without a colon")
        headers[name.strip().lower()] = value.strip()
    target = urlsplit(parts[1])
    return Request(method=parts[0], path=target.path, query=parse_qs(target.query), headers=headers)


def render_response(response: Response, *, head_only: bool) -> bytes:
    status = HTTPStatus(response.status)
    headers = {
        "Content-Type": response.content_type,
        "Content-Length": str(len(response.body)),
        "Connection": "close",
        **response.headers,
    }
    head = f"HTTP/1.1 {status.value} {status.phrase}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\n").encode("latin-1") + (b"" if head_only else response.body)


@dataclass
class _Connection:
    sock: socket.socket
    deadline: float  # monotonic: the request head must be in by then, later the response out
    received: bytearray = field(default_factory=bytearray)
    outgoing: memoryview | None = None  # the response once there is one, what is left of it to send


class HttpServer:
    """Serves `routes` (path -> function) on one port from one daemon thread; see the module's text for its bounds.

    One `selectors` loop, closing what it drops at once: the open files it holds are exactly the
    listening socket and the connections it has accepted and not dropped.
    """

    def __init__(
        self,
        routes: Mapping[str, Route],
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self._routes = dict(routes)
        self._max_connections = max_connections
        self._timeout_s = request_timeout_s
        self._open: dict[int, _Connection] = {}  # by file descriptor, in the order accepted: the oldest first
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._port = 0
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="http-server", daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on (the one picked, when started on port 0)."""
        return self._port

    def start(self, port: int, addr: str) -> HttpServer:
        """Bind now (an OSError, such as the port in use, reaches the caller), then serve in the thread."""
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        self._listener = socket.create_server((addr, port), family=family, backlog=LISTEN_BACKLOG)
        self._listener.setblocking(False)
        self._port = int(self._listener.getsockname()[1])
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        assert self._listener is not None
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                wait = min((c.deadline for c in self._open.values()), default=now + _WAKE_S) - now
                for key, _ in self._selector.select(min(max(wait, 0.0), _WAKE_S)):
                    if key.data is None:
                        self._accept()
                    else:
                        try:
                            self._serve(key.data)
                        except Exception:  # a fault with one connection must not end the server for all the others
                            self._drop(key.fd)
                now = time.monotonic()
                for fd in [fd for fd, conn in self._open.items() if conn.deadline <= now]:
                    self._drop(fd)  # silent, slow, or not taking its response: dropped
        finally:
            for fd in list(self._open):
                self._drop(fd)
            self._selector.close()
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of files, or the connection reset before it was taken: try at the next wake
                return
            sock.setblocking(False)
            while len(self._open) >= self._max_connections:
                self._drop(next(iter(self._open)))
            self._open[sock.fileno()] = _Connection(sock, time.monotonic() + self._timeout_s)
            self._selector.register(sock, selectors.EVENT_READ, self._open[sock.fileno()])

    def _serve(self, conn: _Connection) -> None:
        fd = conn.sock.fileno()
        try:
            if conn.outgoing is None:
                data = conn.sock.recv(_READ_BYTES)
                if not data:
                    self._drop(fd)
                    return
                conn.received += data
                end = conn.received.find(b"\r\n\r\n")
                if end == -1:
                    if len(conn.received) > MAX_HEAD_BYTES:
                        self._drop(fd)
                    return
                conn.outgoing = memoryview(self._answer(bytes(conn.received[: end + 4])))
                conn.deadline = time.monotonic() + self._timeout_s
                self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
            sent = conn.sock.send(conn.outgoing)
            conn.outgoing = conn.outgoing[sent:]
            if not conn.outgoing:
                conn.sock.shutdown(socket.SHUT_WR)
                self._drop(fd)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset or gone
            self._drop(fd)

    def _drop(self, fd: int) -> None:
        conn = self._open.pop(fd, None)
        if conn is None:
            return
        self._selector.unregister(conn.sock)
        conn.sock.close()

    def _answer(self, head: bytes) -> bytes:
        try:
            request = parse_head(head)
        except ValueError as exc:
            return render_response(text_response(HTTPStatus.BAD_REQUEST, f"bad request: {exc}"), head_only=False)
        return render_response(self._respond(request), head_only=request.method == "HEAD")

    def _respond(self, request: Request) -> Response:
        route = self._routes.get(request.path)
        if route is None:
            return text_response(HTTPStatus.NOT_FOUND, f"not found: try {', '.join(sorted(self._routes))}")
        if request.method not in ("GET", "HEAD"):
            return Response(int(HTTPStatus.METHOD_NOT_ALLOWED), b"GET or HEAD only\n", headers={"Allow": "GET, HEAD"})
        try:
            return route(request)
        except Exception as exc:  # a fault in one page must not take the server down with it
            return text_response(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}")

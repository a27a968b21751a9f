"""The scheduler's HTTP server (coordinator.web) over real sockets: its routes, and its bounds against idle,
slow and too many connections. The thousand idle sockets against a real scheduler are in test_schedule.py."""

from __future__ import annotations

import http.client
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from coordinator.web import MAX_HEAD_BYTES, HttpServer, Request, Response

TIMEOUT_S = 0.5


def hello(request: Request) -> Response:
    return Response(200, f"hello {request.query.get('who', ['?'])[0]}\n".encode())


@pytest.fixture
def server() -> Iterator[HttpServer]:
    served = HttpServer({"/hello": hello}, max_connections=4, request_timeout_s=TIMEOUT_S).start(0, "127.0.0.1")
    yield served
    served.stop()


def get(server: HttpServer, path: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def closed_within(sock: socket.socket, seconds: float) -> float:
    """How long until the server closed `sock` (recv sees the end); fails past `seconds`."""
    began = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for more than {seconds}s")
    except ConnectionResetError:
        pass
    return time.monotonic() - began


def test_routes_head_unknown_paths_and_methods(server: HttpServer) -> None:
    assert get(server, "/hello?who=you") == (200, b"hello you\n")
    assert get(server, "/hello", method="HEAD") == (200, b"")
    status, body = get(server, "/nowhere")
    assert status == 404 and b"/hello" in body
    assert get(server, "/hello", method="POST")[0] == 405


def test_a_request_that_is_not_http_gets_400() -> None:
    served = HttpServer({"/hello": hello}).start(0, "127.0.0.1")
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
            sock.sendall(b"HELLO\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    finally:
        served.stop()


def test_an_idle_connection_is_dropped_after_the_timeout(server: HttpServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        assert closed_within(sock, 5) >= TIMEOUT_S * 0.9


def test_a_slow_sender_is_dropped_at_the_timeout_however_steadily_it_sends(server: HttpServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        began = time.monotonic()
        sent = b""
        try:
            for byte in b"GET /hello HTTP/1.1\r\nHost: x\r\n":  # one byte every 50 ms: never a whole head in time
                sock.sendall(bytes([byte]))
                sent += bytes([byte])
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed_within(sock, 5)
        assert time.monotonic() - began < TIMEOUT_S + 1.5
        assert len(sent) < 30


def test_a_head_over_the_limit_is_dropped(server: HttpServer) -> None:
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
        pytest.raises((BrokenPipeError, ConnectionResetError)),
    ):
        sock.sendall(b"GET /hello HTTP/1.1\r\nX-Pad: " + b"a" * (MAX_HEAD_BYTES * 4))
        sock.sendall(b"\r\n\r\n")
        time.sleep(0.5)
        sock.sendall(b"more")


def test_past_the_cap_the_oldest_connection_is_dropped_and_a_scrape_still_answers(server: HttpServer) -> None:
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
    try:
        time.sleep(0.1)  # all four taken by the server
        assert get(server, "/hello?who=late") == (200, b"hello late\n")  # it took the place of the oldest
        assert closed_within(held[0], TIMEOUT_S / 2) < TIMEOUT_S / 2
    finally:
        for sock in held:
            sock.close()


def test_a_large_response_reaches_a_client_whole() -> None:
    body = bytes(range(256)) * 20_000  # 5 MB: many sends
    served = HttpServer({"/big": lambda request: Response(200, body, "application/octet-stream")}).start(0, "127.0.0.1")
    try:
        assert get(served, "/big") == (200, body)
    finally:
        served.stop()


def test_a_fault_in_one_page_or_its_response_leaves_the_server_serving() -> None:
    def broken(request: Request) -> Response:
        raise RuntimeError("boom")

    routes = {"/hello": hello, "/broken": broken, "/unsendable": lambda request: Response(999, b"")}
    served = HttpServer(routes).start(0, "127.0.0.1")
    try:
        status, body = get(served, "/broken")
        assert (status, body) == (500, b"internal error: RuntimeError\n")
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            get(served, "/unsendable")
        assert get(served, "/hello?who=still") == (200, b"hello still\n")
    finally:
        served.stop()

"""HTTP for the steps and edges: the one retry policy for reads, and requests bounded by the wall clock.

- `read_retry(...)` is urllib3's `Retry`, set up once for every read the coordinator makes (the health
  check's GET, the GitHub edge's GraphQL queries and REST reads). `mount(session, retry)` puts it on a
  requests session's adapters. It retries connection failures (refused, DNS, connect timeout), dropped or
  timed-out reads, and the server errors given (5xx by default), with urllib3's exponential backoff;
  it never retries a TLS failure or any other error, nor a 4xx, nor a 403/429 rate limit (those are the
  GitHub edge's to judge, Retry-After or not). It honours Retry-After on the statuses it retries, but
  only when the wait and one more attempt fit before the request's deadline; otherwise the last answer
  (or error) stands.
- `NO_RETRY` is what a write gets: a merge is never sent twice.
- `send(session, method, url, deadline=..., what=..., attempts=...)` makes one request, its retries
  included, that returns or raises `DeadlineExceeded` by `deadline` (a `time.monotonic()` instant),
  whatever the server does: a status line, headers or body trickled a byte at a time, a slow DNS lookup,
  a Retry-After. `Attempts` counts the HTTP attempts it made.
- `classify_error(exc)` says in a word why no answer came (timeout, tls, dns, refused, ...), never with the URL's
  text: the health check's error, and the cause the GitHub edges name beside the host they could not reach
  (`url_host(url)`: the host and port alone, never userinfo, path or query).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Collection, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    InvalidHeader,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from coordinator.deadline import DeadlineExceeded, run_with_deadline

__all__ = [
    "MIN_ATTEMPT_S",
    "NO_RETRY",
    "SERVER_ERRORS",
    "Attempts",
    "ReadRetry",
    "classify_error",
    "mount",
    "read_retry",
    "send",
    "url_host",
]

SERVER_ERRORS = frozenset(range(500, 600))
# An attempt with less time than this before its deadline could not get an answer; it is not started.
MIN_ATTEMPT_S = 0.1
# requests' own default, named: no retry of any kind, a read error raised as it is.
NO_RETRY = Retry(total=0, read=False)


@dataclass
class Attempts:
    """What one `send` did: HTTP attempts started (retries included) and why it stopped retrying."""

    count: int = 0
    last_started: float | None = None  # time.monotonic() when the last attempt started
    out_of_time: bool = False  # a retry (or the request itself) was due but did not fit before the deadline


@dataclass(frozen=True)
class _Bound:
    deadline: float
    min_attempt_s: float
    attempts: Attempts


# The request in progress, as `send` set it up; run_with_deadline hands its context to the worker thread.
_current: ContextVar[_Bound | None] = ContextVar("coordinator_http_request", default=None)


class ReadRetry(Retry):
    """urllib3's Retry, with the decisions that are not its to make taken back:

    - only the statuses in `status_forcelist` are retried (urllib3 also retries 413, 429 and 503 when they
      carry Retry-After; here a rate limit is the caller's business);
    - no retry starts unless its wait (Retry-After or backoff) and `MIN_ATTEMPT_S` end before the deadline
      of the request in progress (see `send`); then the last answer, or error, stands;
    - an unreadable Retry-After falls back to the backoff instead of failing the request.

    It also counts each attempt into the request's `Attempts`.
    """

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        return self._is_method_retryable(method) and status_code in self.status_forcelist

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        try:
            return super().get_retry_after(response)
        except InvalidHeader:
            return None

    def wait_before_next(self, response: BaseHTTPResponse | None) -> float:
        """How long `sleep` will wait before the next attempt: Retry-After if there is one, else the backoff."""
        if self.respect_retry_after_header and response is not None:
            retry_after = self.get_retry_after(response)
            if retry_after:
                return retry_after
        return self.get_backoff_time()

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        bound = _current.get()
        if bound is not None:
            wait = new.wait_before_next(response)
            if time.monotonic() + wait + bound.min_attempt_s > bound.deadline:
                bound.attempts.out_of_time = True
                reason = error or ResponseError(f"no time left to retry after {wait:.1f} s")
                raise MaxRetryError(_pool, url, reason) from reason  # type: ignore[arg-type]
        return new

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        super().sleep(response)
        bound = _current.get()
        if bound is not None:  # the next attempt starts now
            bound.attempts.count += 1
            bound.attempts.last_started = time.monotonic()


def read_retry(
    *,
    attempts: int = 3,
    backoff_s: float = 0.5,
    statuses: Collection[int] = SERVER_ERRORS,
    methods: Collection[str] = ("GET", "HEAD"),
) -> ReadRetry:
    """The retry policy for reads: at most `attempts` attempts of `methods` in all.

    The first retry is immediate, then the waits double from twice `backoff_s` (urllib3's backoff).
    `statuses` are the answers worth a second look (default: every 5xx). Mount it only where every
    request of `methods` is safe to repeat: the GitHub edge adds POST for its GraphQL queries.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    return ReadRetry(
        total=attempts - 1,
        connect=None,
        read=None,
        status=None,
        other=0,  # TLS failures and anything unforeseen: a second look will not change them
        redirect=False,  # requests follows redirects itself, or (allow_redirects=False) returns them
        allowed_methods=frozenset(m.upper() for m in methods),
        status_forcelist=frozenset(statuses),
        backoff_factor=backoff_s,
        raise_on_status=False,  # when retries end, the last answer is returned for the caller to judge
        respect_retry_after_header=True,
    )


def mount(session: requests.Session, retry: Retry) -> requests.Session:
    """Put `retry` on both of `session`'s adapters (http and https); returns the session."""
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    deadline: float,
    what: str,
    attempts: Attempts | None = None,
    min_attempt_s: float = MIN_ATTEMPT_S,
    **kwargs: Any,
) -> requests.Response:
    """`session.request(method, url, **kwargs)`, retries included, returned or cut off by `deadline`.

    Raises DeadlineExceeded (naming `what`, never the URL) when the time runs out, at once when less
    than `min_attempt_s` is left; requests' own exceptions otherwise. With `stream=False` (the default)
    the body is read within the deadline too. Socket timeouts are set to the time left, so that an
    abandoned request does not linger long after its deadline.
    """
    tally = attempts if attempts is not None else Attempts()
    left = deadline - time.monotonic()
    if left < min_attempt_s:
        tally.out_of_time = True
        raise DeadlineExceeded(what, max(left, 0.0), started=False)
    tally.count += 1
    tally.last_started = time.monotonic()
    token = _current.set(_Bound(deadline, min_attempt_s, tally))
    try:
        return run_with_deadline(
            lambda: session.request(method, url, timeout=(left, left), **kwargs), deadline, what
        )
    finally:
        _current.reset(token)


def url_host(url: str) -> str:
    """The host (and port) a request went to, without userinfo, path or query: safe to name in an error."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname or 'an unknown host'}{f':{port}' if port else ''}"


def classify_error(exc: requests.RequestException) -> str:
    """A short, URL-free name for why no answer came: timeout, tls, dns, refused, reset, or the kind."""
    if isinstance(exc, requests.Timeout):
        return "timeout"
    causes = list(_causes(exc))
    if isinstance(exc, requests.exceptions.SSLError) or any(isinstance(c, ssl.SSLError) for c in causes):
        return "tls"
    if any(isinstance(c, NameResolutionError | socket.gaierror) for c in causes):
        return "dns"
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "refused"
    if any(isinstance(c, ConnectionResetError) for c in causes):
        return "connection reset"
    if any(_is_timeout(c) for c in causes):
        return "timeout"
    if isinstance(exc, requests.ConnectionError):
        return "connection error"
    # InvalidURL, TooManyRedirects, ...: the class name says what, and holds no URL.
    return f"request failed ({type(exc).__name__})"


def _is_timeout(exc: BaseException) -> bool:
    # urllib3 reports a timeout in its own classes (a retry that ran out of time wraps one), and counts
    # a failed connection (NewConnectionError) as a connect timeout, which it is not.
    if isinstance(exc, NewConnectionError):
        return False
    return isinstance(exc, TimeoutError | socket.timeout | ReadTimeoutError | ConnectTimeoutError)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps: requests -> urllib3 MaxRetryError.reason -> OSError."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [getattr(current, "reason", None), current.__cause__, current.__context__, *current.args]
        pending.extend(item for item in linked if isinstance(item, BaseException))

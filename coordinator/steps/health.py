"""Health step: one HTTP GET of production, within a fixed time budget, with a small bounded retry.

The whole check, every attempt and pause included, fits in `HealthSettings.timeout_s`: each
attempt may use only the time that is left, so a hanging production cannot hold the cycle.
Only failures that a second look may clear are retried (no connection, or a 5xx answer); a
timeout has used the budget by definition, and a TLS error or a 4xx will not change in a second.

The body is never downloaded (the status line and headers are enough), and redirects are not
followed: a 3xx is itself the answer, judged against `HEALTH_EXPECT` (default 200-399).
Errors are fixed words ("timeout", "refused", "tls", "dns", "unexpected status 503", ...) and
never the exception's text, which would carry the URL and with it any token in its userinfo or query.

Two waits lie outside what requests can bound: resolving the host name (the system resolver's own
timeout applies) and a server that trickles its headers a byte at a time (the timeout is per read).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import requests
from urllib3.exceptions import NameResolutionError

from coordinator.report import HealthReport, HealthStatus
from coordinator.settings import HealthSettings

MAX_ATTEMPTS = 3
RETRY_PAUSE_S = 0.5
# An attempt with less time than this left could not succeed anyway; the check stops instead.
MIN_ATTEMPT_S = 0.1
USER_AGENT = "agent-fleet-coordinator/health-check"
# No connection at all may be a blip (a restart, a resolver hiccup); these are worth a second look.
RETRYABLE_ERRORS = frozenset({"refused", "dns", "connection reset", "connection error"})


def check_health(settings: HealthSettings, *, session: requests.Session | None = None) -> HealthReport:
    """GET `settings.url`; up when the status code is expected, down otherwise (with the reason)."""
    own_session = session is None
    http = requests.Session() if session is None else session
    deadline = time.monotonic() + settings.timeout_s
    try:
        attempts = 0
        while True:
            attempts += 1
            result = _attempt(http, settings, deadline)
            remaining = deadline - time.monotonic()
            if (
                not result.retryable
                or attempts >= MAX_ATTEMPTS
                or remaining < RETRY_PAUSE_S + MIN_ATTEMPT_S
            ):
                return HealthReport(
                    status=result.status,
                    code=result.code,
                    latency_ms=result.latency_ms,
                    error=result.error,
                    attempts=attempts,
                )
            time.sleep(RETRY_PAUSE_S)
    finally:
        if own_session:
            http.close()


@dataclass(frozen=True)
class _Attempt:
    status: HealthStatus
    code: int | None
    latency_ms: float
    error: str | None
    retryable: bool


def _attempt(http: requests.Session, settings: HealthSettings, deadline: float) -> _Attempt:
    started = time.monotonic()
    # requests applies the timeout to connecting and to each wait for data, which is all a
    # stream=True GET does before it returns: the status line and headers, never the body.
    budget = max(deadline - started, MIN_ATTEMPT_S)
    try:
        response = http.get(
            settings.url,
            timeout=(budget, budget),
            stream=True,
            allow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
    except requests.RequestException as exc:
        error = classify_error(exc)
        return _Attempt(HealthStatus.DOWN, None, _ms_since(started), error, retryable=error in RETRYABLE_ERRORS)
    latency_ms = _ms_since(started)
    code = response.status_code
    response.close()  # without reading the body: the connection is dropped, not drained
    if settings.expects(code):
        return _Attempt(HealthStatus.UP, code, latency_ms, None, retryable=False)
    return _Attempt(HealthStatus.DOWN, code, latency_ms, f"unexpected status {code}", retryable=code >= 500)


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
    if any(isinstance(c, TimeoutError | socket.timeout) for c in causes):
        return "timeout"
    if isinstance(exc, requests.ConnectionError):
        return "connection error"
    # InvalidURL, TooManyRedirects, ...: the class name says what, and holds no URL.
    return f"request failed ({type(exc).__name__})"


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


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)

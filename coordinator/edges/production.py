"""The production edge (the cycle's `ProductionProbe`): one HTTP GET of production, within a fixed wall-clock budget,
with a small bounded retry.

The whole check, every attempt and pause included, ends within `HealthSettings.timeout_s`
(`HEALTH_TIMEOUT_S`) of wall-clock time, whatever production does: the request runs under a deadline
(`coordinator.edges.http.send`), so a server that hangs, or trickles its status line and headers a
byte at a time past every read timeout, or a host name that takes long to resolve, is a "timeout" when
the budget is spent. Retries follow the one read policy (`coordinator.edges.http.read_retry`): no
connection (refused, DNS), a dropped connection and an unexpected 5xx are looked at again, up to
`MAX_ATTEMPTS` attempts and only while the budget lasts; a TLS error or a 4xx will not change in a second.

The body is never downloaded (the status line and headers are enough), and redirects are not
followed: a 3xx is itself the answer, judged against `HEALTH_EXPECT` (default 200-399).
Errors are fixed words ("timeout", "refused", "tls", "dns", "unexpected status 503", ...) and
never the exception's text, which would carry the URL and with it any token in its userinfo or query.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import requests
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError, ReadTimeoutError

from coordinator.deadline import DeadlineExceeded
from coordinator.edges.http import SERVER_ERRORS, Attempts, mount, read_retry, send
from coordinator.report import HealthReport, HealthStatus
from coordinator.settings import HealthSettings

MAX_ATTEMPTS = 3
USER_AGENT = "agent-fleet-coordinator/health-check"


def check_health(settings: HealthSettings, *, deadline: float | None = None) -> HealthReport:
    """GET `settings.url`; up when the status code is expected, down otherwise (with the reason).

    Returns within `settings.timeout_s`, or by `deadline` (a `time.monotonic()` instant, e.g. the cycle's)
    if that comes first, plus a few milliseconds; never raises for the request's sake.
    """
    own = time.monotonic() + settings.timeout_s
    deadline = own if deadline is None else min(own, deadline)
    attempts = Attempts()
    # Only unexpected server errors are worth a second look: a 503 that HEALTH_EXPECT accepts is an answer.
    retry = read_retry(attempts=MAX_ATTEMPTS, statuses=[s for s in SERVER_ERRORS if not settings.expects(s)])
    with mount(requests.Session(), retry) as http:
        try:
            response = send(
                http,
                "GET",
                settings.url,
                deadline=deadline,
                what="the health check",
                attempts=attempts,
                stream=True,  # returns after the status line and headers: the body is never read
                allow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            )
        except DeadlineExceeded:
            return _down("timeout", attempts)
        except requests.RequestException as exc:
            return _down(classify_error(exc), attempts)
        latency_ms = _latency_ms(attempts)
        code = response.status_code
        response.close()  # without reading the body: the connection is dropped, not drained
    if settings.expects(code):
        return HealthReport(HealthStatus.UP, code, latency_ms, None, attempts.count)
    return HealthReport(HealthStatus.DOWN, code, latency_ms, f"unexpected status {code}", attempts.count)


def _down(error: str, attempts: Attempts) -> HealthReport:
    return HealthReport(HealthStatus.DOWN, None, _latency_ms(attempts), error, attempts.count)


def _latency_ms(attempts: Attempts) -> float:
    """Time since the last attempt started: how long production took to answer (or to fail)."""
    started = attempts.last_started if attempts.last_started is not None else time.monotonic()
    return round((time.monotonic() - started) * 1000, 1)


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

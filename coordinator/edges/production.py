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

import time

import requests

from coordinator.deadline import DeadlineExceeded
from coordinator.edges.http import SERVER_ERRORS, Attempts, classify_error, mount, read_retry, send
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

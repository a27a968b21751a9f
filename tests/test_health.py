"""The health step against a real local HTTP server: answers, hangs, trickles, refusals, TLS and DNS failures."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict

from coordinator.edges.production import MAX_ATTEMPTS, check_health
from coordinator.report import HealthReport, HealthStatus
from coordinator.settings import HealthSettings
from tests.fakes.production import (
    ENDLESS,
    HANG,
    TRICKLE_BODY,
    TRICKLE_HEAD,
    production,
    refused_port,
    refused_url,
)

# Headroom for a slow, shared machine on top of the check's own budget; a check that waited
# for a hanging server (or read an endless body) would blow far past it.
SLACK_S = 3.0
# How late a check that holds its wall-clock budget may return: thread start-up and scheduling only.
PROMPT_S = 0.5


def bounded_check(settings: HealthSettings) -> tuple[HealthReport, float]:
    """Run the check, failing (instead of hanging the suite) if it outlives its budget plus slack."""
    results: list[HealthReport] = []
    worker = threading.Thread(target=lambda: results.append(check_health(settings)), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(settings.timeout_s + SLACK_S)
    elapsed = time.monotonic() - started
    assert results, f"the check was still running {elapsed:.1f}s after a {settings.timeout_s}s budget"
    return results[0], elapsed


def test_200_is_up_with_code_and_latency() -> None:
    with production(200) as server:
        report = check_health(HealthSettings(url=server.url))
    assert report.status is HealthStatus.UP
    assert report.code == 200
    assert report.error is None
    assert report.latency_ms is not None and report.latency_ms >= 0
    assert report.attempts == 1
    assert server.requests == ["/health"]


def test_503_is_down_after_a_bounded_retry() -> None:
    with production(503) as server:
        report = check_health(HealthSettings(url=server.url, timeout_s=5))
    assert report.status is HealthStatus.DOWN
    assert report.code == 503
    assert report.error == "unexpected status 503"
    assert report.attempts == MAX_ATTEMPTS
    assert len(server.requests) == MAX_ATTEMPTS


def test_a_503_blip_recovers_on_retry() -> None:
    with production(503, 200) as server:
        report = check_health(HealthSettings(url=server.url, timeout_s=5))
    assert report.status is HealthStatus.UP
    assert report.code == 200
    assert report.attempts == 2


def test_4xx_is_down_without_retry() -> None:
    with production(404) as server:
        report = check_health(HealthSettings(url=server.url, timeout_s=5))
    assert report.status is HealthStatus.DOWN
    assert report.code == 404
    assert report.error == "unexpected status 404"
    assert len(server.requests) == 1


def test_redirect_is_an_answer_not_followed() -> None:
    with production(302) as server:
        report = check_health(HealthSettings(url=server.url))
    assert report.status is HealthStatus.UP
    assert report.code == 302
    assert len(server.requests) == 1


def test_expected_codes_are_configurable() -> None:
    with production(503) as server:
        assert check_health(HealthSettings(url=server.url, expect=((503, 503),))).status is HealthStatus.UP
    with production(200) as server:
        report = check_health(HealthSettings(url=server.url, expect=((204, 204), (301, 302))))
    assert report.status is HealthStatus.DOWN
    assert report.error == "unexpected status 200"


def test_hanging_production_is_a_timeout_within_the_budget() -> None:
    timeout_s = 1.0
    with production(HANG) as server:
        report, elapsed = bounded_check(HealthSettings(url=server.url, timeout_s=timeout_s))
    assert report.status is HealthStatus.DOWN
    assert report.error == "timeout"
    assert report.code is None
    assert elapsed < timeout_s + PROMPT_S


def test_a_retry_only_gets_the_time_that_is_left() -> None:
    # The first answer is a 503 (retried), the second attempt hangs: it must end at the deadline.
    timeout_s = 2.0
    with production(503, HANG) as server:
        report, elapsed = bounded_check(HealthSettings(url=server.url, timeout_s=timeout_s))
    assert report.error == "timeout"
    assert report.attempts == 2
    assert elapsed < timeout_s + PROMPT_S


def test_trickled_headers_are_a_timeout_when_the_budget_is_spent() -> None:
    # The case: one byte every 0.5 s never trips a per-read timeout; the wall-clock budget holds.
    with production(TRICKLE_HEAD, trickle_s=0.5) as server:
        report, elapsed = bounded_check(HealthSettings(url=server.url, timeout_s=3))
    assert report.status is HealthStatus.DOWN
    assert report.error == "timeout"
    assert report.code is None
    assert report.attempts == 1  # a timeout has used the budget: nothing is left to retry with
    assert 3.0 <= elapsed < 3.0 + PROMPT_S


def test_the_callers_deadline_comes_first_when_it_is_earlier() -> None:
    with production(TRICKLE_HEAD, trickle_s=0.5) as server:
        started = time.monotonic()
        report = check_health(HealthSettings(url=server.url, timeout_s=10), deadline=started + 1)
        elapsed = time.monotonic() - started
    assert report.error == "timeout"
    assert 1.0 <= elapsed < 1.0 + PROMPT_S


def test_a_trickled_body_is_never_waited_for() -> None:
    with production(TRICKLE_BODY, trickle_s=0.5) as server:
        report, elapsed = bounded_check(HealthSettings(url=server.url, timeout_s=3))
    assert report.status is HealthStatus.UP
    assert report.code == 200
    assert elapsed < 1.0


def test_retries_fit_in_the_budget() -> None:
    # Always 503: three attempts (the first retry at once, the second after a 1 s backoff) would need
    # about 1 s; with 0.5 s of budget the check stops retrying instead of overrunning.
    with production(503) as server:
        report, elapsed = bounded_check(HealthSettings(url=server.url, timeout_s=0.5))
    assert report.error == "unexpected status 503"
    assert report.attempts == 2 == len(server.requests)
    assert elapsed < 0.5


def test_the_body_is_never_downloaded() -> None:
    with production(ENDLESS) as server:
        report, _ = bounded_check(HealthSettings(url=server.url, timeout_s=2))
    assert report.status is HealthStatus.UP
    assert report.code == 200


def test_refused_connection_is_down_after_retries() -> None:
    report = check_health(HealthSettings(url=refused_url(), timeout_s=5))
    assert report.status is HealthStatus.DOWN
    assert report.error == "refused"
    assert report.code is None
    assert report.attempts == MAX_ATTEMPTS


def test_tls_failure_is_named() -> None:
    with production(200) as server:  # plain HTTP: a TLS handshake against it fails
        report = check_health(HealthSettings(url=f"https://127.0.0.1:{server.port}/health", timeout_s=5))
    assert report.status is HealthStatus.DOWN
    assert report.error == "tls"
    assert report.attempts == 1


def test_unknown_host_is_dns() -> None:
    # .invalid never resolves (RFC 6761).
    report = check_health(HealthSettings(url="http://production.invalid/health", timeout_s=5))
    assert report.status is HealthStatus.DOWN
    assert report.error == "dns"


def test_token_in_url_never_reaches_the_report() -> None:
    secret = "s3cr3t-token-value"
    port = refused_port()
    urls = [f"http://user:{secret}@127.0.0.1:{port}/health?token={secret}"]
    with production(HANG) as hanging, production(503) as failing:
        urls += [
            f"http://user:{secret}@127.0.0.1:{hanging.port}/health?token={secret}",
            f"http://user:{secret}@127.0.0.1:{failing.port}/health?token={secret}",
        ]
        reports = [check_health(HealthSettings(url=url, timeout_s=1)) for url in urls]
    assert [r.error for r in reports] == ["refused", "timeout", "unexpected status 503"]
    for report in reports:
        assert secret not in json.dumps(asdict(report), default=str)

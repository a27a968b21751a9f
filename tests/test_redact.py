"""The one scrubber (coordinator/redact.py): secrets, URL userinfo and query strings never leave the process."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator import redact
from coordinator.metrics import FleetMetrics, last_report
from coordinator.redact import MAX_SHOWN_CHARS, MIN_SECRET_CHARS, scrub, shown
from coordinator.report import (
    CycleReport,
    EventLog,
    MergeOutcome,
    MergeReport,
    PullOutcome,
    RoleTally,
    StepError,
    StepResult,
    StepStatus,
    Verdict,
    to_dict,
)

TOKEN = "ghp_FAKEfakeFAKEfake0123456789"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # known secrets, wherever they are
        (f"Bearer {TOKEN} refused", "Bearer *** refused"),
        (f"https://ghe.example.com/{TOKEN}/api/v3", "https://ghe.example.com/***/api/v3"),
        # userinfo, whatever the scheme, even a mistyped one
        ("https://x-access-token:s3cr3t@ghe.example.com/api/v3", "https://***@ghe.example.com/api/v3"),
        ("htps://x-access-token:s3cr3t@ghe.example.com/api/v3", "htps://***@ghe.example.com/api/v3"),
        ("ssh://deploy@fleet.example.com", "ssh://***@fleet.example.com"),
        ("GET https://u:p@w@host/x failed", "GET https://***@host/x failed"),
        # userinfo without a scheme
        ("API_URL='x-access-token:s3cr3t@ghe.example.com/api/v3'", "API_URL='***@ghe.example.com/api/v3'"),
        # query strings and fragments
        ("https://prod.example.com/h?key=s3cr3t&x=1 answered 500", "https://prod.example.com/h?*** answered 500"),
        ("prod.example.com/healthz?s3cr3t", "prod.example.com/healthz?***"),
        ("https://prod.example.com/#s3cr3t", "https://prod.example.com/#***"),
        ("https://prod.example.com/?a=b#s3cr3t", "https://prod.example.com/?***"),
        # left alone: pull request numbers, a cron '?', a question, an e-mail-like text
        ("#12: merged; #13: draft", "#12: merged; #13: draft"),
        ("0 0 ? * MON", "0 0 ? * MON"),
        ("is it set? no", "is it set? no"),
        ("ghcr.io/acme/agent@sha256:abc", "ghcr.io/acme/agent@sha256:abc"),
        ("registry:5000/acme/agent@sha256:abc", "registry:5000/acme/agent@sha256:abc"),
    ],
)
def test_scrub(text: str, expected: str) -> None:
    assert scrub(text, [TOKEN]) == expected


def test_an_event_line_stays_json_and_loses_the_secret_even_when_json_escaped() -> None:
    secret = 'tok"en\\with/escapes'
    out = io.StringIO()
    log = EventLog("fleet", [secret, TOKEN], stream=out)
    log.emit(
        "health.down",
        url="https://user:pw@prod.example.com/h?key=abc",
        error=f"answered with {secret} and {TOKEN}",
        quoted='say "https://prod.example.com/h?key=abc"',
    )
    line = out.getvalue()
    record = json.loads(line)
    assert record["url"] == "https://***@prod.example.com/h?***"
    assert record["error"] == "answered with *** and ***"
    assert record["quoted"] == 'say "https://prod.example.com/h?***"'
    assert "abc" not in line and "pw" not in line and TOKEN not in line


def test_the_event_logs_scrubber_is_the_one_scrubber() -> None:
    text = f"https://u:p@h/x?q=1 {TOKEN}"
    assert redact.scrub(text, [TOKEN]) == "https://***@h/x?*** ***"
    assert EventLog("f", [TOKEN]).scrub(text) == redact.scrub(text, [TOKEN])


@pytest.mark.parametrize(
    ("value", "url", "expected"),
    [
        ("every five minutes", False, "'every five minutes'"),
        (-1, False, "-1"),
        ([1, 2], False, "[1, 2]"),
        ("x" * 500, False, repr("x" * (MAX_SHOWN_CHARS - 1) + "…")),
        # a URL setting: nothing after '?' or '#', nothing before an '@' back to a '/'
        ("htps://x-access-token:s3cr3t@host/api/v3", True, "'htps://***@host/api/v3'"),
        ("https:/x-access-token:s3cr3t@host/api/v3", True, "'https:/***@host/api/v3'"),
        ("s3cr3t@host/api/v3", True, "'***@host/api/v3'"),
        ("prod.example.com/healthz?s3cr3t", True, "'prod.example.com/healthz?***'"),
        ("prod.example.com/healthz #s3cr3t", True, "'prod.example.com/healthz #***'"),
        ("https://host/api/v3", True, "'https://host/api/v3'"),
    ],
)
def test_shown_quotes_a_value_without_what_it_must_not_show(value: object, url: bool, expected: str) -> None:
    assert shown(value, url=url) == expected
    assert "s3cr3t" not in shown(value, url=url)


def test_shown_also_drops_the_known_secrets() -> None:
    assert shown(f"https://host/{TOKEN}/x", url=True, secrets=[TOKEN]) == "'https://host/***/x'"


@pytest.mark.parametrize(
    "text", ["x" * 1_000_000, ",a:" * 300_000, "=a://" * 200_000, "a:b@" * 250_000, "?" * 1_000_000]
)
def test_scrubbing_is_linear_even_for_a_pathological_megabyte(text: str) -> None:
    # A pattern that may start anywhere and run to the end takes hours on this; a brief can be that large.
    started = time.monotonic()
    scrub(text, [TOKEN])
    shown(text, url=True)
    assert time.monotonic() - started < 5


# --- a report line keeps its structure whatever the secrets --------------------------------------------------

REPORT_FLEET = "fleet-one"


def a_report(message: str) -> CycleReport:
    """A report with numbers, role keys and an error message that quotes what GitHub said."""
    report = CycleReport(
        fleet=REPORT_FLEET, started_at=datetime(2026, 3, 2, tzinfo=UTC), duration_s=1.5,
        roles={"api_builder": RoleTally(desired=3, running=1, mode="Task-driven", spawned=2),
               "dev": RoleTally(desired=1, running=1, mode="Reviewer")},
        merge=MergeReport(status=StepStatus.OK, pulls=[PullOutcome(12345678, MergeOutcome.MERGED, "merged")],
                          open=11, review_queue=1),
        errors=[StepError("merge", message)], verdict=Verdict.DEGRADED, verdict_reasons=["merge: failed"],
    )
    report.steps["merge"] = StepResult(StepStatus.FAILED, message, 0.25)
    return report


def report_line(secrets: list[str], message: str) -> str:
    out = io.StringIO()
    EventLog(REPORT_FLEET, secrets, stream=out).write(to_dict(a_report(message)))
    return out.getvalue()


def skeleton(value: Any) -> Any:
    """The line's structure: its keys, numbers, booleans and nulls, each string a blank."""
    if isinstance(value, str):
        return ""
    if isinstance(value, dict):
        return {key: skeleton(item) for key, item in value.items()}
    if isinstance(value, list):
        return [skeleton(item) for item in value]
    return value


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return []


def assert_a_whole_report(line: str, secret: str) -> dict[str, Any]:
    """The line is JSON with the report's every key and number; status and the metrics find it, roles and all."""
    parsed: dict[str, Any] = json.loads(line)
    unscrubbed = json.loads(report_line([], f"GitHub said {secret}"))
    assert skeleton(parsed) == skeleton(unscrubbed)
    assert (parsed["event"], parsed["fleet"], parsed["verdict"]) == ("cycle.report", REPORT_FLEET, "degraded")
    found = last_report([line])
    assert found is not None and found["merge"]["merged"] == [12345678] and found["desired"] == 4
    metrics = FleetMetrics()
    assert metrics.observe_report(found)
    for role, desired in (("api_builder", 3), ("dev", 1)):
        assert metrics.registry.get_sample_value("agent_fleet_agents_desired", {"role": role}) == desired
    return parsed


@pytest.mark.parametrize(
    "secret",
    [
        "12345678",  # a number of the line: the merged pull request's
        "api_builder",  # a role's key
        '", "desired": ',  # JSON syntax
        '{"event": "cycle.report"',
        "cycle.report",  # the event's own name
        "degraded",  # a word of the coordinator's own (the verdict)
        "fleet-one",  # the fleet id
        "Task-driven",
        "tok\"en\\with/escapes",
    ],
)
def test_a_report_line_keeps_its_structure_and_loses_the_secret_from_its_text(secret: str) -> None:
    line = report_line([secret], f"GitHub said {secret}")
    parsed = assert_a_whole_report(line, secret)
    assert parsed["errors"] == [{"step": "merge", "message": "GitHub said ***"}]
    assert parsed["steps"]["merge"]["detail"] == "GitHub said ***"
    assert not any(secret in text for text in strings(parsed) if text not in ("cycle.report", REPORT_FLEET, "degraded"))


@pytest.mark.parametrize("short", ["1", "dev", "a", " ", "1234567", "  zq7x9w2  "])
def test_a_value_too_short_to_be_a_secret_is_not_scrubbed_at_all(short: str) -> None:
    # The settings refuse one; scrubbing it would blank every "1" and show the value by the gaps.
    line = report_line([short], f"GitHub said {short}")
    assert line == report_line([], f"GitHub said {short}")
    assert_a_whole_report(line, short)
    assert scrub(f"dev 1 {short}", [short]) == f"dev 1 {short}"


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=MIN_SECRET_CHARS, max_size=40).filter(lambda text: len(text.strip()) >= MIN_SECRET_CHARS))
def test_no_secret_breaks_a_report_line(secret: str) -> None:
    line = report_line([secret], f"GitHub said {secret}")
    assert "\n" not in line.rstrip("\n")
    parsed = assert_a_whole_report(line, secret)
    assert secret not in parsed["errors"][0]["message"]


def test_scrub_values_scrubs_string_values_only() -> None:
    value = {"a1234567": ["a1234567", 12345678, None, True, 1.5, Verdict.DEGRADED], "b": ("x a1234567 y",)}
    assert redact.scrub_values(value, ["a1234567", "degraded", "12345678"]) == {
        "a1234567": ["***", 12345678, None, True, 1.5, Verdict.DEGRADED], "b": ["x *** y"]}

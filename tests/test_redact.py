"""The one scrubber (coordinator/redact.py): secrets, URL userinfo and query strings never leave the process."""

from __future__ import annotations

import io
import json
import time

import pytest

from coordinator import redact
from coordinator.redact import MAX_SHOWN_CHARS, scrub, shown
from coordinator.report import EventLog
from coordinator.report import scrub as report_scrub

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


def test_the_report_modules_scrubbers_are_the_one_scrubber() -> None:
    text = f"https://u:p@h/x?q=1 {TOKEN}"
    assert report_scrub(text, [TOKEN]) == redact.scrub(text, [TOKEN]) == "https://***@h/x?*** ***"
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

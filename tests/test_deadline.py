"""run_with_deadline: real threads, real time (fractions of a second)."""

from __future__ import annotations

import contextvars
import math
import threading
import time

import pytest

from coordinator.deadline import DeadlineExceeded, run_with_deadline, seconds_left

PROMPT_S = 0.25  # thread start-up and scheduling on a busy machine


def test_returns_what_the_call_returns() -> None:
    assert run_with_deadline(lambda: 42, time.monotonic() + 5, "the answer") == 42


def test_a_call_past_its_deadline_is_cut_off_on_time() -> None:
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"^the slow call did not finish within 0.3 s$") as caught:
        run_with_deadline(release.wait, started + 0.3, "the slow call")
    elapsed = time.monotonic() - started
    release.set()
    assert 0.3 <= elapsed < 0.3 + PROMPT_S
    assert caught.value.what == "the slow call" and caught.value.started


def test_the_abandoned_thread_is_a_daemon() -> None:
    release = threading.Event()
    with pytest.raises(DeadlineExceeded):
        run_with_deadline(release.wait, time.monotonic() + 0.05, "abandoned")
    abandoned = [t for t in threading.enumerate() if t.name == "deadline: abandoned"]
    assert abandoned and all(t.daemon for t in abandoned)  # it cannot keep the process alive
    release.set()


def test_exceptions_propagate_unchanged() -> None:
    error = KeyError("missing")

    def fail() -> None:
        raise error

    with pytest.raises(KeyError) as caught:
        run_with_deadline(fail, time.monotonic() + 5, "failing")
    assert caught.value is error


def test_a_deadline_already_passed_never_starts_the_call() -> None:
    calls: list[int] = []
    with pytest.raises(DeadlineExceeded, match="did not start") as caught:
        run_with_deadline(lambda: calls.append(1), time.monotonic() - 1, "late")
    assert calls == [] and not caught.value.started


def test_the_call_sees_the_callers_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("set by the caller")
    assert run_with_deadline(var.get, time.monotonic() + 5, "context") == "set by the caller"


def test_an_infinite_deadline_waits() -> None:
    assert run_with_deadline(lambda: time.sleep(0.05) or "done", math.inf, "patient") == "done"


def test_seconds_left_is_never_negative() -> None:
    assert seconds_left(time.monotonic() - 10) == 0.0
    assert 9 < seconds_left(time.monotonic() + 10) <= 10

"""Wall-clock deadlines for calls that may block: `run_with_deadline(fn, deadline, what)`.

A socket timeout bounds each wait for data, not the whole call: a server that sends one byte every
half second never trips a 3 s read timeout, yet holds the caller for as long as it likes. So does a
slow DNS lookup or a library that sleeps before a retry. The only bound that holds for all of them is
to run the call in a thread of its own and stop waiting for it at the deadline.

`run_with_deadline` does that. The call runs in a daemon thread, in a copy of the caller's context
(`contextvars`), and the caller waits for it until `deadline`, an instant on `time.monotonic()`'s clock.
When the call has not returned by then, `DeadlineExceeded` is raised and the thread is abandoned: being a
daemon, it cannot keep the process alive, and a cycle is a process that ends soon after. An abandoned
call may still finish later, so a caller must treat whatever it was doing as possibly done (a merge
that was cut off may still land). Exceptions from the call propagate unchanged; a `deadline` already
passed raises at once without starting the call (`started` is then False).

It is general: the edges bound each HTTP request with it, the cycle bounds each step.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DeadlineExceeded", "run_with_deadline", "seconds_left"]

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """A call did not return before its deadline; `what` names it and `budget_s` is the time it had."""

    def __init__(self, what: str, budget_s: float, *, started: bool = True) -> None:
        self.what = what
        self.budget_s = budget_s
        self.started = started
        if started:
            message = f"{what} did not finish within {_seconds(budget_s)} s"
        else:
            message = f"{what} did not start: no time was left before its deadline"
        super().__init__(message)


def seconds_left(deadline: float) -> float:
    """Time until `deadline` (a `time.monotonic()` instant), never negative."""
    return max(0.0, deadline - time.monotonic())


def run_with_deadline(fn: Callable[[], T], deadline: float, what: str) -> T:
    """Return `fn()`, or raise DeadlineExceeded when it has not returned by `deadline` (time.monotonic()).

    `what` names the call in the error ("GitHub GraphQL query", "the merge step") and should hold no
    secret. `deadline=math.inf` waits as long as `fn` takes.
    """
    budget = deadline - time.monotonic()
    if budget <= 0:
        raise DeadlineExceeded(what, 0.0, started=False)
    done = threading.Event()
    results: list[T] = []
    errors: list[BaseException] = []
    context = contextvars.copy_context()

    def call() -> None:
        try:
            results.append(context.run(fn))
        except BaseException as exc:  # handed to the caller, who re-raises it
            errors.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=call, name=f"deadline: {what}", daemon=True)
    worker.start()
    if not done.wait(None if math.isinf(budget) else budget):
        raise DeadlineExceeded(what, budget)
    if errors:
        raise errors[0]
    return results[0]


def _seconds(value: float) -> str:
    """3 -> "3", 2.5 -> "2.5", 0.25 -> "0.25": short, and exact enough for a person."""
    text = f"{value:.2f}" if value < 1 else f"{value:.1f}"
    return text.rstrip("0").rstrip(".") or "0"

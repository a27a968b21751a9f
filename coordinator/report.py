"""The cycle report: data first (plain dataclasses), rendered second (JSON line or text).

Each step returns its part of the report; `cycle.py` assembles a `CycleReport`; `verdict.py`
judges it; `to_dict` makes the `cycle.report` JSON line and `render_text` the text a person reads;
`parse_reports` finds the lines again and `read_report` reads each back to a `CycleReport`.
`EventLog` writes every JSON line of a cycle and scrubs known secrets from each one.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TextIO, TypeVar

from coordinator import redact

REPORT_EVENT = "cycle.report"

Known = TypeVar("Known", bound=StrEnum)


class UnknownWord(str):
    """A word of a report read back that this version does not know (a newer coordinator's verdict, say), or ""
    when the report does not say it: kept as written, and printed as written ("?" when empty)."""

    __slots__ = ()


class StepStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


class Verdict(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    BROKEN = "broken"


class HealthStatus(StrEnum):
    UP = "up"
    DOWN = "down"
    SKIPPED = "skipped"


class MergeOutcome(StrEnum):
    MERGED = "merged"
    SKIPPED = "skipped"  # not eligible this cycle; `reason` says why
    FAILED = "failed"  # eligible, but the merge call was refused or failed
    QUEUED = "queued"  # in its base branch's merge queue (enqueued this cycle or before): GitHub merges it
    QUEUE_FAILED = "queue failed"  # its merge queue entry is UNMERGEABLE: the queue's checks failed
    UPDATED = "updated"  # behind its base under the up-to-date policy: its branch was brought up to date


@dataclass(frozen=True)
class StepError:
    step: str
    message: str


# The steps of a cycle, in the order `cycle.py` runs them, by the names the report's `steps` and `errors` use.
CYCLE_STEPS = ("inventory", "reconcile", "merge", "health", "report")


@dataclass(frozen=True)
class StepResult:
    """How one step ended: ok, failed (with the error) or skipped (with the reason)."""

    status: StepStatus | UnknownWord
    detail: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True)
class SlotWait:
    """A slot whose agents keep crashing: it is respawned no earlier than `until`."""

    slot: int
    until: datetime | None  # None only in a report read back that does not say it readably
    crashes: int


@dataclass(frozen=True)
class UnprovenAgent:
    """A crash-looping slot's agent, running or just spawned, that has not yet lived past the crash window
    (`coordinator.steps.inventory.CRASH_WINDOW_S`): its `crashes` predecessors crashed in a row. The role does
    not count on it: the slot is short, and the role degraded, until one of its agents lives past the window."""

    slot: int
    crashes: int


@dataclass
class RoleTally:
    desired: int
    running: int
    mode: str = ""  # the role's Mode value ("Task-driven", "Reviewer", ...), for the scaling advice
    spawned: int = 0
    failed: int = 0
    waiting: list[SlotWait] = field(default_factory=list)
    deferred: int = 0  # spawns held back by the fleet's spawn budget
    held_back: int = 0  # spawns not tried this cycle because a spawn of the same image failed (slow start)
    # Consecutive exits with nothing to do (exit 0 soon after starting), summed over the role's slots,
    # as its agents' idle-streak labels show them; the advice to lower the count is computed from it.
    idle_exits: int = 0
    # Slots this cycle found empty and went to fill, but a cycle running beside it filled first with the
    # slot's own agent (409 on the name, not a squatter): present, though neither found nor spawned here.
    filled_by_other_cycle: int = 0
    # Of those found running, spawned or filled by a racing cycle: the agents of crash-looping slots that have
    # not yet lived past the crash window. An agent spawned into a crash loop is likely gone already.
    unproven: list[UnprovenAgent] = field(default_factory=list)

    @property
    def present(self) -> int:
        """The role's agents as the cycle left them, those it can count on: found running, spawned, or filled by
        a racing cycle, less the unproven agents of crash-looping slots."""
        return self.running + self.spawned + self.filled_by_other_cycle - len(self.unproven)

    @property
    def crash_looping(self) -> list[tuple[int, int]]:
        """(slot, crashes in a row) of every slot in a crash loop: waiting out its backoff, or holding an
        unproven agent."""
        return sorted([(w.slot, w.crashes) for w in self.waiting] + [(u.slot, u.crashes) for u in self.unproven])


@dataclass(frozen=True)
class PullOutcome:
    number: int
    outcome: MergeOutcome | UnknownWord
    reason: str  # "merged", "draft", "not approved", "checks pending", "head moved", ...


@dataclass
class MergeReport:
    status: StepStatus | UnknownWord = StepStatus.SKIPPED
    pulls: list[PullOutcome] = field(default_factory=list)
    open: int = 0
    review_queue: int = 0  # open, not draft, awaiting review
    conflicting: int = 0
    stopped: str | None = None  # why the step ended early (rate limit, budget), if it did
    api_calls: int = 0
    rate_limit_remaining: int | None = None  # GitHub's remaining budget, the lowest it reported this cycle
    backlog: int | None = None  # open issues waiting for builders (their role labels or BACKLOG_LABELS)

    @property
    def merged(self) -> list[int]:
        return [p.number for p in self.pulls if p.outcome is MergeOutcome.MERGED]

    @property
    def queued(self) -> list[int]:
        return [p.number for p in self.pulls if p.outcome is MergeOutcome.QUEUED]

    @property
    def queue_failed(self) -> list[int]:
        return [p.number for p in self.pulls if p.outcome is MergeOutcome.QUEUE_FAILED]

    @property
    def updated(self) -> list[int]:
        return [p.number for p in self.pulls if p.outcome is MergeOutcome.UPDATED]


@dataclass(frozen=True)
class HealthReport:
    status: HealthStatus | UnknownWord = HealthStatus.SKIPPED
    code: int | None = None
    latency_ms: float | None = None
    error: str | None = None  # "timeout", "refused", "tls", "dns", "unexpected status 503", ...
    attempts: int = 0


@dataclass(frozen=True)
class SpawnBudget:
    limit: int
    used: int  # spawns Docker shows in the past hour
    remaining: int


@dataclass(frozen=True)
class Advice:
    """A scaling signal for people: it never acts by itself."""

    role: str
    signal: str
    value: float
    threshold: float
    action: str


@dataclass
class CycleReport:
    fleet: str
    started_at: datetime | None  # None only in a report read back that does not say it readably
    duration_s: float = 0.0
    roles: dict[str, RoleTally] = field(default_factory=dict)
    merge: MergeReport = field(default_factory=MergeReport)
    health: HealthReport = field(default_factory=HealthReport)
    errors: list[StepError] = field(default_factory=list)
    steps: dict[str, StepResult] = field(default_factory=dict)
    budget: SpawnBudget | None = None
    verdict: Verdict | UnknownWord = Verdict.HEALTHY
    verdict_reasons: list[str] = field(default_factory=list)  # why it is not healthy, worst first
    advice: list[Advice] = field(default_factory=list)
    # Things a person must look at, by name: containers with the fleet's label that cannot be read (skipped),
    # slots held by something that is not the fleet's agent, and nodes whose agents were given up as lost.
    unreadable: list[str] = field(default_factory=list)
    squatters: list[str] = field(default_factory=list)
    lost_nodes: list[str] = field(default_factory=list)
    # Token identities that are one GitHub account, as the scheduler found at its start.
    shared_accounts: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def failed(self) -> bool:
        return any(result.status is StepStatus.FAILED for result in self.steps.values())

    @property
    def running(self) -> int:
        return sum(t.running for t in self.roles.values())

    @property
    def desired(self) -> int:
        return sum(t.desired for t in self.roles.values())

    @property
    def spawned(self) -> int:
        return sum(t.spawned for t in self.roles.values())

    @property
    def spawn_failures(self) -> int:
        return sum(t.failed for t in self.roles.values())


def _plain(value: Any) -> Any:
    """JSON-ready: times as UTC ISO 8601 text. A StrEnum member stays one (json writes it as its value), so the
    scrubber still knows it for the code's own word and leaves it whole."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_dict(report: CycleReport) -> dict[str, Any]:
    """The `cycle.report` event: one JSON object, stable keys, times in UTC ISO 8601."""
    body = _plain(asdict(report))
    body["merge"]["merged"] = report.merge.merged
    # Pull request numbers by what the merge step did; each one's reason is in merge.pulls.
    body["merge"]["queued"] = report.merge.queued
    body["merge"]["queue_failed"] = report.merge.queue_failed
    body["merge"]["updated"] = report.merge.updated
    for key, tally in report.roles.items():
        body["roles"][key]["present"] = tally.present
    body["running"] = report.running
    body["desired"] = report.desired
    body["spawned"] = report.spawned
    return {"event": REPORT_EVENT, **body}


# A `cycle.report` event as read back from a log line: the JSON object, as `to_dict` wrote it. Everything that
# reads one back (status, the metrics, the status page, the judgments across cycles) reads it to a `CycleReport`
# with `read_report`, built from the functions below: forgiving, so that a report written by an older or newer
# coordinator, or a damaged line, shows what it can and never raises. A field that is missing or of the wrong type
# reads as absent (None) or 0; a word this version does not know is kept as an `UnknownWord`.
Report = dict[str, Any]


def _as_mapping(value: object) -> dict[str, Any]:
    """An object of a report (`health`, `merge`, a role's tally); {} when it is not one."""
    return value if isinstance(value, dict) else {}


def _as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _as_optional_count(value: object) -> int | None:
    """A count (0 or more); None when the field is missing or not a count."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _as_count(value: object) -> int:
    """A count (0 or more); 0 when the field is missing or not a count."""
    count = _as_optional_count(value)
    return 0 if count is None else count


def _as_number(value: object) -> float | None:
    """A finite number, 0 or more (a latency, a duration); None when the field is missing or not one."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def read_health(value: object) -> HealthReport | None:
    """The report's `health` read back as `to_dict` wrote it; None when it does not say the check's status."""
    health = _as_mapping(value)
    word = health.get("status")
    if not isinstance(word, str) or word not in set(HealthStatus):
        return None
    status = HealthStatus(word)
    code = health.get("code")
    error = health.get("error")
    return HealthReport(
        status=status,
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        latency_ms=_as_number(health.get("latency_ms")),
        error=error if isinstance(error, str) and error else None,
        attempts=_as_count(health.get("attempts")),
    )


def read_advice(value: object) -> list[Advice]:
    """The report's `advice` read back: each item that is an object; a missing number reads as 0."""
    advice = []
    for item in map(_as_mapping, _as_list(value)):
        if not item:
            continue
        role, signal, action = item.get("role"), item.get("signal"), item.get("action")
        advice.append(Advice(
            role=role if isinstance(role, str) else "?",
            signal=signal if isinstance(signal, str) else "?",
            value=_as_number(item.get("value")) or 0.0,
            threshold=_as_number(item.get("threshold")) or 0.0,
            action=action if isinstance(action, str) and action else (role if isinstance(role, str) else "?"),
        ))
    return advice


def read_errors(value: object) -> list[StepError]:
    """The report's `errors` read back: one per item, its step "?" when it does not say."""
    errors = []
    for item in map(_as_mapping, _as_list(value)):
        step, message = item.get("step"), item.get("message")
        errors.append(StepError(step if isinstance(step, str) else "?", "" if message is None else str(message)))
    return errors


def word_text(word: StrEnum | UnknownWord) -> str:
    """A verdict, status or outcome as every text shows it: its word as written; "?" when the report has none."""
    return str(word) or "?"


def _word(value: object, known: type[Known]) -> Known | UnknownWord:
    """One of `known`'s words, or the word as written when this version does not know it ("" when not a word)."""
    if not isinstance(value, str):
        return UnknownWord("")
    try:
        return known(value)
    except ValueError:
        return UnknownWord(value)


def _text(value: object, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _texts(value: object) -> list[str]:
    """A list of names or reasons; an item that is not text is shown as text rather than dropped."""
    return [item if isinstance(item, str) else str(item) for item in _as_list(value)]


def _time(value: object) -> datetime | None:
    """A timezone-aware time as `to_dict` writes it; None when the value is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _read_tally(value: object) -> RoleTally:
    tally = _as_mapping(value)
    waiting = [SlotWait(slot=_as_count(w.get("slot")), until=_time(w.get("until")), crashes=_as_count(w.get("crashes")))
               for w in map(_as_mapping, _as_list(tally.get("waiting"))) if w]
    unproven = [UnprovenAgent(slot=_as_count(u.get("slot")), crashes=_as_count(u.get("crashes")))
                for u in map(_as_mapping, _as_list(tally.get("unproven"))) if u]
    return RoleTally(
        desired=_as_count(tally.get("desired")),
        running=_as_count(tally.get("running")),
        mode=_text(tally.get("mode")),
        spawned=_as_count(tally.get("spawned")),
        failed=_as_count(tally.get("failed")),
        waiting=waiting,
        deferred=_as_count(tally.get("deferred")),
        held_back=_as_count(tally.get("held_back")),
        idle_exits=_as_count(tally.get("idle_exits")),
        filled_by_other_cycle=_as_count(tally.get("filled_by_other_cycle")),
        unproven=unproven,
    )


def _read_merge(value: object) -> MergeReport:
    merge = _as_mapping(value)
    stopped = merge.get("stopped")
    return MergeReport(
        status=_word(merge.get("status"), StepStatus),
        pulls=[PullOutcome(number=_as_count(p.get("number")), outcome=_word(p.get("outcome"), MergeOutcome),
                           reason=_text(p.get("reason")))
               for p in map(_as_mapping, _as_list(merge.get("pulls"))) if p],
        open=_as_count(merge.get("open")),
        review_queue=_as_count(merge.get("review_queue")),
        conflicting=_as_count(merge.get("conflicting")),
        stopped=stopped if isinstance(stopped, str) else None,
        api_calls=_as_count(merge.get("api_calls")),
        rate_limit_remaining=_as_optional_count(merge.get("rate_limit_remaining")),
        backlog=_as_optional_count(merge.get("backlog")),
    )


def _read_budget(value: object) -> SpawnBudget | None:
    budget = _as_mapping(value)
    if not budget:
        return None
    return SpawnBudget(limit=_as_count(budget.get("limit")), used=_as_count(budget.get("used")),
                       remaining=_as_count(budget.get("remaining")))


def read_report(value: object) -> CycleReport:
    """A `cycle.report` object read back to the typed report; never raises. `read_report(to_dict(r)) == r` for
    every report the coordinator writes. A word this version does not know (a newer verdict, status or outcome)
    is kept as an `UnknownWord`; a missing or mistyped field reads as absent: "", 0, None, [] or {} (a missing
    verdict or status as the empty `UnknownWord`, a missing health check's status too)."""
    report = _as_mapping(value)
    health = _as_mapping(report.get("health"))
    code = health.get("code")
    error = health.get("error")
    steps = _as_mapping(report.get("steps"))
    return CycleReport(
        fleet=_text(report.get("fleet")),
        started_at=_time(report.get("started_at")),
        duration_s=_as_number(report.get("duration_s")) or 0.0,
        roles={str(role): _read_tally(tally) for role, tally in _as_mapping(report.get("roles")).items()},
        merge=_read_merge(report.get("merge")),
        health=HealthReport(
            status=_word(health.get("status"), HealthStatus),
            code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            latency_ms=_as_number(health.get("latency_ms")),
            error=error if isinstance(error, str) and error else None,
            attempts=_as_count(health.get("attempts")),
        ),
        errors=read_errors(report.get("errors")),
        steps={str(name): StepResult(status=_word(step.get("status"), StepStatus), detail=_text(step.get("detail")),
                                     duration_s=_as_number(step.get("duration_s")) or 0.0)
               for name, step in ((name, _as_mapping(step)) for name, step in steps.items())},
        budget=_read_budget(report.get("budget")),
        verdict=_word(report.get("verdict"), Verdict),
        verdict_reasons=_texts(report.get("verdict_reasons")),
        advice=read_advice(report.get("advice")),
        unreadable=_texts(report.get("unreadable")),
        squatters=_texts(report.get("squatters")),
        lost_nodes=_texts(report.get("lost_nodes")),
        shared_accounts=_texts(report.get("shared_accounts")),
        dry_run=report.get("dry_run") is True,
    )


def advice_text(advice: Advice) -> str:
    """A piece of advice as every text shows it: the action, then the signal over its threshold."""
    return f"{advice.action} ({advice.signal} {advice.value:g} > {advice.threshold:g})"


def error_text(error: StepError) -> str:
    return f"{error.step}: {error.message}"


def health_text(health: HealthReport | None) -> str:
    """The health check's outcome as every text shows it, e.g. "up, HTTP 200, 38 ms" or "down, timeout"; "?"
    when unknown. The latency only when production answered, the error only when it says more than the code."""
    if health is None:
        return "?"
    bits = [word_text(health.status)]
    if health.code is not None:
        bits.append(f"HTTP {health.code}")
    if health.latency_ms is not None and health.status is HealthStatus.UP:
        bits.append(f"{health.latency_ms:.0f} ms")
    if health.error and health.error != f"unexpected status {health.code}":
        bits.append(health.error)
    return ", ".join(bits)


def parse_reports(lines: Iterable[str]) -> list[Report]:
    """The `cycle.report` objects among log lines, in order; other events and non-JSON lines are skipped."""
    reports: list[Report] = []
    for line in lines:
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("event") == REPORT_EVENT:
            reports.append(data)
    return reports


def render_text(report: CycleReport) -> str:
    """The same report for a person."""
    # A step skipped is no problem for the verdict, but a verdict that judged without it says so beside itself.
    skipped_steps = [name for name, r in report.steps.items() if r.status is StepStatus.SKIPPED]
    lines = [
        f"cycle of fleet {report.fleet} at {_plain(report.started_at)} "
        f"({report.duration_s:.1f}s){' [plan: nothing was changed]' if report.dry_run else ''}",
        f"verdict of this cycle: {word_text(report.verdict)}"
        + (f" ({'; '.join(report.verdict_reasons)})" if report.verdict_reasons else "")
        + (f", without {' and '.join(skipped_steps)} (skipped, below)" if skipped_steps else ""),
        "",
        f"agents: {report.running} running of {report.desired} desired, "
        f"{report.spawned} {'would be spawned' if report.dry_run else 'spawned'}, {report.spawn_failures} failed",
    ]
    width = max((len(k) for k in report.roles), default=4)
    lines.append(f"  {'role':<{width}}  desired  running  spawned  failed  waiting")
    for key, tally in report.roles.items():
        waiting = ", ".join(
            f"slot {w.slot} until {_plain(w.until)} ({w.crashes} crashes)" for w in tally.waiting
        )
        lines.append(
            f"  {key:<{width}}  {tally.desired:>7}  {tally.running:>7}  {tally.spawned:>7}  {tally.failed:>6}"
            f"  {waiting or '-'}"
        )
    held_back = sum(t.held_back for t in report.roles.values())
    if held_back:
        lines.append(f"held back: {held_back} spawns, because a spawn of the same image failed (slow start)")
    for title, items in (("unreadable", report.unreadable), ("squatters", report.squatters),
                         ("lost nodes", report.lost_nodes), ("shared accounts", report.shared_accounts)):
        if items:
            lines.append(f"{title}: " + "; ".join(items))
    if report.budget is not None:
        lines.append(
            f"spawn budget: {report.budget.used} of {report.budget.limit} used this hour, "
            f"{report.budget.remaining} left"
        )
    merge = report.merge
    lines += [
        "",
        f"merge: {word_text(merge.status)}; {len(merge.merged)} merged, "
        + (f"{len(merge.queued)} queued, " if merge.queued else "")
        + (f"{len(merge.queue_failed)} failed in the queue, " if merge.queue_failed else "")
        + (f"{len(merge.updated)} brought up to date, " if merge.updated else "")
        + f"{merge.open} open, "
        f"review queue {merge.review_queue}, {merge.conflicting} conflicting"
        + (f"; stopped early: {merge.stopped}" if merge.stopped else ""),
    ]
    for pull in merge.pulls:
        lines.append(f"  #{pull.number}: {word_text(pull.outcome)} ({pull.reason})")
    lines += ["", "health: " + health_text(report.health)]
    skipped = [f"{name} ({r.detail})" for name, r in report.steps.items() if r.status is StepStatus.SKIPPED]
    if skipped:
        lines.append("skipped: " + "; ".join(skipped))
    if report.errors:
        lines += ["", "errors:"] + [f"  {error_text(e)}" for e in report.errors]
    if report.advice:
        lines += ["", "advice:"] + [f"  - {advice_text(a)}" for a in report.advice]
    return "\n".join(lines) + "\n"


_LINE_OWN_FIELDS = frozenset({"ts", "event", "fleet"})


class EventLog:
    """Writes one JSON object per line, with a timestamp, and never a secret."""

    def __init__(self, fleet: str, secrets: Iterable[str] = (), stream: TextIO | None = None) -> None:
        self.fleet = fleet
        self._secrets = tuple(s for s in secrets if s)
        self._stream = stream if stream is not None else sys.stdout

    def scrub(self, text: str) -> str:
        return redact.scrub(text, self._secrets)

    def emit(self, event: str, **fields: Any) -> None:
        self.write({"ts": datetime.now(UTC), "event": event, "fleet": self.fleet, **fields})

    def write(self, record: dict[str, Any]) -> None:
        # Scrubbed in its string values, then serialised: scrubbing the serialised line would let a secret that
        # is also a number, a key or JSON syntax break the line, and `status` and /metrics then find no report.
        # The line's own fields (its time, event and fleet) are the coordinator's words, never a secret's.
        body = {key: value if key in _LINE_OWN_FIELDS else redact.scrub_values(value, self._secrets)
                for key, value in record.items()}
        line = json.dumps(_plain(body), sort_keys=False, default=str)
        self._stream.write(line + "\n")
        self._stream.flush()

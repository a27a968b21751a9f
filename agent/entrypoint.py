#!/usr/bin/env python3
"""The reference agent's entrypoint: one task per container, in the role's mode (docs/agents.md).

The entrypoint does every GitHub read and write itself, with the agent's own token; the coding-agent CLI
(`claude -p` by default, the role's `command` when it has one) only reads what it is given (the checkout, and
the prompt: `AGENT_PROMPT`) and writes files: changes in the checkout, and into `AGENT_OUTBOX` what it wants
done on GitHub (`issues/*.md`, `review.md`), which the entrypoint validates before sending anything.

    Thinker        open issues from the outbox (never a title an open issue has); no pull request
    Task-driven    take one unclaimed issue addressed to the role (deterministic by slot), claim it visibly,
                   CLI, pull request saying `Closes #N`; no issue to take: exit 0 at once
    Self-directed  CLI, then a pull request for what changed, and the issues it wrote
    Reviewer       review one open, non-draft pull request not failing and not yet reviewed by this identity
                   at its head: the CLI writes review.md, submitted with commit_id = the head it read
    Sentinel       no CLI: production checked twice; down -> a revert pull request of the newest merge
                   (or an `incident` issue when the revert conflicts), unless a revert is already open

Exit codes: 0 done (or nothing to do); 1 a step failed; 78 (EX_CONFIG) the configuration is wrong: a secret
or variable missing or malformed (a secret it cannot take whole: under MIN_SECRET_CHARS, over MAX_SECRET_BYTES,
not UTF-8 text), the token refused by the git server or lacking workflows write, or the
CLI's program not in the image. Stdout is JSON lines, one per step, the last always `agent.exit`. Every line
either stream gets, and everything sent to GitHub, is scrubbed of the secrets' values. The GitHub token
reaches git alone (an HTTP header in git's environment) and the REST calls this script makes.

Python 3.11 standard library only; runs outside a container too (AGENT_SECRETS_DIR, AGENT_WORK_DIR).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets as random_tokens
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_CONFIG = 78  # sysexits.h EX_CONFIG

SECRETS_DIR = "/run/secrets"
TOKEN_SECRET = "GITHUB_TOKEN"
MODEL_SECRET = "ANTHROPIC_API_KEY"  # needed by the default CLI only
DEFAULT_SERVER_URL = "https://github.com"
DEFAULT_API_URL = "https://api.github.com"
DEFAULT_AUTHOR = ("agent-fleet", "agent@users.noreply")
HTTP_TIMEOUT_S = 30.0
# An agent secret's bounds, the coordinator's too (coordinator.redact MIN_SECRET_CHARS, coordinator.fleet
# MAX_AGENT_SECRET_BYTES; this image does not import the coordinator, a test holds them equal). A shorter value
# is no secret, and scrubbing it would blank ordinary text (and show the value by the gaps); a larger one is no
# key or token, and every secret but the token must fit one environment variable of the CLI (Linux allows 128 KiB).
MIN_SECRET_CHARS = 8
MAX_SECRET_BYTES = 64 * 1024
MAX_SUMMARY_CHARS = 8000  # of the CLI's output, quoted in the pull request's body
MAX_TITLE_CHARS = 200

THINKER, TASK_DRIVEN, SELF_DIRECTED, REVIEWER, SENTINEL = (
    "Thinker", "Task-driven", "Self-directed", "Reviewer", "Sentinel")
MODES = (THINKER, TASK_DRIVEN, SELF_DIRECTED, REVIEWER, SENTINEL)

# What the CLI may hand back through the outbox, and GitHub's own limits on what it becomes.
MAX_ISSUE_FILE_BYTES = 64 * 1024
MAX_ISSUE_TITLE_CHARS = 256  # GitHub refuses a longer issue title
MAX_BODY_CHARS = 65536  # GitHub's limit on an issue's, a pull request's and a review's body
MAX_REVIEW_FILE_BYTES = 256 * 1024
MAX_LABELS_PER_ISSUE = 10
MAX_DIFF_CHARS = 200_000  # of a pull request's diff in the reviewer's prompt
REVIEW_EVENTS = ("APPROVE", "REQUEST_CHANGES", "COMMENT")

DEFAULTS = {"AGENT_MAX_ISSUES": 5, "AGENT_CLAIM_TTL_S": 7200, "AGENT_MAX_RUN_S": 3000, "AGENT_COUNT": 1,
            "AGENT_HEALTH_RECHECK_S": 5}
TOKEN_EXPIRY_MARGIN_S = 300  # the run ends at least this long before GITHUB_TOKEN_EXPIRES_AT
DEFAULT_HEALTH_EXPECT = "200-399"
REVERT_LABEL = "revert"
INCIDENT_LABEL = "incident"
CLAIM_MARK = "agent-fleet:claim"
RELEASE_MARK = "agent-fleet:release"

# What git says when the server answers 401/403 to the token (it then wants a password, which it may not ask for).
REFUSED_SIGNS = ("terminal prompts disabled", "Authentication failed", "could not read Username",
                 "could not read Password", "returned error: 401", "returned error: 403")
# What GitHub answers a push that touches .github/workflows from a token without the workflows permission.
WORKFLOWS_SIGN = re.compile(r"refusing to allow .* (create or update )?workflow", re.IGNORECASE)

ROLE_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
REPOSITORY_PATTERN = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CLOSING_REFERENCE = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+#(\d+)\b", re.IGNORECASE)
LABELS_LINE = re.compile(r"^\s*labels\s*:(.*)$", re.IGNORECASE)
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class Stop(Exception):
    """Ends the run: `code` and a one-line `reason` (no secret in it: it is scrubbed anyway)."""

    def __init__(self, code: int, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.outcome, self.reason = code, outcome, reason


def failed(reason: str) -> Stop:
    return Stop(EXIT_FAILED, "failed", reason)


def misconfigured(reason: str) -> Stop:
    return Stop(EXIT_CONFIG, "config", reason)


# ------------------------------------------------------------------------------------------------ deciding (pure)


@dataclass(frozen=True)
class IssueDraft:
    """An issue the CLI asked for, valid: `labels` are the repository's spelling of those it has."""

    file: str
    title: str
    body: str
    labels: tuple[str, ...] = ()
    unknown_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejected:
    file: str
    reason: str


def normal_title(title: str) -> str:
    return " ".join(title.split()).casefold()


def read_issue_file(name: str, data: bytes, known_labels: Mapping[str, str]) -> IssueDraft | Rejected:
    """One `issues/*.md`: its first line the title (a leading `#` dropped), then the body; a line `Labels: a, b`
    names labels. `known_labels` maps the repository's labels, casefolded, to their names."""
    if len(data) > MAX_ISSUE_FILE_BYTES:
        return Rejected(name, f"larger than {MAX_ISSUE_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected(name, "not UTF-8 text")
    lines = text.replace("\r\n", "\n").split("\n")
    title = lines[0].strip().lstrip("#").strip()
    if not title:
        return Rejected(name, "its first line (the title) is empty")
    if len(title) > MAX_ISSUE_TITLE_CHARS:
        return Rejected(name, f"its title is longer than {MAX_ISSUE_TITLE_CHARS} characters")
    if CONTROL_CHARS.search(title):
        return Rejected(name, "its title has control characters")
    asked: list[str] = []
    body_lines: list[str] = []
    for line in lines[1:]:
        labels_line = LABELS_LINE.match(line)
        if labels_line and not asked:
            asked = [label.strip() for label in labels_line.group(1).split(",") if label.strip()]
        else:
            body_lines.append(line)
    if len(asked) > MAX_LABELS_PER_ISSUE:
        return Rejected(name, f"more than {MAX_LABELS_PER_ISSUE} labels")
    body = "\n".join(body_lines).strip()
    if len(body) > MAX_BODY_CHARS:
        return Rejected(name, f"its body is longer than {MAX_BODY_CHARS} characters")
    labels = tuple(dict.fromkeys(known_labels[a.casefold()] for a in asked if a.casefold() in known_labels))
    unknown = tuple(a for a in asked if a.casefold() not in known_labels)
    return IssueDraft(name, title, body, labels, unknown)


def plan_issues(files: Sequence[tuple[str, bytes]], open_titles: Iterable[str], known_labels: Mapping[str, str],
                limit: int) -> tuple[list[IssueDraft], list[Rejected]]:
    """Which of the outbox's issue files to open, in file-name order: valid, no title an open issue (or an
    earlier file) has, at most `limit`; every other one rejected with its reason."""
    taken = {normal_title(title) for title in open_titles}
    drafts: list[IssueDraft] = []
    rejected: list[Rejected] = []
    for name, data in sorted(files):
        if not name.endswith(".md"):
            rejected.append(Rejected(name, "not a .md file"))
            continue
        found = read_issue_file(name, data, known_labels)
        if isinstance(found, Rejected):
            rejected.append(found)
        elif normal_title(found.title) in taken:
            rejected.append(Rejected(name, f"an open issue already has the title {found.title!r}"))
        elif len(drafts) >= limit:
            rejected.append(Rejected(name, f"over the limit of {limit} issues a run (AGENT_MAX_ISSUES)"))
        else:
            taken.add(normal_title(found.title))
            drafts.append(found)
    return drafts, rejected


@dataclass(frozen=True)
class ReviewDraft:
    """The review to submit; `problem` says why review.md was not taken as written (then it is a COMMENT)."""

    event: str
    body: str
    problem: str | None = None


def read_review(data: bytes | None) -> ReviewDraft:
    """review.md: its first line APPROVE, REQUEST_CHANGES or COMMENT, then the body. Anything else is a COMMENT
    saying what was wrong: never an approval."""
    def comment(problem: str) -> ReviewDraft:
        return ReviewDraft("COMMENT", f"The reviewer agent's review could not be submitted as written: {problem}. "
                                      "This comment stands in for it; it approves nothing.", problem)

    if data is None:
        return comment("it wrote no review.md")
    if len(data) > MAX_REVIEW_FILE_BYTES:
        return comment(f"review.md is larger than {MAX_REVIEW_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError:
        return comment("review.md is not UTF-8 text")
    first, _, rest = text.strip().partition("\n")
    event = first.strip().strip("*#` ").upper()
    if event not in REVIEW_EVENTS:
        shown = first.strip()[:80]
        return comment(f"the first line of review.md is {shown!r}, not one of {', '.join(REVIEW_EVENTS)}")
    body = rest.strip()
    if len(body) > MAX_BODY_CHARS:
        return comment(f"the review's body is longer than {MAX_BODY_CHARS} characters")
    if event != "APPROVE" and not body:
        return comment(f"review.md asks for {event} without saying why (a body is required)")
    return ReviewDraft(event, body)


def closing_references(text: str) -> set[int]:
    """The issue numbers a pull request's body says it closes ("Closes #12", "fixes #3"), as GitHub reads them."""
    return {int(number) for number in CLOSING_REFERENCE.findall(text or "")}


@dataclass(frozen=True)
class Claim:
    comment_id: int
    agent: str
    at: datetime
    login: str


CLAIM_PATTERN = re.compile(r"<!--\s*" + re.escape(CLAIM_MARK) + r"\s+agent=(\S+)\s*-->")
RELEASE_PATTERN = re.compile(r"<!--\s*" + re.escape(RELEASE_MARK) + r"\s+agent=(\S+)\s*-->")


def parse_time(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def live_claims(comments: Sequence[Mapping[str, Any]], now: datetime, ttl_s: float) -> list[Claim]:
    """The claims on an issue that still hold, earliest first: a claim comment neither released by its agent
    nor older than the TTL (by GitHub's timestamp: an agent that died leaves its claim to expire)."""
    released = {m.group(1) for c in comments if (m := RELEASE_PATTERN.search(str(c.get("body") or "")))}
    claims = []
    for comment in comments:
        found = CLAIM_PATTERN.search(str(comment.get("body") or ""))
        at = parse_time(str(comment.get("created_at") or ""))
        if found is None or at is None or found.group(1) in released:
            continue
        if now - at >= timedelta(seconds=ttl_s):
            continue
        login = str((comment.get("user") or {}).get("login") or "")
        claims.append(Claim(int(comment.get("id") or 0), found.group(1), at, login))
    return sorted(claims, key=lambda claim: (claim.at, claim.comment_id))


Candidate = TypeVar("Candidate")


def choose_by_slot(candidates: Sequence[Candidate], slot: int, count: int) -> Candidate | None:
    """Slot s of a role of n agents takes the ((s-1) mod n)-th candidate, wrapping round when there are fewer
    candidates than agents: agents started together choose apart before any claim is written; a wrap-around
    is settled by the claim check after it."""
    if not candidates:
        return None
    position = (slot - 1) % max(count, 1)
    return candidates[position % len(candidates)]


@dataclass(frozen=True)
class IssueSummary:
    number: int
    title: str
    labels: tuple[str, ...]
    body: str = ""


def issues_to_take(issues: Sequence[IssueSummary], open_pull_bodies: Sequence[str],
                   claimed: Iterable[int]) -> list[IssueSummary]:
    """The issues a builder may take, oldest first: none an open pull request closes, none claimed."""
    closed_by_pulls = set().union(*(closing_references(body) for body in open_pull_bodies)) if open_pull_bodies \
        else set()
    excluded = closed_by_pulls | set(claimed)
    unique = {issue.number: issue for issue in issues}
    return [unique[n] for n in sorted(unique) if n not in excluded]


@dataclass(frozen=True)
class PullSummary:
    number: int
    title: str
    author: str
    draft: bool
    head_sha: str
    head_ref: str
    body: str = ""
    labels: tuple[str, ...] = ()


def pulls_to_review(pulls: Sequence[PullSummary], me: str, failing: Iterable[int],
                    reviewed_at_head: Iterable[int]) -> list[PullSummary]:
    """Open pull requests a reviewer may review, oldest first: not drafts, not its own (GitHub refuses that
    approval), checks not failing, and not yet reviewed by this identity at their current head."""
    skip = set(failing) | set(reviewed_at_head)
    return sorted((p for p in pulls if not p.draft and p.author != me and p.number not in skip),
                  key=lambda p: p.number)


def checks_failing(statuses: Sequence[Mapping[str, Any]], check_runs: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a commit's checks fail: a status in failure or error, or a completed check run with a failing
    conclusion (pending ones are not failing: a review may come before CI ends)."""
    if any(s.get("state") in ("failure", "error") for s in statuses):
        return True
    failing = {"failure", "timed_out", "cancelled", "action_required", "startup_failure", "stale"}
    return any(r.get("status") == "completed" and r.get("conclusion") in failing for r in check_runs)


def parse_expect(text: str) -> tuple[tuple[int, int], ...]:
    """`200-399` or `200,204`: the status codes that count as up (the coordinator's HEALTH_EXPECT)."""
    ranges = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if not low.strip().isdigit() or (high and not high.strip().isdigit()):
            raise ValueError(part)
        ranges.append((int(low), int(high or low)))
    return tuple(ranges)


@dataclass(frozen=True)
class Probe:
    at: str
    status: int | None
    error: str | None
    up: bool

    def describe(self) -> str:
        return f"{self.at}: " + (f"HTTP {self.status}" if self.status is not None else f"no answer ({self.error})")


@dataclass(frozen=True)
class MergedPull:
    number: int
    title: str
    merge_commit_sha: str
    merged_at: str
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class SentinelAction:
    """What the Sentinel does: "up" (nothing), "revert_open" (one waits already), "revert" (`pull`), or
    "nothing_to_revert" (production down, no merge left to undo)."""

    kind: str
    pull: MergedPull | None = None
    open_revert: int | None = None


REVERT_TITLE = re.compile(r"^Revert #(\d+)\b")


def sentinel_action(probes: Sequence[Probe], open_reverts: Sequence[int], merged: Sequence[MergedPull],
                    reverted: Iterable[int], declined: Iterable[int] = ()) -> SentinelAction:
    """Down means every probe failed (two, a few seconds apart). Then, unless a revert pull request is open,
    revert the newest pull request merged into the default branch that is not a revert and not reverted
    already (production still down after a merged revert: the one before it). A revert someone closed unmerged
    was declined by a person: nothing older is reverted in its place."""
    if not probes or any(probe.up for probe in probes):
        return SentinelAction("up")
    if open_reverts:
        return SentinelAction("revert_open", open_revert=min(open_reverts))
    done, refused = set(reverted), set(declined)
    for pull in sorted(merged, key=lambda p: (p.merged_at, p.number), reverse=True):
        if REVERT_LABEL in pull.labels or pull.number in done:
            continue
        if pull.number in refused:
            return SentinelAction("nothing_to_revert")
        return SentinelAction("revert", pull=pull)
    return SentinelAction("nothing_to_revert")


def retry_after_s(status: int, headers: Mapping[str, str], payload: Any, now: float) -> float | None:
    """How long GitHub asks to wait before trying again, for a rate limit (403/429 with Retry-After, the primary
    limit spent, or a message saying so); None for any other answer."""
    if status not in (403, 429):
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    retry = lowered.get("retry-after", "").strip()
    if retry.isdigit():
        return float(retry)
    if lowered.get("x-ratelimit-remaining") == "0" and lowered.get("x-ratelimit-reset", "").isdigit():
        return max(0.0, int(lowered["x-ratelimit-reset"]) - now) + 1
    message = str(payload.get("message") or "") if isinstance(payload, dict) else ""
    if "rate limit" in message.lower():
        return 60.0
    return None


def run_deadline(start: float, max_run_s: float, token_expires_at: float | None) -> float:
    """When the run must end (epoch seconds): AGENT_MAX_RUN_S after the start, and never later than five
    minutes before the token expires."""
    deadline = start + max_run_s
    if token_expires_at is not None:
        deadline = min(deadline, token_expires_at - TOKEN_EXPIRY_MARGIN_S)
    return deadline


# ------------------------------------------------------------------------------------------------ output


class Output:
    """JSON lines on stdout, the CLI's output on stderr; both scrubbed of every secret value."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.cost_usd: float | None = None  # what the CLI said it cost, reported again in agent.exit
        self._lock = threading.Lock()

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def scrub_values(self, value: Any) -> Any:
        """`value` with every string in it scrubbed; keys, numbers and the JSON around them left as they are."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {key: self.scrub_values(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub_values(item) for item in value]
        return value

    def event(self, name: str, **fields: Any) -> None:
        # The fields are scrubbed before they are serialised, the event's name (this script's own) not at all: a
        # line scrubbed after could lose its quotes, keys or numbers to a secret, and stop being JSON.
        line = json.dumps({"event": f"agent.{name}", **self.scrub_values(fields)}, ensure_ascii=False)
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def relay(self, line: str) -> None:
        with self._lock:
            sys.stderr.write(self.scrub(line.rstrip("\n")) + "\n")
            sys.stderr.flush()


# ------------------------------------------------------------------------------------------------ settings


def _number(env: Mapping[str, str], name: str, minimum: float, integer: bool = True) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return float(DEFAULTS[name])
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum or value != value:
        kind = "a whole number" if integer else "a number"
        raise misconfigured(f"{name}={raw!r} is not {kind} of at least {minimum:g}")
    return float(value)


class Settings:
    """What the coordinator hands over: the environment and the secret files (`SecretFiles`)."""

    def __init__(self, env: Mapping[str, str], argv: Sequence[str], secrets: SecretFiles,
                 started: float | None = None) -> None:
        self.env = env
        self.command = list(argv)
        self.secrets_dir = secrets.directory
        self.secrets = secrets.values
        self.mode = env.get("AGENT_MODE", "").strip() or SELF_DIRECTED
        # The secret holding the GitHub token: GITHUB_TOKEN, or another a role names (a reviewer's own identity
        # delivered as a per-role agent secret, e.g. REVIEWER_GITHUB_TOKEN).
        self.token_secret = env.get("AGENT_GITHUB_TOKEN_SECRET", "").strip() or TOKEN_SECRET
        if not ENV_NAME_PATTERN.fullmatch(self.token_secret):
            raise misconfigured(f"AGENT_GITHUB_TOKEN_SECRET={self.token_secret!r} is not a secret's name")
        missing_vars = [name for name in ("AGENT_ROLE", "AGENT_SLOT", "AGENT_BRIEF", "GITHUB_REPOSITORY")
                        if not env.get(name, "").strip()]
        uses_default_cli = not self.command and self.mode != SENTINEL
        needed = [self.token_secret] + ([MODEL_SECRET] if uses_default_cli else [])
        missing_secrets = [name for name in needed if name not in secrets.values and name not in secrets.problems]
        problems = [f"secret {name} {problem}" for name, problem in secrets.problems.items()]
        if missing_secrets:
            noun = "secret" if len(missing_secrets) == 1 else "secrets"
            problems.insert(0, f"missing {noun} {', '.join(missing_secrets)} (a non-empty file "
                            f"{self.secrets_dir}/<NAME> each)")
        if missing_vars:
            noun = "variable" if len(missing_vars) == 1 else "variables"
            problems.append(f"missing {noun} {', '.join(missing_vars)}")
        if problems:
            raise misconfigured("; ".join(problems))
        self.role = env["AGENT_ROLE"].strip()
        self.slot = env["AGENT_SLOT"].strip()
        self.brief = env["AGENT_BRIEF"].strip()
        self.repository = env["GITHUB_REPOSITORY"].strip()
        if self.mode not in MODES:
            raise misconfigured(f"AGENT_MODE={self.mode!r} is not a mode (one of {', '.join(MODES)})")
        if not ROLE_PATTERN.fullmatch(self.role):
            raise misconfigured(f"AGENT_ROLE={self.role!r} is not a role key (lower case, digits, _)")
        if not self.slot.isascii() or not self.slot.isdigit() or int(self.slot) < 1:
            raise misconfigured(f"AGENT_SLOT={self.slot!r} is not a slot number")
        if not REPOSITORY_PATTERN.fullmatch(self.repository):
            raise misconfigured(f"GITHUB_REPOSITORY={self.repository!r} is not owner/name")
        self.server_url, self.api_url = github_urls(env)
        self.count = int(_number(env, "AGENT_COUNT", 1))
        self.max_issues = int(_number(env, "AGENT_MAX_ISSUES", 0))
        self.claim_ttl_s = _number(env, "AGENT_CLAIM_TTL_S", 1)
        self.max_run_s = _number(env, "AGENT_MAX_RUN_S", 1)
        self.health_recheck_s = _number(env, "AGENT_HEALTH_RECHECK_S", 0, integer=False)
        self.budget_usd: float | None = None
        if env.get("AGENT_MAX_BUDGET_USD", "").strip():
            raw = env["AGENT_MAX_BUDGET_USD"].strip()
            try:
                self.budget_usd = float(raw)
            except ValueError:
                self.budget_usd = -1.0
            if not self.budget_usd > 0:
                raise misconfigured(f"AGENT_MAX_BUDGET_USD={raw!r} is not a positive number of US dollars")
        expires_at: float | None = None
        if env.get("GITHUB_TOKEN_EXPIRES_AT", "").strip():
            raw = env["GITHUB_TOKEN_EXPIRES_AT"].strip()
            moment = parse_time(raw)
            if moment is None:
                raise misconfigured(f"GITHUB_TOKEN_EXPIRES_AT={raw!r} is not an ISO 8601 time like "
                                    "2026-01-01T12:00:00Z")
            expires_at = moment.timestamp()
        self.started = time.time() if started is None else started
        self.deadline = run_deadline(self.started, self.max_run_s, expires_at)
        if self.deadline <= self.started:
            raise misconfigured("GITHUB_TOKEN_EXPIRES_AT is less than 5 minutes away: the token would expire "
                                "during the run")
        self.backlog_labels = tuple(label.strip() for label in env.get("BACKLOG_LABELS", "").split(",")
                                    if label.strip())
        self.health_url = env.get("HEALTH_URL", "").strip()
        try:
            self.health_expect = parse_expect(env.get("HEALTH_EXPECT", "").strip() or DEFAULT_HEALTH_EXPECT)
        except ValueError:
            raise misconfigured(f"HEALTH_EXPECT={env.get('HEALTH_EXPECT')!r} is not status codes and ranges like "
                                f"{DEFAULT_HEALTH_EXPECT} or 200,204") from None
        self.token = self.secrets[self.token_secret]

    def cli_secrets(self) -> dict[str, str]:
        """The secrets the CLI gets as environment variables: all but the GitHub token (the model's key...)."""
        return {name: value for name, value in self.secrets.items() if name not in (TOKEN_SECRET, self.token_secret)}

    def left_s(self) -> float:
        return self.deadline - time.time()

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repository.split("/", 1)[1]

    @property
    def role_label(self) -> str:
        return f"role:{self.role}"


class SecretFiles:
    """Every file of the secrets' directory: its value (the text, stripped), or what is wrong with it.

    Each one is either taken whole (given to the CLI, but the token, and scrubbed) or a problem that stops the run
    (exit 78, naming the secret, never its value): none is dropped. An empty file counts as no file.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.values: dict[str, str] = {}
        self.problems: dict[str, str] = {}
        if not directory.is_dir():
            return
        for path in sorted(directory.iterdir()):
            try:
                value = secret_text(path)
            except OSError as exc:
                self.problems[path.name] = f"is unreadable by uid {os.getuid()} ({exc.strerror or type(exc).__name__})"
                continue
            except ValueError as exc:
                self.problems[path.name] = str(exc)
                continue
            if not value:
                continue
            if not ENV_NAME_PATTERN.fullmatch(path.name):
                self.problems[path.name] = "is not named as an environment variable (A-Z, a-z, 0-9 and _)"
            elif len(value) < MIN_SECRET_CHARS:
                self.problems[path.name] = (f"is shorter than {MIN_SECRET_CHARS} characters, too short to be a "
                                            "secret (scrubbing it would blank ordinary text)")
            else:
                self.values[path.name] = value

    def scrubbed_forms(self, token_secret: str = TOKEN_SECRET) -> list[str]:
        """What output is scrubbed of, longest first (so that one containing another is scrubbed whole): every
        value as it is, as JSON writes it, and each line of it long enough to be a secret (the CLI's output is
        relayed line by line); the token also as git's Authorization header carries it."""
        forms: set[str] = set()
        for name, value in self.values.items():
            for text in (value, *value.splitlines()):
                text = text.strip()
                if len(text) >= MIN_SECRET_CHARS:
                    forms |= {text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
            if name in (TOKEN_SECRET, token_secret):
                forms.add(base64.b64encode(f"x-access-token:{value}".encode()).decode())
        return sorted(forms, key=len, reverse=True)


def secret_text(path: Path) -> str:
    """A secret file's text, stripped. OSError when unreadable, ValueError (the reason) when it cannot be taken."""
    if not path.is_file():
        raise ValueError("is not a file")
    with open(path, "rb") as file:
        data = file.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"is larger than {MAX_SECRET_BYTES} bytes, the limit of an agent secret")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None


def github_urls(env: Mapping[str, str]) -> tuple[str, str]:
    """GITHUB_SERVER_URL and GITHUB_API_URL; either one implies the other (github.com, or GHE's /api/v3)."""
    server = env.get("GITHUB_SERVER_URL", "").strip().rstrip("/")
    api = env.get("GITHUB_API_URL", "").strip().rstrip("/")
    for name, value in (("GITHUB_SERVER_URL", server), ("GITHUB_API_URL", api)):
        if value and not re.fullmatch(r"https?://[^\s/@]+(/\S*)?", value):
            raise misconfigured(f"{name} is not an http(s) URL without credentials")
    if not server:
        server = api[: -len("/api/v3")] if api.endswith("/api/v3") else DEFAULT_SERVER_URL
    if not api:
        api = DEFAULT_API_URL if server == DEFAULT_SERVER_URL else server + "/api/v3"
    return server, api


# ------------------------------------------------------------------------------------------------ git


class Git:
    """git in one checkout. Only clone, fetch and push carry the token: as `http.<server>/.extraHeader`, set
    through GIT_CONFIG_COUNT in git's own environment, scoped to the GitHub server's URL."""

    def __init__(self, settings: Settings, output: Output, checkout: Path) -> None:
        self.settings, self.output, self.checkout = settings, output, checkout
        self.remote = f"{settings.server_url}/{settings.repository}.git"

    def _env(self, authenticated: bool) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_CONFIG_")}
        env["GIT_TERMINAL_PROMPT"] = "0"  # a refused token fails; it never waits for a password
        env["GCM_INTERACTIVE"] = "never"
        config = [
            ("http.lowSpeedLimit", "1000"),  # a stalled transfer fails after a minute instead of hanging
            ("http.lowSpeedTime", "60"),
        ]
        if authenticated:
            basic = base64.b64encode(f"x-access-token:{self.settings.token}".encode()).decode()
            config.append((f"http.{self.settings.server_url}/.extraHeader", f"Authorization: Basic {basic}"))
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env

    def succeeds(self, *args: str) -> bool:
        """Runs a local git command (no token) that may fail, e.g. a revert that conflicts."""
        proc = subprocess.run(["git", *args], cwd=self.checkout, env=self._env(False), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace")
        return proc.returncode == 0

    def run(self, *args: str, authenticated: bool = False, what: str | None = None, cwd: Path | None = None,
            check: bool = True) -> str:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=cwd or self.checkout, env=self._env(authenticated), stdin=subprocess.DEVNULL,
                capture_output=True, text=True, errors="replace",
            )
        except FileNotFoundError:
            raise misconfigured("git is not installed in the image") from None
        if proc.returncode != 0 and check:
            detail = " ".join(line.strip() for line in proc.stderr.strip().splitlines()[-3:]) or "no message"
            doing = what or "git " + args[0]
            if authenticated and WORKFLOWS_SIGN.search(proc.stderr):
                raise misconfigured(f"{doing} was refused for changing .github/workflows: the token lacks "
                                    "workflows write")
            if authenticated and any(sign in proc.stderr for sign in REFUSED_SIGNS):
                raise misconfigured(f"{doing} failed: {self.settings.server_url} refused the "
                                    f"{self.settings.token_secret} secret (check the token and its access to "
                                    f"{self.settings.repository})")
            raise failed(f"{doing} failed (git exit {proc.returncode}): {detail}")
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def clone(self) -> None:
        self.checkout.parent.mkdir(parents=True, exist_ok=True)
        self.run("clone", "--quiet", "--no-tags", "--single-branch", "--", self.remote, str(self.checkout),
                 authenticated=True, what=f"cloning {self.remote}", cwd=self.checkout.parent)

    def fetch(self, branch: str) -> str:
        """Fetches a branch; its head sha."""
        self.run("fetch", "--quiet", "--no-tags", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
                 authenticated=True, what=f"fetching {branch}")
        return self.run("rev-parse", f"refs/remotes/origin/{branch}")

    def push(self, branch: str) -> None:
        self.run("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", authenticated=True,
                 what=f"pushing {branch}")

    def changed(self, base_sha: str) -> tuple[int, bool]:
        """(commits on top of the base, whether the working tree has changes git would commit)."""
        commits = int(self.run("rev-list", "--count", f"{base_sha}..HEAD") or "0")
        dirty = bool(self.run("status", "--porcelain", "--untracked-files=all"))
        return commits, dirty


# ------------------------------------------------------------------------------------------------ GitHub REST


class GitHub:
    """The REST calls an agent makes, with its own token. A rate limit (403/429 with Retry-After, or saying so)
    is waited out once, within the run's deadline."""

    def __init__(self, settings: Settings, output: Output) -> None:
        self.settings, self.output = settings, output
        self.repo_url = f"{settings.api_url}/repos/{settings.repository}"

    def _once(self, method: str, url: str, body: Any, accept: str) -> tuple[int, Any, dict[str, str]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Accept": accept,
            "Authorization": f"Bearer {self.settings.token}",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "agent-fleet-agent",
            **({"Content-Type": "application/json"} if data is not None else {}),
        })
        timeout = max(1.0, min(HTTP_TIMEOUT_S, self.settings.left_s()))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                headers = dict(response.headers.items())
                if accept.endswith(".diff"):
                    return response.status, raw.decode("utf-8", errors="replace"), headers
                return response.status, json.loads(raw) if raw else None, headers
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = None
            return error.code, payload, dict(error.headers.items())

    def call(self, method: str, url: str, body: Any = None, accept: str = "application/vnd.github+json",
             ) -> tuple[int, Any]:
        status, payload, headers = self._once(method, url, body, accept)
        wait = retry_after_s(status, headers, payload, time.time())
        if wait is not None:
            if wait > self.settings.left_s() - 5:
                raise failed(f"{method} {url}: GitHub's rate limit asks to wait {wait:.0f} s, past the run's deadline")
            self.output.event("rate_limited", method=method, url=url, status=status, wait_s=wait)
            time.sleep(wait)
            status, payload, headers = self._once(method, url, body, accept)
        return status, payload

    def get(self, path: str, what: str) -> Any:
        url = f"{self.repo_url}{path}" if path.startswith("/") or not path else path
        try:
            status, payload = self.call("GET", url)
        except (OSError, ValueError) as exc:
            raise failed(f"{what}: GET {url} got no answer: {exc}") from None
        if status != 200:
            raise failed(f"{what}: GET {url} answered {status}: {github_message(payload)}")
        return payload

    def get_all(self, path: str, what: str, limit: int = 300) -> list[Any]:
        """A listing, page by page (100 a page), up to `limit` items."""
        found: list[Any] = []
        page = 1
        separator = "&" if "?" in path else "?"
        while len(found) < limit:
            items = self.get(f"{path}{separator}per_page=100&page={page}", what)
            if not isinstance(items, list):
                raise failed(f"{what}: GET {path} answered no list")
            found.extend(items)
            if len(items) < 100:
                break
            page += 1
        return found[:limit]

    def post(self, path: str, body: Any, what: str, expect: tuple[int, ...] = (200, 201)) -> Any:
        url = f"{self.repo_url}{path}"
        try:
            status, payload = self.call("POST", url, body)
        except (OSError, ValueError) as exc:
            raise failed(f"{what}: POST {url} got no answer: {exc}") from None
        if status not in expect:
            raise failed(f"{what}: POST {url} answered {status}: {github_message(payload)}")
        return payload

    def login(self) -> str:
        """Who this token is (GET /user); AGENT_GITHUB_LOGIN when GitHub will not say (an App's token)."""
        try:
            status, payload = self.call("GET", f"{self.settings.api_url}/user")
        except (OSError, ValueError):
            status, payload = 0, None
        if status == 200 and isinstance(payload, dict) and payload.get("login"):
            return str(payload["login"])
        configured = self.settings.env.get("AGENT_GITHUB_LOGIN", "").strip()
        if configured:
            return configured
        raise misconfigured("GET /user does not say who the token is: set AGENT_GITHUB_LOGIN to the agent's login "
                            "(an App's is <app-slug>[bot])")

    def labels(self) -> dict[str, str]:
        """The repository's labels, casefolded -> name."""
        return {str(label["name"]).casefold(): str(label["name"])
                for label in self.get_all("/labels", "listing the labels") if isinstance(label, dict)}

    def open_pull(self, title: str, head: str, base: str, body: str) -> dict[str, Any]:
        """Opens a pull request; one already open for the branch (a retry, or an answer lost) is taken instead, so
        a pushed branch is never left without its pull request."""
        url = f"{self.repo_url}/pulls"
        request = {"title": title, "head": head, "base": base, "body": body}
        status, payload = 0, None
        for attempt in (1, 2):
            existing = self.find_open_pull(head) if attempt > 1 else None
            if existing is not None:
                return existing
            try:
                status, payload = self.call("POST", url, request)
            except (OSError, ValueError) as exc:  # no answer: it may or may not have been created
                status, payload = 0, {"message": str(exc) or type(exc).__name__}
            if status == 201 and isinstance(payload, dict):
                return payload
            if status == 422 and "already exists" in json.dumps(payload):
                existing = self.find_open_pull(head)
                if existing is not None:
                    return existing
            if status and status < 500:
                break
            if attempt == 1:
                time.sleep(2)
        existing = self.find_open_pull(head)
        if existing is not None:
            return existing
        raise failed(f"opening the pull request: POST {url} answered {status or 'nothing'}: "
                     f"{github_message(payload)}")

    def find_open_pull(self, head: str) -> dict[str, Any] | None:
        try:
            status, payload = self.call("GET", f"{self.repo_url}/pulls?state=open&head={self.settings.owner}:{head}")
        except (OSError, ValueError):
            return None
        if status == 200 and isinstance(payload, list) and payload and isinstance(payload[0], dict):
            return payload[0]
        return None

    def add_labels(self, number: int, labels: Sequence[str]) -> None:
        url = f"{self.repo_url}/issues/{number}/labels"
        status, payload = 0, None
        for attempt in (1, 2):  # adding a label twice is harmless: retried once on no answer or a 5xx
            try:
                status, payload = self.call("POST", url, {"labels": list(labels)})
            except (OSError, ValueError) as exc:
                status, payload = 0, {"message": str(exc) or type(exc).__name__}
            if status == 200:
                return
            if status and status < 500:
                break
            if attempt == 1:
                time.sleep(2)
        raise failed(f"labelling #{number} {', '.join(labels)}: POST {url} answered {status or 'nothing'}: "
                     f"{github_message(payload)}")

    def comment(self, number: int, body: str, what: str) -> dict[str, Any]:
        found = self.post(f"/issues/{number}/comments", {"body": body}, what, expect=(201,))
        return found if isinstance(found, dict) else {}


def github_message(payload: Any) -> str:
    if not isinstance(payload, dict):
        return "no message"
    message = str(payload.get("message") or "no message")
    details = [str(e.get("message") or e.get("code")) if isinstance(e, dict) else str(e)
               for e in payload.get("errors") or []]
    return message + (f" ({'; '.join(details)})" if details else "")


# ------------------------------------------------------------------------------------------------ the CLI


OUTBOX_ISSUES_HELP = (
    "To open issues, write one Markdown file per issue into {outbox}/issues/ (e.g. {outbox}/issues/1.md): its "
    "first line the title, then the body; a line `Labels: a, b` applies labels the repository has ({labels}); "
    "`role:<key>` addresses the builders of role <key>. At most {limit} issues a run; a title an open issue "
    "already has is skipped. The entrypoint opens them: you have no GitHub access yourself."
)


def mode_prompt(settings: Settings, branch: str, base: str, outbox: Path, context: str) -> str:
    """What the CLI is told: the brief, then exactly what the entrypoint expects of it in this mode."""
    who = (f"You are the {settings.role} agent (slot {settings.slot}) of a fleet of coding agents, in a fresh "
           f"clone of {settings.repository}")
    pull_note = (f"on the branch {branch}, made from {base}. Make your changes in this working tree. When you "
                 f"finish, everything you changed is committed, pushed and opened as one pull request labelled "
                 f"role:{settings.role}; do not push or open a pull request yourself. If nothing meaningful is left "
                 f"to do, change nothing: then no pull request is opened.")
    parts = [settings.brief, ""]
    if settings.mode == THINKER:
        parts.append(f"{who} (read it; changes to it are discarded). Your output is issues, not code.")
    elif settings.mode == REVIEWER:
        parts.append(f"{who}, checked out at the head of the pull request below. Do not change files. Write your "
                     f"review to {outbox}/review.md: its first line APPROVE, REQUEST_CHANGES or COMMENT, then the "
                     "review's body (required unless you approve). Approve only what is correct and tested.")
    else:
        parts.append(f"{who}, {pull_note}")
    if context:
        parts += ["", context]
    return "\n".join(parts).strip()


def default_command(settings: Settings, prompt: str) -> list[str]:
    command = ["claude", "-p", prompt, "--output-format", "json", "--permission-mode", "acceptEdits"]
    if settings.budget_usd is not None:
        command += ["--max-budget-usd", f"{settings.budget_usd:g}"]  # Claude Code's own spend cap (print mode)
    return command


class CliResult:
    def __init__(self, code: int, stdout: str, seconds: float) -> None:
        self.code, self.stdout, self.seconds = code, stdout, seconds
        self.summary, self.is_error, self.cost_usd = "", False, None
        result = _last_json_object(stdout)
        if result is not None and isinstance(result.get("result"), str):
            self.summary = result["result"].strip()
            self.is_error = bool(result.get("is_error"))
            cost = result.get("total_cost_usd")
            self.cost_usd = cost if isinstance(cost, int | float) else None
        elif result is None:
            self.summary = stdout.strip()


def _last_json_object(text: str) -> dict[str, Any] | None:
    """Claude Code's `--output-format json` prints one object; stream-json prints one per line, the result last."""
    candidates = [text.strip()] + [line.strip() for line in reversed(text.strip().splitlines())]
    for candidate in candidates:
        if candidate.startswith("{"):
            try:
                value = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the CLI's process group, SIGKILL after 10 s."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_cli(command: Sequence[str], settings: Settings, output: Output, checkout: Path,
            extra_env: Mapping[str, str]) -> CliResult:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_CONFIG_")}
    env |= settings.cli_secrets()
    env |= dict(extra_env)
    env.setdefault("DISABLE_AUTOUPDATER", "1")
    started = time.monotonic()
    try:
        proc = subprocess.Popen(list(command), cwd=checkout, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                                start_new_session=True)
    except FileNotFoundError:
        raise misconfigured(f"the CLI {command[0]!r} is not in the image") from None
    except OSError as exc:
        raise failed(f"the CLI {command[0]!r} could not start: {exc.strerror or exc}") from None
    kept: list[str] = []

    def pump(stream: IO[str], keep: bool) -> None:
        for line in stream:
            output.relay(line)
            if keep:
                kept.append(line)

    assert proc.stdout is not None and proc.stderr is not None
    readers = [threading.Thread(target=pump, args=(proc.stdout, True), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, False), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        code = proc.wait(timeout=max(0.0, settings.left_s()))
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        for reader in readers:
            reader.join(timeout=5)
        seconds = time.monotonic() - started
        output.event("cli", code=None, seconds=round(seconds, 1), stopped="deadline")
        raise failed(f"the CLI was stopped at the run's deadline after {seconds:.0f} s (AGENT_MAX_RUN_S="
                     f"{settings.max_run_s:g}, or 5 minutes before GITHUB_TOKEN_EXPIRES_AT): nothing pushed") from None
    for reader in readers:
        reader.join()
    return CliResult(code, "".join(kept), time.monotonic() - started)


# ------------------------------------------------------------------------------------------------ the run


def quote(text: str) -> list[str]:
    return [f"> {line}" if line else ">" for line in text.splitlines()]


def pull_body(settings: Settings, cli: CliResult, branch: str, issue: IssueSummary | None) -> str:
    lines = []
    if issue is not None:
        lines += [f"Closes #{issue.number}", ""]
    lines += [
        f"Opened by the `{settings.role}` agent (slot {settings.slot}) of agent-fleet, from the branch `{branch}`.",
        "",
        f"Role: `role:{settings.role}` ({settings.mode})",
        "",
        "Brief:",
        "",
        *quote(settings.brief),
    ]
    if cli.summary:
        summary = cli.summary
        if len(summary) > MAX_SUMMARY_CHARS:
            summary = summary[:MAX_SUMMARY_CHARS] + "\n\n(cut)"
        lines += ["", "What the agent says it did:", "", summary]
    return "\n".join(lines)


def one_line(text: str, limit: int = MAX_TITLE_CHARS) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass
class Run:
    """One run's state, shared by the steps of its mode."""

    settings: Settings
    output: Output
    github: GitHub
    work: Path
    outbox: Path
    branch: str
    stamp: str
    agent_id: str
    git: Git | None = None
    base: str = ""
    base_sha: str = ""
    cost_usd: float | None = None
    claimed: IssueSummary | None = None
    done: list[str] = field(default_factory=list)

    def checkout(self) -> Git:
        settings = self.settings
        checkout = Path(tempfile.mkdtemp(prefix=f"{settings.role}-{settings.slot}-", dir=self.work)) / settings.name
        git = Git(settings, self.output, checkout)
        git.clone()
        self.base = git.run("rev-parse", "--abbrev-ref", "HEAD")
        self.base_sha = git.run("rev-parse", "--verify", "HEAD",
                                what="reading the default branch (is the repository empty?)")
        name = settings.env.get("GIT_AUTHOR_NAME", "").strip() or DEFAULT_AUTHOR[0]
        email = settings.env.get("GIT_AUTHOR_EMAIL", "").strip() or DEFAULT_AUTHOR[1]
        git.run("config", "user.name", name)
        git.run("config", "user.email", email)
        self.git = git
        return git

    def cli(self, prompt: str, extra_env: Mapping[str, str] | None = None) -> CliResult:
        settings, git = self.settings, self.git
        assert git is not None
        (self.outbox / "issues").mkdir(parents=True, exist_ok=True)
        command = settings.command or default_command(settings, prompt)
        env = {"AGENT_BRANCH": self.branch, "AGENT_BASE_BRANCH": self.base, "AGENT_CHECKOUT": str(git.checkout),
               "AGENT_OUTBOX": str(self.outbox), "AGENT_PROMPT": prompt, **(extra_env or {})}
        cli = run_cli(command, settings, self.output, git.checkout, env)
        self.cost_usd = self.output.cost_usd = cli.cost_usd
        self.output.event("cli", code=cli.code, seconds=round(cli.seconds, 1), is_error=cli.is_error,
                          cost_usd=cli.cost_usd)
        if cli.code != 0:
            raise failed(f"the CLI exited {cli.code}")
        if cli.is_error:
            raise failed(f"the CLI reported an error: {one_line(cli.summary) or 'no message'}")
        if self.settings.left_s() <= 0:
            raise failed("the run's deadline passed: nothing pushed")
        return cli

    # -------------------------------------------------------------- issues from the outbox

    def open_issues_from_outbox(self, labels: Mapping[str, str], open_titles: Sequence[str]) -> None:
        folder = self.outbox / "issues"
        files: list[tuple[str, bytes]] = []
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.is_file():
                    with open(path, "rb") as handle:
                        files.append((path.name, handle.read(MAX_ISSUE_FILE_BYTES + 1)))
                else:
                    files.append((path.name, b""))
        drafts, rejected = plan_issues(files, open_titles, labels, self.settings.max_issues)
        for rejection in rejected:
            self.output.event("issue_rejected", file=rejection.file, reason=rejection.reason)
        for draft in drafts:
            if draft.unknown_labels:
                self.output.event("labels_skipped", file=draft.file, labels=list(draft.unknown_labels),
                                  reason="the repository has no such label")
            request: dict[str, Any] = {"title": self.output.scrub(draft.title), "body": self.output.scrub(draft.body)}
            if draft.labels:
                request["labels"] = list(draft.labels)
            created = self.github.post("/issues", request, f"opening the issue from {draft.file}", expect=(201,))
            number = int(created["number"]) if isinstance(created, dict) else 0
            self.output.event("issue", number=number, title=draft.title, labels=list(draft.labels), file=draft.file)
            self.done.append("issues")

    def open_issue_titles(self) -> list[IssueSummary]:
        found = self.github.get_all("/issues?state=open", "listing the open issues")
        return [issue_summary(item) for item in found if isinstance(item, dict) and "pull_request" not in item]

    # -------------------------------------------------------------- commit, push, pull request

    def push_and_open(self, cli: CliResult, issue: IssueSummary | None, labels: Sequence[str],
                      title: str | None = None) -> bool:
        """Commits what the CLI left, pushes, opens the pull request and labels it; False when nothing changed."""
        git, settings = self.git, self.settings
        assert git is not None
        commits, dirty = git.changed(self.base_sha)
        if not commits and not dirty:
            return False
        first_commit = git.run("log", "--reverse", "--format=%s", f"{self.base_sha}..HEAD").splitlines()[:1]
        if title is None:
            title = one_line(first_commit[0]) if first_commit else (
                one_line(issue.title) if issue is not None else f"{settings.role}: changes from agent {settings.slot}")
        if dirty:
            git.run("add", "--all")
            message = title if not commits else f"{settings.role}: remaining changes from agent {settings.slot}"
            git.run("commit", "--quiet", "--no-verify", "-m", message, what="committing the changes")
        head = git.run("rev-parse", "HEAD")
        if settings.left_s() <= 0:
            raise failed("the run's deadline passed before the push: nothing pushed")
        git.push(self.branch)
        self.output.event("pushed", branch=self.branch, head=head, commits=commits + (1 if dirty else 0))
        # What goes to GitHub is scrubbed too: the CLI can read the secret files, and may have printed one.
        body = self.output.scrub(pull_body(settings, cli, self.branch, issue))
        pull = self.github.open_pull(self.output.scrub(title), self.branch, self.base, body)
        number = int(pull["number"])
        self.github.add_labels(number, labels)
        self.output.event("pull_request", number=number, url=pull.get("html_url"), head=head, labels=list(labels),
                          closes=issue.number if issue is not None else None)
        self.done.append("opened")
        return True


def issue_summary(item: Mapping[str, Any]) -> IssueSummary:
    labels = tuple(str(label.get("name")) for label in item.get("labels") or [] if isinstance(label, dict))
    return IssueSummary(int(item["number"]), str(item.get("title") or ""), labels, str(item.get("body") or ""))


def pull_summary(item: Mapping[str, Any]) -> PullSummary:
    head = item.get("head") or {}
    labels = tuple(str(label.get("name")) for label in item.get("labels") or [] if isinstance(label, dict))
    return PullSummary(int(item["number"]), str(item.get("title") or ""),
                       str((item.get("user") or {}).get("login") or ""), bool(item.get("draft")),
                       str(head.get("sha") or ""), str(head.get("ref") or ""), str(item.get("body") or ""), labels)


def issues_context(settings: Settings, outbox: Path, labels: Mapping[str, str], open_issues: Sequence[IssueSummary],
                   ) -> str:
    shown = ", ".join(sorted(labels.values(), key=str.casefold)) or "none"
    lines = [OUTBOX_ISSUES_HELP.format(outbox=outbox, labels=shown, limit=settings.max_issues), "",
             "The open issues now:" if open_issues else "No issue is open now."]
    for issue in open_issues[:200]:
        lines.append(f"- #{issue.number} {issue.title}" + (f" [{', '.join(issue.labels)}]" if issue.labels else ""))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ the modes


def thinker(run: Run) -> str:
    labels = run.github.labels()
    open_issues = run.open_issue_titles()
    run.checkout()
    prompt = mode_prompt(run.settings, run.branch, run.base, run.outbox,
                         issues_context(run.settings, run.outbox, labels, open_issues))
    run.cli(prompt)
    run.open_issues_from_outbox(labels, [i.title for i in run.open_issue_titles()])
    return "issues" if run.done else "idle"


def self_directed(run: Run) -> str:
    labels = run.github.labels()
    open_issues = run.open_issue_titles()
    git = run.checkout()
    git.run("switch", "--quiet", "-c", run.branch)
    run.output.event("cloned", base=run.base, base_sha=run.base_sha, branch=run.branch)
    prompt = mode_prompt(run.settings, run.branch, run.base, run.outbox,
                         issues_context(run.settings, run.outbox, labels, open_issues))
    cli = run.cli(prompt)
    opened = run.push_and_open(cli, None, [run.settings.role_label])
    run.open_issues_from_outbox(labels, [i.title for i in run.open_issue_titles()])
    if not opened:
        run.output.event("idle", reason="the CLI changed nothing")
    return "opened" if opened else ("issues" if run.done else "idle")


def _claim_body(run: Run, issue: IssueSummary) -> str:
    s = run.settings
    return (f"<!-- {CLAIM_MARK} agent={run.agent_id} -->\nTaken by the `{s.role}` agent (slot {s.slot}) of "
            f"agent-fleet, working on the branch `{run.branch}`. The claim ends when the agent fails (it says so "
            f"here), or after {s.claim_ttl_s:g} s if it dies; its pull request will say `Closes #{issue.number}`.")


def release(run: Run, issue: IssueSummary, reason: str) -> None:
    s = run.settings
    body = (f"<!-- {RELEASE_MARK} agent={run.agent_id} -->\nReleased by the `{s.role}` agent (slot {s.slot}): "
            f"{run.output.scrub(reason)}")
    try:
        run.github.comment(issue.number, body, f"releasing issue #{issue.number}")
        run.output.event("released", issue=issue.number, reason=reason)
    except Stop as stop:  # the claim then expires after AGENT_CLAIM_TTL_S
        run.output.event("release_failed", issue=issue.number, reason=stop.reason)


def task_driven(run: Run) -> str:
    s, github = run.settings, run.github
    wanted: dict[int, IssueSummary] = {}
    for label in dict.fromkeys((s.role_label, *s.backlog_labels)):
        for item in github.get_all(f"/issues?state=open&labels={urllib.parse.quote(label)}",
                                   f"listing the issues labelled {label}"):
            if isinstance(item, dict) and "pull_request" not in item:
                wanted[int(item["number"])] = issue_summary(item)
    open_pulls = [p for p in github.get_all("/pulls?state=open", "listing the open pull requests")
                  if isinstance(p, dict)]
    unclosed = issues_to_take(list(wanted.values()), [str(p.get("body") or "") for p in open_pulls], ())
    now = datetime.now(UTC)
    claimed = {issue.number for issue in unclosed
               if live_claims(github.get_all(f"/issues/{issue.number}/comments", "reading the claims"), now,
                              s.claim_ttl_s)}
    candidates = issues_to_take(unclosed, (), claimed)
    issue = choose_by_slot(candidates, int(s.slot), s.count)
    if issue is None:
        run.output.event("idle", reason=f"no open issue labelled {s.role_label}"
                         + (f" or {', '.join(s.backlog_labels)}" if s.backlog_labels else "")
                         + " is free to take", addressed=len(wanted), claimed=len(claimed))
        return "idle"
    mine = github.comment(issue.number, _claim_body(run, issue), f"claiming issue #{issue.number}")
    run.claimed = issue
    claims = live_claims(github.get_all(f"/issues/{issue.number}/comments", "checking the claim"),
                         datetime.now(UTC), s.claim_ttl_s)
    if claims and claims[0].agent != run.agent_id:
        run.claimed = None
        release(run, issue, f"another agent claimed #{issue.number} first")
        run.output.event("idle", reason=f"issue #{issue.number} was claimed first by another agent")
        return "idle"
    run.output.event("claimed", issue=issue.number, title=issue.title, comment=mine.get("id"),
                     candidates=len(candidates))
    labels = github.labels()
    git = run.checkout()
    git.run("switch", "--quiet", "-c", run.branch)
    run.output.event("cloned", base=run.base, base_sha=run.base_sha, branch=run.branch)
    context = (f"Your task is issue #{issue.number} of {s.repository}: {issue.title}\n\n"
               + "\n".join(quote(issue.body or "(no description)"))
               + f"\n\nThe pull request will say `Closes #{issue.number}`.\n\n"
               + OUTBOX_ISSUES_HELP.format(outbox=run.outbox, limit=s.max_issues,
                                           labels=", ".join(sorted(labels.values(), key=str.casefold)) or "none"))
    cli = run.cli(mode_prompt(s, run.branch, run.base, run.outbox, context),
                  {"AGENT_ISSUE_NUMBER": str(issue.number)})
    opened = run.push_and_open(cli, issue, [s.role_label])
    run.open_issues_from_outbox(labels, [i.title for i in run.open_issue_titles()])
    if not opened:
        release(run, issue, "the agent changed nothing for it")
        run.claimed = None
        run.output.event("idle", reason="the CLI changed nothing")
        return "issues" if run.done else "idle"
    run.claimed = None  # the open pull request holds the issue now
    return "opened"


def reviewer(run: Run) -> str:
    s, github = run.settings, run.github
    me = github.login()
    pulls = [pull_summary(p) for p in github.get_all("/pulls?state=open", "listing the open pull requests")
             if isinstance(p, dict)]
    candidates = [p for p in pulls if not p.draft and p.author != me]
    failing, reviewed = set(), set()
    for pull in candidates:
        reviews = github.get_all(f"/pulls/{pull.number}/reviews", f"reading the reviews of #{pull.number}")
        if any(isinstance(r, dict) and (r.get("user") or {}).get("login") == me and r.get("commit_id") == pull.head_sha
               for r in reviews):
            reviewed.add(pull.number)
            continue
        status = github.get(f"/commits/{pull.head_sha}/status", f"reading the statuses of #{pull.number}")
        runs = github.get(f"/commits/{pull.head_sha}/check-runs?per_page=100", f"reading the checks of #{pull.number}")
        if checks_failing(status.get("statuses") or [] if isinstance(status, dict) else [],
                          runs.get("check_runs") or [] if isinstance(runs, dict) else []):
            failing.add(pull.number)
    waiting = pulls_to_review(pulls, me, failing, reviewed)
    chosen = choose_by_slot(waiting, int(s.slot), s.count)
    if chosen is None:
        run.output.event("idle", reason="no open pull request waits for this reviewer", open=len(pulls),
                         failing=len(failing), reviewed=len(reviewed))
        return "idle"
    pull = chosen
    git = run.checkout()
    head = git.fetch(pull.head_ref)
    if head != pull.head_sha:  # pushed to since it was listed: review what GitHub shows as the head now
        fresh = pull_summary(github.get(f"/pulls/{pull.number}", f"reading #{pull.number}"))
        head = git.fetch(fresh.head_ref)
        if head != fresh.head_sha:
            raise failed(f"pull request #{pull.number}'s head moves under the reviewer ({head} vs {fresh.head_sha})")
    git.run("switch", "--quiet", "--detach", head)
    run.output.event("checked_out", pull=pull.number, head=head)
    try:
        status, diff = github.call("GET", f"{github.repo_url}/pulls/{pull.number}",
                                   accept="application/vnd.github.diff")
    except (OSError, ValueError) as exc:
        raise failed(f"reading the diff of #{pull.number}: {exc}") from None
    if status != 200 or not isinstance(diff, str):
        raise failed(f"reading the diff of #{pull.number}: GET answered {status}")
    shown = diff if len(diff) <= MAX_DIFF_CHARS else diff[:MAX_DIFF_CHARS] + "\n(diff cut)"
    context = (f"The pull request to review: #{pull.number} {pull.title} (by {pull.author}, head {head})\n\n"
               + "\n".join(quote(pull.body or "(no description)")) + "\n\nIts diff:\n\n```diff\n" + shown + "\n```")
    run.cli(mode_prompt(s, run.branch, run.base, run.outbox, context),
            {"AGENT_PULL_NUMBER": str(pull.number), "AGENT_PULL_HEAD": head})
    path = run.outbox / "review.md"
    data = None
    if path.is_file():
        with open(path, "rb") as handle:
            data = handle.read(MAX_REVIEW_FILE_BYTES + 1)
    review = read_review(data)
    if review.problem:
        run.output.event("review_rejected", pull=pull.number, reason=review.problem)
    body = run.output.scrub(review.body)
    submitted = github.post(f"/pulls/{pull.number}/reviews", {"commit_id": head, "event": review.event, "body": body},
                            f"submitting the review of #{pull.number}")
    run.output.event("review", pull=pull.number, event=review.event, commit_id=head,
                     id=submitted.get("id") if isinstance(submitted, dict) else None)
    return "reviewed"


def probe(url: str, expect: Sequence[tuple[int, int]], timeout: float) -> Probe:
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    request = urllib.request.Request(url, headers={"User-Agent": "agent-fleet-sentinel"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            code = answer.status
    except urllib.error.HTTPError as error:
        code = error.code
    except (OSError, ValueError) as exc:
        return Probe(at, None, str(getattr(exc, "reason", exc)) or type(exc).__name__, False)
    return Probe(at, code, None, any(low <= code <= high for low, high in expect))


def sentinel(run: Run) -> str:
    s, github = run.settings, run.github
    if not s.health_url:  # no production to watch: nothing meaningful to do (the advice will say lower the count)
        run.output.event("idle", reason="HEALTH_URL is not set: nothing to watch (set the stack's healthUrl, or "
                                        "this role's count to 0)")
        return "idle"
    probes = [probe(s.health_url, s.health_expect, 10.0)]
    if not probes[0].up:
        time.sleep(min(s.health_recheck_s, max(0.0, s.left_s() - 30)))
        probes.append(probe(s.health_url, s.health_expect, 10.0))
    run.output.event("health", url=s.health_url, checks=[p.describe() for p in probes],
                     up=any(p.up for p in probes))
    if any(p.up for p in probes):
        return "up"
    open_pulls = [pull_summary(p) for p in github.get_all("/pulls?state=open", "listing the open pull requests")
                  if isinstance(p, dict)]
    open_reverts = [p.number for p in open_pulls if REVERT_LABEL in p.labels or REVERT_TITLE.match(p.title)]
    default_branch = str(github.get("", "reading the repository").get("default_branch") or "main")
    closed = [p for p in github.get_all(f"/pulls?state=closed&base={default_branch}&sort=updated&direction=desc",
                                        "listing the merged pull requests", limit=100) if isinstance(p, dict)]
    merged = [MergedPull(int(p["number"]), str(p.get("title") or ""), str(p.get("merge_commit_sha") or ""),
                         str(p.get("merged_at")), tuple(str(la.get("name")) for la in p.get("labels") or []))
              for p in closed if p.get("merged_at") and p.get("merge_commit_sha")]
    reverted = {int(m.group(1)) for p in closed if p.get("merged_at")
                if (m := REVERT_TITLE.match(str(p.get("title") or "")))}
    declined = {int(m.group(1)) for p in closed if not p.get("merged_at")
                if (m := REVERT_TITLE.match(str(p.get("title") or "")))}
    action = sentinel_action(probes, open_reverts, merged, reverted, declined)
    if action.kind == "revert_open":
        run.output.event("revert_pending", pull=action.open_revert)
        return "revert_pending"
    if action.kind == "nothing_to_revert" or action.pull is None:
        run.output.event("nothing_to_revert", reason="production is down, but no merged pull request is left to "
                                                     "revert (or a person closed its revert unmerged)")
        return "down"
    target = action.pull
    failures = "\n".join(f"- {p.describe()}" for p in probes)
    git = run.checkout()
    branch = f"agent/{s.role}-{s.slot}-revert-{target.number}-{run.stamp}"
    git.run("switch", "--quiet", "-c", branch)
    if not git.succeeds("revert", "--no-edit", target.merge_commit_sha):
        git.succeeds("revert", "--abort")
        title = f"Incident: production down, and reverting #{target.number} conflicts"
        titles = {normal_title(i.title) for i in run.open_issue_titles()}
        if normal_title(title) in titles:
            run.output.event("incident_open", title=title)
            return "incident"
        known = github.labels()
        body = (f"Production at {s.health_url} failed its checks:\n\n{failures}\n\n`git revert` of #{target.number}"
                f" ({target.title}, {target.merge_commit_sha}) conflicts, so the Sentinel opened this issue instead of "
                "a revert pull request.")
        request: dict[str, Any] = {"title": title, "body": body}
        if INCIDENT_LABEL in known:
            request["labels"] = [known[INCIDENT_LABEL]]
        created = github.post("/issues", request, "opening the incident issue", expect=(201,))
        if INCIDENT_LABEL not in known:
            github.add_labels(int(created["number"]), [INCIDENT_LABEL])
        run.output.event("incident", number=created.get("number"), reverting=target.number)
        return "incident"
    run.branch = branch
    body = (f"Production at {s.health_url} failed its checks:\n\n{failures}\n\nThis reverts #{target.number} "
            f"({target.title}), the newest pull request merged into {run.base} (squash commit "
            f"{target.merge_commit_sha}). Opened by the `{s.role}` agent (slot {s.slot}).")
    head = git.run("rev-parse", "HEAD")
    git.push(branch)
    run.output.event("pushed", branch=branch, head=head, commits=1)
    pull = github.open_pull(f"Revert #{target.number}: {target.title}"[:MAX_ISSUE_TITLE_CHARS], branch, run.base,
                            run.output.scrub(body))
    labels = list(dict.fromkeys([REVERT_LABEL, s.role_label]))
    github.add_labels(int(pull["number"]), labels)
    run.output.event("pull_request", number=int(pull["number"]), url=pull.get("html_url"), head=head, labels=labels,
                     reverts=target.number)
    return "reverted"


MODE_STEPS: dict[str, Callable[[Run], str]] = {
    THINKER: thinker, TASK_DRIVEN: task_driven, SELF_DIRECTED: self_directed, REVIEWER: reviewer, SENTINEL: sentinel,
}


def run(argv: Sequence[str], env: Mapping[str, str], output: Output) -> str:
    """The whole run; returns the outcome of a successful one, raises Stop otherwise."""
    secrets = SecretFiles(Path(env.get("AGENT_SECRETS_DIR") or SECRETS_DIR))
    # Before anything is checked: an error message is scrubbed too.
    output.secrets = secrets.scrubbed_forms(env.get("AGENT_GITHUB_TOKEN_SECRET", "").strip() or TOKEN_SECRET)
    settings = Settings(env, argv, secrets)
    output.event("start", role=settings.role, slot=int(settings.slot), mode=settings.mode, count=settings.count,
                 repository=settings.repository, server=settings.server_url,
                 cli=None if settings.mode == SENTINEL else (settings.command[0] if settings.command else "claude"),
                 deadline_s=round(settings.left_s()))
    work = Path(env.get("AGENT_WORK_DIR") or tempfile.gettempdir())
    work.mkdir(parents=True, exist_ok=True)
    outbox = Path(env["AGENT_OUTBOX"]) if env.get("AGENT_OUTBOX", "").strip() else \
        Path(tempfile.mkdtemp(prefix="outbox-", dir=work))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    # A suffix of its own: two agents of a slot started within one second never share a branch or a claim.
    agent_id = f"{settings.role}-{settings.slot}-{stamp}-{random_tokens.token_hex(3)}"
    current = Run(settings, output, GitHub(settings, output), work, outbox, f"agent/{agent_id}", stamp, agent_id)
    try:
        outcome = MODE_STEPS[settings.mode](current)
    except Stop as stop:
        if current.claimed is not None:
            release(current, current.claimed, f"the agent failed: {one_line(stop.reason, 300)}")
        raise
    except BaseException:
        if current.claimed is not None:
            release(current, current.claimed, "the agent failed")
        raise
    return outcome


def cost(output: Output) -> dict[str, float]:
    return {} if output.cost_usd is None else {"cost_usd": output.cost_usd}


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> NoReturn:
    output = Output()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        outcome = run(args, os.environ if env is None else env, output)
    except Stop as stop:
        output.event("exit", code=stop.code, outcome=stop.outcome, reason=one_line(stop.reason, 1000), **cost(output))
        sys.exit(stop.code)
    except Exception as exc:  # a bug here is still a failure with a one-line reason
        output.event("exit", code=EXIT_FAILED, outcome="failed", reason=one_line(f"{type(exc).__name__}: {exc}", 1000),
                     **cost(output))
        sys.exit(EXIT_FAILED)
    output.event("exit", code=EXIT_DONE, outcome=outcome, **cost(output))
    sys.exit(EXIT_DONE)


if __name__ == "__main__":
    main()

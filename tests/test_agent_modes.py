"""The reference agent in every mode (docs/agents.md, "Modes"): what it decides, as tables, and what it does,
run as a real process on this machine against the local GitHub and the local git server.

The model is a scripted stand-in: a role `command` that writes into the checkout and into `AGENT_OUTBOX`
(issue files, review.md) what a model would. The image itself is tested in tests/test_agent_image.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.fakes.git_server import FakeGitServer
from tests.fakes.github import FakeGitHub
from tests.fakes.production import production
from tests.fleet_harness import ROOT

ENTRYPOINT = ROOT / "agent" / "entrypoint.py"
AUTHOR_TOKEN = "author-token-0aB1cD2eF3gH4iJ5kL6"  # the builders' identity
REVIEWER_TOKEN = "reviewer-token-9zY8xW7vU6tS5rQ4"  # the reviewer's: another login
AUTHOR, REVIEWER_LOGIN = "fleet-builder[bot]", "fleet-reviewer[bot]"
COORDINATOR_TOKEN = "coordinator-token-5566778899aabbcc"
TIMEOUT = 60.0


def _load_entrypoint() -> ModuleType:
    spec = importlib.util.spec_from_file_location("agent_entrypoint", ENTRYPOINT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["agent_entrypoint"] = module
    spec.loader.exec_module(module)
    return module


agent = _load_entrypoint()


# ------------------------------------------------------------------------------------------------ deciding (tables)

LABELS = {"role:builder": "role:builder", "bug": "bug"}


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("a.md", "Add a login page\nUsers cannot log in.\nLabels: role:builder, Bug\n",
         agent.IssueDraft("a.md", "Add a login page", "Users cannot log in.", ("role:builder", "bug"))),
        ("b.md", "# Heading as title\n\nbody", agent.IssueDraft("b.md", "Heading as title", "body")),
        ("c.md", "Title\nLabels: role:builder, no-such-label", agent.IssueDraft(
            "c.md", "Title", "", ("role:builder",), ("no-such-label",))),
        ("d.md", "\nA body without a title", agent.Rejected("d.md", "its first line (the title) is empty")),
        ("e.md", "T" * 257, agent.Rejected("e.md", "its title is longer than 256 characters")),
        ("f.md", "Title\x07bell\nbody", agent.Rejected("f.md", "its title has control characters")),
        ("g.md", "Title\n" + "x" * 65537, agent.Rejected("g.md", "larger than 65536 bytes")),
        ("h.md", "Title\nLabels: " + ", ".join(f"l{i}" for i in range(11)),
         agent.Rejected("h.md", "more than 10 labels")),
    ],
)
def test_an_issue_file_is_read_or_rejected_with_its_reason(name: str, text: str, expected: object) -> None:
    assert agent.read_issue_file(name, text.encode(), LABELS) == expected


def test_an_issue_file_that_is_not_text_is_rejected() -> None:
    assert agent.read_issue_file("x.md", b"\xff\xfe title", LABELS) == agent.Rejected("x.md", "not UTF-8 text")


def test_plan_issues_skips_open_titles_duplicates_and_what_is_over_the_limit() -> None:
    files = [("1.md", b"Existing  issue\nbody"), ("2.md", b"New one\nbody"), ("3.md", b"new ONE\nagain"),
             ("4.md", b"Second\n"), ("5.md", b"Third\n"), ("notes.txt", b"Not an issue")]
    drafts, rejected = agent.plan_issues(files, ["existing issue"], LABELS, limit=2)
    assert [d.file for d in drafts] == ["2.md", "4.md"]
    assert {r.file: r.reason for r in rejected} == {
        "1.md": "an open issue already has the title 'Existing  issue'",
        "3.md": "an open issue already has the title 'new ONE'",
        "5.md": "over the limit of 2 issues a run (AGENT_MAX_ISSUES)",
        "notes.txt": "not a .md file",
    }


@pytest.mark.parametrize(
    ("data", "event", "problem_says"),
    [
        (b"APPROVE\nCorrect and tested.", "APPROVE", None),
        (b"APPROVE", "APPROVE", None),
        (b"**REQUEST_CHANGES**\nThe test does not fail without the fix.", "REQUEST_CHANGES", None),
        (b"comment\nA remark.", "COMMENT", None),
        (None, "COMMENT", "it wrote no review.md"),
        (b"LGTM, ship it", "COMMENT", "not one of APPROVE, REQUEST_CHANGES, COMMENT"),
        (b"", "COMMENT", "not one of"),
        (b"REQUEST_CHANGES\n", "COMMENT", "without saying why"),
        (b"\xff\xfe", "COMMENT", "not UTF-8"),
        (b"APPROVE\n" + b"x" * 300_000, "COMMENT", "larger than"),
    ],
)
def test_review_md_is_read_and_anything_malformed_becomes_a_comment_never_an_approval(
    data: bytes | None, event: str, problem_says: str | None,
) -> None:
    review = agent.read_review(data)
    assert review.event == event
    if problem_says is None:
        assert review.problem is None
    else:
        assert problem_says in review.problem and "approves nothing" in review.body


@pytest.mark.parametrize(
    ("body", "numbers"),
    [("Closes #12", {12}), ("fixes #3 and Resolves: #7", {3, 7}), ("closed #1, fixed #2", {1, 2}),
     ("Refers to #5", set()), ("Closes#5", set()), ("", set())],
)
def test_closing_references_read_as_github_reads_them(body: str, numbers: set[int]) -> None:
    assert agent.closing_references(body) == numbers


def _comment(comment_id: int, body: str, minutes_ago: float, now: datetime) -> dict[str, Any]:
    at = (now - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"id": comment_id, "body": body, "created_at": at, "user": {"login": "bot"}}


def test_live_claims_are_the_unreleased_unexpired_ones_earliest_first() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    claim = "<!-- agent-fleet:claim agent={} -->\nTaken"
    comments = [
        _comment(1, claim.format("dead"), 180, now),  # older than the TTL: expired
        _comment(2, claim.format("failed"), 30, now),
        _comment(3, "<!-- agent-fleet:release agent=failed -->\nReleased", 20, now),
        _comment(5, claim.format("second"), 5, now),
        _comment(4, claim.format("first"), 10, now),
        _comment(6, "A human says hello", 1, now),
    ]
    assert [c.agent for c in agent.live_claims(comments, now, ttl_s=7200)] == ["first", "second"]
    assert [c.agent for c in agent.live_claims(comments, now, ttl_s=12 * 3600)] == ["dead", "first", "second"]


@pytest.mark.parametrize(
    ("candidates", "slot", "count", "chosen"),
    [
        ([10, 11, 12, 13, 14], 1, 2, 10), ([10, 11, 12, 13, 14], 2, 2, 11),
        ([10, 11, 12], 3, 3, 12), ([10, 11], 3, 3, 10),  # fewer candidates than agents: wraps (claims settle it)
        ([10, 11, 12], 5, 2, 10), ([], 1, 1, None), ([7], 1, 1, 7),
    ],
)
def test_the_choice_among_candidates_is_deterministic_by_slot(
    candidates: list[int], slot: int, count: int, chosen: int | None,
) -> None:
    assert agent.choose_by_slot(candidates, slot, count) == chosen


def test_issues_to_take_are_those_no_open_pull_closes_and_nobody_claimed_oldest_first() -> None:
    issues = [agent.IssueSummary(n, f"issue {n}", ()) for n in (14, 10, 12, 11, 13, 10)]
    taken = agent.issues_to_take(issues, ["Closes #11", "nothing"], claimed=[13])
    assert [i.number for i in taken] == [10, 12, 14]


def test_pulls_to_review_skip_drafts_own_failing_and_reviewed_at_head() -> None:
    def pull(n: int, author: str = "builder", draft: bool = False) -> Any:
        return agent.PullSummary(n, f"pull {n}", author, draft, f"sha{n}", f"branch{n}")

    pulls = [pull(6), pull(1), pull(2, draft=True), pull(3, author="me"), pull(4), pull(5)]
    assert [p.number for p in agent.pulls_to_review(pulls, "me", failing={4}, reviewed_at_head={5})] == [1, 6]


@pytest.mark.parametrize(
    ("statuses", "runs", "failing"),
    [
        ([], [], False), ([{"state": "pending"}], [{"status": "in_progress", "conclusion": None}], False),
        ([{"state": "error"}], [], True), ([], [{"status": "completed", "conclusion": "timed_out"}], True),
        ([{"state": "success"}], [{"status": "completed", "conclusion": "neutral"}], False),
    ],
)
def test_checks_failing(statuses: list[dict[str, Any]], runs: list[dict[str, Any]], failing: bool) -> None:
    assert agent.checks_failing(statuses, runs) is failing


def _probe(up: bool, status: int | None = 503) -> Any:
    return agent.Probe("t", status, None if status else "refused", up)


MERGED = [agent.MergedPull(1, "Old", "a" * 40, "2026-01-01T10:00:00Z"),
          agent.MergedPull(3, "Revert #1: Old", "c" * 40, "2026-01-01T12:00:00Z", ("revert",)),
          agent.MergedPull(2, "Newest", "b" * 40, "2026-01-01T11:00:00Z")]


@pytest.mark.parametrize(
    ("probes", "open_reverts", "reverted", "declined", "kind", "number"),
    [
        ([_probe(True, 200)], [], set(), set(), "up", None),
        ([_probe(False), _probe(True, 200)], [], set(), set(), "up", None),  # one failed check is not down
        ([_probe(False), _probe(False, None)], [], set(), set(), "revert", 2),  # the newest merge, not a revert
        ([_probe(False), _probe(False)], [9], set(), set(), "revert_open", None),
        ([_probe(False), _probe(False)], [], {2}, set(), "revert", 1),  # reverted and still down: the one before
        ([_probe(False), _probe(False)], [], {1, 2}, set(), "nothing_to_revert", None),
        ([_probe(False), _probe(False)], [], set(), {2}, "nothing_to_revert", None),  # a person declined it
    ],
)
def test_sentinel_action(probes: list[Any], open_reverts: list[int], reverted: set[int], declined: set[int],
                         kind: str, number: int | None) -> None:
    action = agent.sentinel_action(probes, open_reverts, MERGED, reverted, declined)
    assert action.kind == kind
    assert (action.pull.number if action.pull else None) == number


@pytest.mark.parametrize(
    ("status", "headers", "payload", "wait"),
    [
        (403, {"Retry-After": "7"}, None, 7.0), (429, {"retry-after": "2"}, {}, 2.0),
        (403, {}, {"message": "You have exceeded a secondary rate limit."}, 60.0),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1030"}, {}, 31.0),
        (403, {}, {"message": "Resource not accessible by integration"}, None), (500, {"Retry-After": "1"}, {}, None),
    ],
)
def test_retry_after(status: int, headers: dict[str, str], payload: Any, wait: float | None) -> None:
    assert agent.retry_after_s(status, headers, payload, now=1000.0) == wait


def test_the_deadline_is_the_max_run_and_never_within_5_minutes_of_the_token_expiring() -> None:
    assert agent.run_deadline(1000.0, 3000, None) == 4000.0
    assert agent.run_deadline(1000.0, 3000, 2000.0) == 1700.0


# ------------------------------------------------------------------------------------------------ doing (processes)


@pytest.fixture
def servers() -> Iterator[tuple[FakeGitServer, FakeGitHub]]:
    """The local git server (knowing both agents' tokens) and the local GitHub, whose merges squash on it."""
    git = FakeGitServer(token=AUTHOR_TOKEN, extra_tokens=(REVIEWER_TOKEN,))
    git.start()
    try:
        github = FakeGitHub(token=COORDINATOR_TOKEN, resolve_branch=git.head, merge_branch=git.squash,
                            diff=git.diff, labels=("role:builder", "role:reviewer", "role:sentinel", "revert", "bug"),
                            extra_tokens={AUTHOR_TOKEN: AUTHOR, REVIEWER_TOKEN: REVIEWER_LOGIN},
                            writers=(AUTHOR, REVIEWER_LOGIN, "alice"))
        with github:
            yield git, github
            assert github.server_errors == []
    finally:
        git.stop()


def env_for(git: FakeGitServer, github: FakeGitHub, mode: str, role: str = "builder", slot: int = 1,
            **extra: str) -> dict[str, str]:
    return {"AGENT_ROLE": role, "AGENT_BRIEF": f"The {role}'s brief.", "AGENT_MODE": mode, "AGENT_SLOT": str(slot),
            "GITHUB_REPOSITORY": github.repository, "GITHUB_API_URL": github.api_url, "GITHUB_SERVER_URL": git.url,
            **extra}


def start(env: Mapping[str, str], command: Sequence[str], token: str = AUTHOR_TOKEN,
          extra_path: str | None = None, secrets: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    secrets_dir = tempfile.mkdtemp(prefix="agent-secrets-")
    home = tempfile.mkdtemp(prefix="agent-home-")
    for name, value in {"GITHUB_TOKEN": token, **(secrets or {})}.items():
        Path(secrets_dir, name).write_text(value + "\n", encoding="utf-8")
    path = os.environ["PATH"] if extra_path is None else f"{extra_path}:{os.environ['PATH']}"
    return subprocess.Popen([sys.executable, str(ENTRYPOINT), *command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={"PATH": path, "HOME": home, "AGENT_SECRETS_DIR": secrets_dir,
                                 "AGENT_WORK_DIR": str(Path(home, "work")), **env})


def finish(proc: subprocess.Popen[str]) -> tuple[int, list[dict[str, Any]], str]:
    out, err = proc.communicate(timeout=TIMEOUT)
    found = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert found and found[-1]["event"] == "agent.exit", out + err
    return proc.returncode, found, err


def run_agent(env: Mapping[str, str], command: Sequence[str], token: str = AUTHOR_TOKEN,
              extra_path: str | None = None) -> tuple[int, list[dict[str, Any]], str]:
    return finish(start(env, command, token, extra_path))


def named(found: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in found if e["event"] == f"agent.{event}"]


def sh(script: str) -> tuple[str, ...]:
    return ("sh", "-c", script)


def write_issue(name: str, text: str) -> str:
    return f"printf '%s\\n' '{text}' > \"$AGENT_OUTBOX/issues/{name}\""


# ------------------------------------------------------------------------------------------------ Thinker


def test_thinker_opens_the_valid_issues_it_wrote_with_existing_labels_and_no_pull_request(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    github.add_issue("Already open", labels=("bug",))
    script = " && ".join([
        'printf %s "$AGENT_PROMPT" | grep -q "#10001 Already open \\[bug\\]"',  # the CLI is told the open issues
        write_issue("1.md", "Add a login page\nUsers cannot log in.\nLabels: role:builder, no-such-label"),
        write_issue("2.md", "already OPEN\nA duplicate."),
        write_issue("3.md", "\nNo title."),
        "echo changed >> README.md",  # a Thinker's edits are discarded
    ])
    code, found, err = run_agent(env_for(git, github, "Thinker", role="strategist"), sh(script))
    assert code == 0, (found, err)
    assert found[-1] == {"event": "agent.exit", "code": 0, "outcome": "issues"}
    [opened] = [i for i in github.issues if i["title"] == "Add a login page"]
    assert opened["labels"] == ["role:builder"] and opened["author"] == AUTHOR
    assert opened["body"] == "Users cannot log in."
    assert "no-such-label" not in github.labels  # never created by the agent
    assert {e["file"]: e["reason"] for e in named(found, "issue_rejected")} == {
        "2.md": "an open issue already has the title 'already OPEN'",
        "3.md": "its first line (the title) is empty",
    }
    assert named(found, "labels_skipped")[0]["labels"] == ["no-such-label"]
    assert len(github.issues) == 2 and github.pulls == [] and list(git.branches()) == ["main"]


def test_thinker_with_50_issue_files_opens_at_most_agent_max_issues(servers: tuple[FakeGitServer, FakeGitHub]) -> None:
    git, github = servers
    script = ('for i in $(seq 1 50); do printf "Idea %02d\\nWhy.\\n" $i > '
              '"$AGENT_OUTBOX/issues/$(printf %02d $i).md"; done')
    code, found, _ = run_agent(env_for(git, github, "Thinker", role="strategist"), sh(script))
    assert code == 0
    assert [i["title"] for i in github.issues] == [f"Idea {n:02d}" for n in range(1, 6)]
    rejected = named(found, "issue_rejected")
    assert len(rejected) == 45 and {r["reason"] for r in rejected} == {
        "over the limit of 5 issues a run (AGENT_MAX_ISSUES)"}
    code, found, _ = run_agent(env_for(git, github, "Thinker", role="strategist", AGENT_MAX_ISSUES="2"), sh(script))
    assert len(github.issues) == 7  # 01-05 are open now: 06 and 07 are the next two


# ------------------------------------------------------------------------------------------------ Task-driven

BUILD = sh('echo "work for #$AGENT_ISSUE_NUMBER" > "issue-$AGENT_ISSUE_NUMBER.txt"')


def test_two_builders_started_together_on_five_issues_take_two_different_issues_and_close_them(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    numbers = [github.add_issue(f"Task {n}", labels=("role:builder",), body=f"Do task {n}.") for n in range(5)]
    github.add_issue("Someone else's", labels=("role:designer",))
    both = [start(env_for(git, github, "Task-driven", slot=slot, AGENT_COUNT="2"), BUILD) for slot in (1, 2)]
    results = [finish(proc) for proc in both]
    assert [code for code, _, _ in results] == [0, 0], results
    taken = [named(found, "claimed")[0]["issue"] for _, found, _ in results]
    # slot 1 takes the oldest; slot 2 the second of what it sees (the second, or the third when slot 1's claim
    # came first): never the same
    assert taken[0] == numbers[0] and taken[1] in numbers[1:3]
    for number in taken:
        [claim] = github.comments(number)
        assert "agent-fleet:claim" in claim["body"] and claim["user"] == AUTHOR
    pulls = sorted(github.pulls, key=lambda p: p.number)
    assert sorted(next(iter(agent.closing_references(p.body))) for p in pulls) == taken
    for pull in pulls:
        assert pull.labels == ["role:builder"] and pull.title.startswith("Task ")
        number = next(iter(agent.closing_references(pull.body)))
        assert git.file_at(pull.head_sha, f"issue-{number}.txt") == f"work for #{number}"

    # a third builder takes neither (claimed and closed by an open pull request): the next one
    code, found, _ = run_agent(env_for(git, github, "Task-driven", slot=1, AGENT_COUNT="1"), BUILD)
    assert code == 0 and named(found, "claimed")[0]["issue"] == min(set(numbers) - set(taken))

    # merged into the default branch, a pull request closes its issue, as GitHub does
    first = pulls[0]
    github.approve(first.number, reviewer="alice")
    github._merge(first.number, "squash", first.head_sha, None, None)
    closed = next(iter(agent.closing_references(first.body)))
    assert github.issue(closed)["state"] == "CLOSED"
    assert git.file_at("main", f"issue-{closed}.txt") == f"work for #{closed}"  # a real squash on the git server
    assert all(github.issue(n)["state"] == "OPEN" for n in numbers if n != closed)


def test_a_builder_with_nothing_to_take_exits_0_at_once_without_cloning(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    github.add_issue("For designers", labels=("role:designer",))
    github.add_issue("Closed", labels=("role:builder",), state="closed")
    taken = github.add_issue("Taken", labels=("role:builder",))
    github.add_comment(taken, "<!-- agent-fleet:claim agent=other-1 -->\nTaken")
    started = time.monotonic()
    code, found, _ = run_agent(env_for(git, github, "Task-driven"), BUILD)
    assert code == 0 and found[-1]["outcome"] == "idle"
    assert time.monotonic() - started < 10 and git.requests == [] and github.pulls == []
    assert named(found, "idle")[0]["claimed"] == 1


def test_a_builder_takes_a_backlog_issue_and_one_whose_claim_expired(servers: tuple[FakeGitServer, FakeGitHub]) -> None:
    git, github = servers
    stale = github.add_issue("Claimed by a dead agent", labels=("bug",))
    github.add_comment(stale, "<!-- agent-fleet:claim agent=dead-1 -->\nTaken",
                       created_at=datetime.now(UTC) - timedelta(hours=3))
    code, found, _ = run_agent(env_for(git, github, "Task-driven", BACKLOG_LABELS="bug"), BUILD)
    assert code == 0, found
    assert named(found, "claimed")[0]["issue"] == stale
    code, found, _ = run_agent(env_for(git, github, "Task-driven", BACKLOG_LABELS="bug", AGENT_CLAIM_TTL_S="60"),
                               BUILD)
    assert found[-1]["outcome"] == "idle"  # closed by the open pull request now


def test_a_builder_that_fails_releases_its_claim_and_the_next_takes_the_issue(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    number = github.add_issue("Fragile", labels=("role:builder",))
    code, found, _ = run_agent(env_for(git, github, "Task-driven"), sh("echo half > half.txt; exit 3"))
    assert code == 1 and found[-1]["reason"] == "the CLI exited 3"
    claim, released = github.comments(number)
    assert "agent-fleet:claim" in claim["body"]
    assert "agent-fleet:release" in released["body"] and "the CLI exited 3" in released["body"]
    assert github.pulls == [] and list(git.branches()) == ["main"]
    code, found, _ = run_agent(env_for(git, github, "Task-driven"), BUILD)
    assert code == 0 and named(found, "claimed")[0]["issue"] == number


# ------------------------------------------------------------------------------------------------ Reviewer


def open_pull(git: FakeGitServer, github: FakeGitHub, branch: str, path: str, content: str,
              draft: bool = False) -> int:
    """A builder's pull request: a commit on a branch of the git server, opened with the author's token."""
    base = git.head("main")
    assert base is not None
    tree_entries = git.git("ls-tree", base)
    blob = git.git("hash-object", "-w", "--stdin", input=content.encode())
    tree = git.git("mktree", input=(tree_entries + f"\n100644 blob {blob}\t{path}\n").encode())
    commit = git.git("commit-tree", tree, "-p", base, "-m", f"Add {path}",
                     env={"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
                          "GIT_COMMITTER_EMAIL": "b@x"})
    git.git("update-ref", f"refs/heads/{branch}", commit)
    with github._lock:
        github._actor = AUTHOR
        status, payload, _ = github._rest_create_pull({"title": f"Add {path}", "head": branch, "base": "main",
                                                       "body": "Why.", "draft": draft})
    assert status == 201, payload
    return int(payload["number"])


def review_script(text: str) -> tuple[str, ...]:
    return sh(f"test -z \"$(git status --porcelain)\" && printf '%s\\n' '{text}' > \"$AGENT_OUTBOX/review.md\"")


def test_a_reviewer_approves_at_the_head_it_read_and_never_reviews_it_twice(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    number = open_pull(git, github, "feature/a", "a.txt", "hello")
    github.add_check_run(number, "ci", status="in_progress")  # pending is not failing
    seen = sh('printf %s "$AGENT_PROMPT" | grep -q "^+hello" && test "$(cat a.txt)" = hello && '
              "printf 'APPROVE\\nCorrect.\\n' > \"$AGENT_OUTBOX/review.md\"")
    code, found, err = run_agent(env_for(git, github, "Reviewer", role="reviewer"), seen, token=REVIEWER_TOKEN)
    assert code == 0, (found, err)
    [review] = github.pull(number).reviews
    assert (review.reviewer, review.state, review.commit_id, review.body) == (
        REVIEWER_LOGIN, "APPROVED", github.pull(number).head_sha, "Correct.")
    code, found, _ = run_agent(env_for(git, github, "Reviewer", role="reviewer"), seen, token=REVIEWER_TOKEN)
    assert found[-1]["outcome"] == "idle" and len(github.pull(number).reviews) == 1


def test_a_reviewer_skips_drafts_failing_checks_and_its_own_pull_requests(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    open_pull(git, github, "feature/draft", "d.txt", "d", draft=True)
    failing = open_pull(git, github, "feature/failing", "f.txt", "f")
    github.add_check_run(failing, "ci", conclusion="failure")
    open_pull(git, github, "feature/own", "o.txt", "o")
    code, found, _ = run_agent(env_for(git, github, "Reviewer", role="reviewer"), review_script("APPROVE"),
                               token=AUTHOR_TOKEN)  # the author of all three
    assert code == 0 and found[-1]["outcome"] == "idle"
    assert all(p.reviews == [] for p in github.pulls)


@pytest.mark.parametrize(
    ("script", "says"),
    [(review_script("LGTM"), "not one of APPROVE"), (sh("true"), "it wrote no review.md")],
)
def test_a_malformed_or_missing_review_md_becomes_a_comment_never_an_approval(
    servers: tuple[FakeGitServer, FakeGitHub], script: tuple[str, ...], says: str,
) -> None:
    git, github = servers
    number = open_pull(git, github, "feature/b", "b.txt", "b")
    code, found, _ = run_agent(env_for(git, github, "Reviewer", role="reviewer"), script, token=REVIEWER_TOKEN)
    assert code == 0, found
    [review] = github.pull(number).reviews
    assert review.state == "COMMENTED" and says in review.body
    assert says in named(found, "review_rejected")[0]["reason"]


def test_two_reviewers_started_together_review_two_different_pull_requests(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    first, second = (open_pull(git, github, f"feature/{n}", f"{n}.txt", n) for n in ("x", "y"))
    both = [start(env_for(git, github, "Reviewer", role="reviewer", slot=slot, AGENT_COUNT="2"),
                  review_script("COMMENT\nA remark."), token=REVIEWER_TOKEN) for slot in (1, 2)]
    assert [finish(proc)[0] for proc in both] == [0, 0]
    assert [len(github.pull(n).reviews) for n in (first, second)] == [1, 1]


def test_the_local_github_refuses_an_approval_from_the_pull_requests_author(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    number = open_pull(git, github, "feature/self", "s.txt", "s")
    import urllib.error
    import urllib.request
    request = urllib.request.Request(f"{github.api_url}/repos/{github.repository}/pulls/{number}/reviews",
                                     json.dumps({"event": "APPROVE"}).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {AUTHOR_TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 422
    assert json.loads(refused.value.read())["errors"] == ["Can not approve your own pull request"]
    assert github.pull(number).reviews == []


# ------------------------------------------------------------------------------------------------ Sentinel


def merged_pull(git: FakeGitServer, github: FakeGitHub, path: str, content: str) -> int:
    number = open_pull(git, github, f"feature/{path}", path, content)
    github.approve(number, reviewer="alice")
    github._merge(number, "squash", None, None, None)
    return number


def test_the_sentinel_reverts_the_newest_merge_once_when_production_fails_twice(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    merged_pull(git, github, "old.txt", "old")
    newest = merged_pull(git, github, "broken.txt", "broken")
    with production(200) as up:
        env = env_for(git, github, "Sentinel", role="sentinel", HEALTH_URL=up.url, AGENT_HEALTH_RECHECK_S="0.2")
        code, found, _ = run_agent(env, ())
        assert code == 0 and found[-1]["outcome"] == "up" and github.pulls[-1].number == newest
    with production(200, 503) as flapping:  # one failed check is not down
        code, found, _ = run_agent({**env, "HEALTH_URL": flapping.url}, ())
        assert found[-1]["outcome"] == "up" and len(flapping.requests) == 1
    with production(503) as down:
        env = {**env, "HEALTH_URL": down.url}
        code, found, err = run_agent(env, ())
        assert code == 0 and found[-1]["outcome"] == "reverted", (found, err)
        assert len(down.requests) == 2
        revert = github.pulls[-1]
        assert revert.title == f"Revert #{newest}: Add broken.txt"
        assert sorted(revert.labels) == ["revert", "role:sentinel"] and "HTTP 503" in revert.body
        assert git.file_at(revert.head_sha, "broken.txt") is None and git.file_at(revert.head_sha, "old.txt") == "old"
        for _ in range(2):  # however many runs: one revert
            code, found, _ = run_agent(env, ())
            assert code == 0 and found[-1]["outcome"] == "revert_pending"
        assert [p.title.startswith("Revert") for p in github.pulls].count(True) == 1


def test_a_revert_that_conflicts_opens_an_incident_issue_instead(servers: tuple[FakeGitServer, FakeGitHub]) -> None:
    git, github = servers
    number = merged_pull(git, github, "page.txt", "version 1")
    # a later commit on main changes the same line: reverting the merge conflicts
    main = git.head("main")
    assert main is not None
    blob = git.git("hash-object", "-w", "--stdin", input=b"version 2")
    tree = git.git("mktree", input=(git.git("ls-tree", main).replace(
        git.git("rev-parse", f"{main}:page.txt"), blob) + "\n").encode())
    commit = git.git("commit-tree", tree, "-p", main, "-m", "hotfix", env={
        "GIT_AUTHOR_NAME": "h", "GIT_AUTHOR_EMAIL": "h@x", "GIT_COMMITTER_NAME": "h", "GIT_COMMITTER_EMAIL": "h@x"})
    git.git("update-ref", "refs/heads/main", commit)
    with production(503) as down:
        env = env_for(git, github, "Sentinel", role="sentinel", HEALTH_URL=down.url, AGENT_HEALTH_RECHECK_S="0")
        code, found, err = run_agent(env, ())
        assert code == 0 and found[-1]["outcome"] == "incident", (found, err)
        [incident] = github.issues
        assert incident["labels"] == ["incident"] and f"#{number}" in incident["title"]
        code, found, _ = run_agent(env, ())
        assert found[-1]["outcome"] == "incident" and len(github.issues) == 1
    assert len(github.pulls) == 1


# ------------------------------------------------------------------------------------------------ across modes


def test_a_push_refused_for_touching_workflows_exits_78_with_its_own_reason() -> None:
    with FakeGitServer(token=AUTHOR_TOKEN, workflows_write=False) as git, FakeGitHub(
        token=COORDINATOR_TOKEN, resolve_branch=git.head, extra_tokens={AUTHOR_TOKEN: AUTHOR},
    ) as github:
        code, found, _ = run_agent(env_for(git, github, "Self-directed"),
                                   sh("mkdir -p .github/workflows && echo 'on: push' > .github/workflows/ci.yml"))
        assert code == 78
        assert "the token lacks workflows write" in found[-1]["reason"]
        assert github.pulls == [] and list(git.branches()) == ["main"]
        code, found, _ = run_agent(env_for(git, github, "Self-directed"), sh("echo fine > fine.txt"))
        assert code == 0 and len(github.pulls) == 1  # any other change is pushed as before


def test_the_cli_is_stopped_at_the_deadline_and_nothing_is_pushed(servers: tuple[FakeGitServer, FakeGitHub]) -> None:
    git, github = servers
    started = time.monotonic()
    code, found, _ = run_agent(env_for(git, github, "Self-directed", AGENT_MAX_RUN_S="3"),
                               sh("echo x > x.txt; sleep 60"))
    assert code == 1 and "stopped at the run's deadline" in found[-1]["reason"]
    assert time.monotonic() - started < 30
    assert github.pulls == [] and list(git.branches()) == ["main"]


def test_a_token_expiring_within_5_minutes_is_refused_before_anything(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    soon = (datetime.now(UTC) + timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, found, _ = run_agent(env_for(git, github, "Self-directed", GITHUB_TOKEN_EXPIRES_AT=soon), BUILD)
    assert code == 78 and "GITHUB_TOKEN_EXPIRES_AT" in found[-1]["reason"] and git.requests == []


def test_a_secondary_rate_limit_is_waited_out_and_the_branch_gets_its_pull_request(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    github.fail("POST", r"/pulls$", 403, headers={"retry-after": "1"})
    code, found, _ = run_agent(env_for(git, github, "Self-directed"), sh("echo x > x.txt"))
    assert code == 0, found
    assert named(found, "rate_limited")[0]["wait_s"] == 1.0
    [pull] = github.pulls
    assert pull.head_ref == named(found, "pushed")[0]["branch"]


def test_the_budget_reaches_claude_codes_own_cap_and_the_cost_is_reported(
    servers: tuple[FakeGitServer, FakeGitHub], tmp_path: Path,
) -> None:
    git, github = servers
    stub = tmp_path / "claude"
    stub.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$AGENT_OUTBOX/argv\"\necho x > x.txt\n"
                    "echo '{\"type\":\"result\",\"is_error\":false,\"result\":\"Done.\",\"total_cost_usd\":0.42}'\n")
    stub.chmod(0o755)
    outbox = tmp_path / "outbox"
    env = env_for(git, github, "Self-directed", AGENT_MAX_BUDGET_USD="2.5", AGENT_OUTBOX=str(outbox))
    code, found, err = finish(start(env, (), extra_path=str(tmp_path), secrets={"ANTHROPIC_API_KEY": "model-key-xyz"}))
    assert code == 0, (found, err)
    argv = (outbox / "argv").read_text().splitlines()
    assert argv[argv.index("--max-budget-usd") + 1] == "2.5"
    assert named(found, "cli")[0]["cost_usd"] == 0.42 and found[-1]["cost_usd"] == 0.42


def test_a_pull_request_created_without_an_answer_is_found_by_its_branch_not_opened_twice(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    github.fail("POST", r"/pulls$", 502, after=True)  # created, then answered 502
    code, found, _ = run_agent(env_for(git, github, "Self-directed"), sh("echo x > x.txt"))
    assert code == 0, found
    [pull] = github.pulls
    assert pull.labels == ["role:builder"] and named(found, "pull_request")[0]["number"] == pull.number
    assert github.calls("POST", "/pulls") == 1


def test_a_builder_whose_claim_came_second_releases_it_and_takes_nothing(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    number = github.add_issue("Contested", labels=("role:builder",))
    raced: list[str] = []

    def another_agent_claims(method: str, path: str) -> None:
        # right after the builder read the claims (none), another agent's claim lands, stamped before its own
        if method == "GET" and path.endswith(f"/issues/{number}/comments") and not raced:
            raced.append(path)
            github.add_comment(number, "<!-- agent-fleet:claim agent=builder-2-other -->\nTaken", author=AUTHOR,
                               created_at=datetime.now(UTC) - timedelta(seconds=30))

    github.after_rest = another_agent_claims
    code, found, _ = run_agent(env_for(git, github, "Task-driven"), BUILD)
    assert code == 0 and found[-1]["outcome"] == "idle", found
    assert "claimed first by another agent" in named(found, "idle")[0]["reason"]
    other, mine, released = github.comments(number)
    assert "builder-2-other" in other["body"] and "agent-fleet:claim" in mine["body"]
    assert "agent-fleet:release" in released["body"] and "claimed #" in released["body"]
    assert github.pulls == [] and list(git.branches()) == ["main"]


@pytest.mark.parametrize(
    ("extra", "named_in_reason"),
    [
        ({"AGENT_MODE": "Builder"}, "AGENT_MODE='Builder' is not a mode"),
        ({"AGENT_COUNT": "0"}, "AGENT_COUNT='0' is not a whole number of at least 1"),
        ({"AGENT_MAX_ISSUES": "many"}, "AGENT_MAX_ISSUES='many'"),
        ({"AGENT_MAX_BUDGET_USD": "-1"}, "AGENT_MAX_BUDGET_USD='-1' is not a positive number"),
        ({"GITHUB_TOKEN_EXPIRES_AT": "tomorrow"}, "GITHUB_TOKEN_EXPIRES_AT='tomorrow' is not an ISO 8601 time"),
        ({"AGENT_MODE": "Sentinel", "HEALTH_URL": "http://x", "HEALTH_EXPECT": "2xx"}, "HEALTH_EXPECT='2xx'"),
        ({"AGENT_GITHUB_TOKEN_SECRET": "no such/name"}, "AGENT_GITHUB_TOKEN_SECRET='no such/name'"),
        ({"AGENT_GITHUB_TOKEN_SECRET": "REVIEWER_GITHUB_TOKEN"}, "missing secret REVIEWER_GITHUB_TOKEN"),
    ],
)
def test_a_bad_setting_exits_78_at_once_naming_it_and_its_value(
    servers: tuple[FakeGitServer, FakeGitHub], extra: dict[str, str], named_in_reason: str,
) -> None:
    git, github = servers
    code, found, _ = run_agent({**env_for(git, github, "Self-directed"), **extra}, BUILD)
    assert code == 78 and named_in_reason in found[-1]["reason"], found
    assert [e["event"] for e in found] == ["agent.exit"]  # one line, nothing done
    assert git.requests == [] and github.requests == []


def test_a_role_token_from_another_secret_is_the_github_token_and_never_reaches_the_cli(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    number = open_pull(git, github, "feature/z", "z.txt", "z")
    leaky = sh('env > "$AGENT_OUTBOX/env"; cat "$AGENT_SECRETS_DIR/REVIEWER_GITHUB_TOKEN"; '
               "printf 'APPROVE\\n' > \"$AGENT_OUTBOX/review.md\"")
    outbox = Path(tempfile.mkdtemp(prefix="outbox-"))
    env = env_for(git, github, "Reviewer", role="reviewer", AGENT_GITHUB_TOKEN_SECRET="REVIEWER_GITHUB_TOKEN",
                  AGENT_OUTBOX=str(outbox))
    proc = start(env, leaky, token="unused-builder-token-000", secrets={"REVIEWER_GITHUB_TOKEN": REVIEWER_TOKEN})
    code, found, err = finish(proc)
    assert code == 0, (found, err)
    [review] = github.pull(number).reviews
    assert review.reviewer == REVIEWER_LOGIN and review.state == "APPROVED"
    cli_env = (outbox / "env").read_text()
    assert REVIEWER_TOKEN not in cli_env and "unused-builder-token-000" not in cli_env
    assert REVIEWER_TOKEN not in json.dumps(found) + err and "***" in err  # printed by the CLI: scrubbed


def test_a_sentinel_without_health_url_has_nothing_to_watch_and_exits_0_at_once(
    servers: tuple[FakeGitServer, FakeGitHub],
) -> None:
    git, github = servers
    code, found, _ = run_agent(env_for(git, github, "Sentinel", role="sentinel"), ())
    assert code == 0 and found[-1]["outcome"] == "idle"
    assert "HEALTH_URL is not set" in named(found, "idle")[0]["reason"]
    assert git.requests == [] and github.requests == []

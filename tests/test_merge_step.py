"""The merge step end to end over real HTTP: GitHubClient (requests + PyGithub) against FakeGitHub.

The fake validates every GraphQL document against GitHub's schema, keeps state and injects faults.
The pause between merges goes to a list instead of the clock. Retries wait for real (urllib3's backoff:
the first retry at once, the next after a second), and the deadline tests use real time and real threads
against a server that trickles its answers: each test takes a few seconds at most.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from coordinator.edges.github import (
    OPEN_PULLS_QUERY,
    PULL_BEFORE_MERGE_QUERY,
    BadCredentials,
    GitHubClient,
    GitHubUnavailable,
    MalformedAnswer,
)
from coordinator.github_port import GitHubError
from coordinator.redact import Secret
from coordinator.report import EventLog, MergeOutcome, MergeReport, StepStatus
from coordinator.settings import GitHubSettings
from coordinator.steps.merge import run_merge
from tests.fakes.github import FakeGitHub, FakePull, github_schema
from tests.fleet_harness import cycle_env, run_cycle

TOKEN = "ghp_test_SECRET_7f3a9c1e5b2d4680"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
# How late a request cut off at its deadline may return: thread start-up and scheduling only.
PROMPT_S = 0.5


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    github_schema()  # built once per process (about a second), outside the tests that time themselves
    with FakeGitHub(token=TOKEN) as server:
        yield server
        assert server.server_errors == []  # the fake's own bugs would hide behind 500s


def settings_for(fake: FakeGitHub, token: str = TOKEN, **changes: Any) -> GitHubSettings:
    return GitHubSettings(
        repository=fake.repository,
        token=Secret(token),
        api_url=fake.api_url,
        graphql_url=fake.graphql_url,
        **changes,
    )


class Harness:
    """One merge step run: the client, its recorded sleeps and the event log's text."""

    def __init__(self, fake: FakeGitHub, token: str = TOKEN, client_options: dict[str, Any] | None = None,
                 **settings: Any) -> None:
        self.settings = settings_for(fake, token, **settings)
        self.sleeps: list[float] = []
        self.client = GitHubClient(self.settings, timeout_s=5, sleep=self.sleeps.append, **(client_options or {}))
        self.stream = io.StringIO()
        self.log = EventLog("test", secrets=[token], stream=self.stream)

    def run(self, **options: Any) -> MergeReport:
        return run_merge(self.client, self.settings, log=self.log, **options)

    @property
    def events(self) -> str:
        return self.stream.getvalue()


def green(fake: FakeGitHub, title: str = "Add a feature", **options: Any) -> FakePull:
    """A pull request GitHub says is ready: approved, CI green on its head, mergeable."""
    pull = fake.add_pull(title, **options)
    fake.approve(pull.number)
    fake.add_check_run(pull.number, "ci")
    return pull


def reasons(report: MergeReport) -> dict[int, tuple[MergeOutcome, str]]:
    return {p.number: (p.outcome, p.reason) for p in report.pulls}


# ---------------------------------------------------------------------------------------------- rules


def test_only_pull_requests_github_says_are_ready_are_merged(fake: FakeGitHub) -> None:
    ready = green(fake, "Ready")
    draft = green(fake, "Draft", draft=True)
    unreviewed = fake.add_pull("Unreviewed")
    fake.add_check_run(unreviewed.number, "ci")
    changes = green(fake, "Changes")
    fake.request_changes(changes.number)
    running = fake.add_pull("CI still running")  # the outage: approved, mergeable, CI not finished
    fake.approve(running.number)
    fake.add_check_run(running.number, "lint")
    fake.add_check_run(running.number, "ci", status="in_progress", conclusion=None)
    silent = fake.add_pull("Nothing reported")
    fake.approve(silent.number)
    failing = fake.add_pull("Failing")
    fake.approve(failing.number)
    fake.add_check_run(failing.number, "ci", conclusion="failure")
    conflicting = green(fake, "Conflicting", mergeable="CONFLICTING")
    computing = green(fake, "Computing", mergeable="UNKNOWN")
    labelled = green(fake, "Labelled", labels=("Do-Not-Merge",))
    other_base = green(fake, "Backport", base="release/1.x")
    neutral = fake.add_pull("Neutral and skipped count as success")
    fake.approve(neutral.number)
    fake.add_check_run(neutral.number, "ci", conclusion="neutral")
    fake.add_check_run(neutral.number, "docs", conclusion="skipped")
    status_pending = green(fake, "Status pending")
    fake.add_status(status_pending.number, "deploy/preview", state="pending")

    harness = Harness(fake)
    report = harness.run()

    assert report.status is StepStatus.OK and report.stopped is None
    assert reasons(report) == {
        ready.number: (MergeOutcome.MERGED, "merged"),
        draft.number: (MergeOutcome.SKIPPED, "draft"),
        unreviewed.number: (MergeOutcome.SKIPPED, "not approved"),
        changes.number: (MergeOutcome.SKIPPED, "changes requested"),
        running.number: (MergeOutcome.SKIPPED, "checks pending"),
        silent.number: (MergeOutcome.SKIPPED, "no checks reported"),
        failing.number: (MergeOutcome.SKIPPED, "checks failed"),
        conflicting.number: (MergeOutcome.SKIPPED, "conflicting"),
        computing.number: (MergeOutcome.SKIPPED, "mergeability unknown"),
        labelled.number: (MergeOutcome.SKIPPED, "blocked by label"),
        other_base.number: (MergeOutcome.SKIPPED, "not targeting the default branch"),
        neutral.number: (MergeOutcome.MERGED, "merged"),
        status_pending.number: (MergeOutcome.SKIPPED, "checks pending"),
    }
    assert [p.number for p in fake.pulls if p.merged] == [ready.number, neutral.number]
    assert fake.pull(ready.number).merged_title == f"Ready (#{ready.number})"
    assert fake.pull(ready.number).merge_method == "squash"
    assert report.merged == [ready.number, neutral.number]
    # One query for the whole list; per merge, one read of that pull request and one PUT; nothing else.
    assert fake.calls("POST", "/api/graphql") == 3
    assert fake.calls("PUT") == 2
    assert fake.calls() == 5 == report.api_calls
    # The fake validated each document against the schema.
    assert fake.graphql_documents == [OPEN_PULLS_QUERY, PULL_BEFORE_MERGE_QUERY, PULL_BEFORE_MERGE_QUERY]
    assert [v.get("number") for v in fake.graphql_variables[1:]] == [ready.number, neutral.number]
    assert report.open == 13
    assert report.conflicting == 1
    assert report.review_queue == 1  # "Unreviewed"; drafts and change requests do not wait for a reviewer
    assert f'"event": "merge.merged", "fleet": "test", "number": {ready.number}' in harness.events


def test_required_checks_must_be_present_and_green(fake: FakeGitHub) -> None:
    both = green(fake, "Both")
    fake.add_status(both.number, "security")
    only_ci = green(fake, "Only ci")
    report = Harness(fake, required_checks=("ci", "security")).run()
    assert reasons(report) == {
        both.number: (MergeOutcome.MERGED, "merged"),
        only_ci.number: (MergeOutcome.SKIPPED, "required check missing"),
    }


def test_without_required_reviews_an_approval_is_still_needed() -> None:
    with FakeGitHub(token=TOKEN, require_review=False) as fake:  # reviewDecision is null
        approved = green(fake, "Approved")
        unreviewed = fake.add_pull("Unreviewed")
        fake.add_check_run(unreviewed.number, "ci")
        rejected = green(fake, "Rejected")
        fake.request_changes(rejected.number, reviewer="bob")
        report = Harness(fake).run()
    assert reasons(report) == {
        approved.number: (MergeOutcome.MERGED, "merged"),
        unreviewed.number: (MergeOutcome.SKIPPED, "not approved"),
        rejected.number: (MergeOutcome.SKIPPED, "changes requested"),
    }



def test_without_required_reviews_only_an_approval_by_someone_who_can_push_counts() -> None:
    # A public repository: anyone can submit an "Approve". With no review required, reviewDecision is null and
    # the rule reads the reviews itself; an outsider's approval must not get a pull request merged.
    with FakeGitHub(token=TOKEN, require_review=False, writers=("alice",)) as fake:
        outsider = fake.add_pull("Approved by an outsider")
        fake.add_check_run(outsider.number, "ci")
        fake.approve(outsider.number, reviewer="mallory")
        writer = fake.add_pull("Approved by a writer")
        fake.add_check_run(writer.number, "ci")
        fake.approve(writer.number, reviewer="alice")
        both = fake.add_pull("Outsider objects, writer approves")
        fake.add_check_run(both.number, "ci")
        fake.approve(both.number, reviewer="alice")
        fake.request_changes(both.number, reviewer="mallory")
        report = Harness(fake).run()
        assert fake.pull(outsider.number).state == "open"
    assert reasons(report) == {
        outsider.number: (MergeOutcome.SKIPPED, "not approved"),
        writer.number: (MergeOutcome.MERGED, "merged"),
        both.number: (MergeOutcome.MERGED, "merged"),
    }

def test_an_approval_before_a_push_is_stale(fake: FakeGitHub) -> None:
    pull = green(fake, "Pushed after approval")
    fake.push(pull.number)  # GitHub dismisses the stale approval; the new head has no checks yet
    fake.add_check_run(pull.number, "ci")
    report = Harness(fake).run()
    assert reasons(report) == {pull.number: (MergeOutcome.SKIPPED, "not approved")}


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_cycle_whose_merge_blocking_labels_is_blank_still_never_merges_do_not_merge(
    fake: FakeGitHub, blank: str, tmp_path: Path
) -> None:
    # What Docker Compose's ${VAR} gives for an unset VAR: it must mean the default, never "no blocking labels".
    held = green(fake, "Hold this one", labels=("do-not-merge",))
    ready = green(fake, "Ship this one")
    env = cycle_env("tblank", None, GITHUB_REPOSITORY=fake.repository, GITHUB_TOKEN=TOKEN,
                    GITHUB_API_URL=fake.api_url, GITHUB_GRAPHQL_URL=fake.graphql_url, MERGE_BLOCKING_LABELS=blank,
                    DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    run = run_cycle(env)
    assert run.report["merge"]["merged"] == [ready.number], run.stdout + run.stderr
    assert fake.pull(ready.number).merged
    assert not fake.pull(held.number).merged


def test_custom_blocking_labels(fake: FakeGitHub) -> None:
    held = green(fake, "Held", labels=("hold",))
    default_label = green(fake, "Default label", labels=("do-not-merge",))
    report = Harness(fake, blocking_labels=("hold",)).run()
    assert reasons(report) == {
        held.number: (MergeOutcome.SKIPPED, "blocked by label"),
        default_label.number: (MergeOutcome.MERGED, "merged"),
    }


def test_oldest_first_and_at_most_the_cycle_limit(fake: FakeGitHub) -> None:
    ages = [3, 1, 4, 2, 5]  # hours after T0; creation order differs from age order
    pulls = [green(fake, f"PR {hours}", created_at=T0 + timedelta(hours=hours)) for hours in ages]
    report = Harness(fake, max_merges_per_cycle=2).run()
    by_age = [p.number for p in sorted(pulls, key=lambda p: p.created_at)]
    assert report.merged == by_age[:2]
    assert [p.number for p in report.pulls] == by_age
    assert {p.reason for p in report.pulls[2:]} == {"merge limit reached"}
    puts = [call.path for call in fake.requests if call.method == "PUT"]
    assert puts == [f"/api/v3/repos/{fake.repository}/pulls/{n}/merge" for n in by_age[:2]]


def test_pagination_past_100(fake: FakeGitHub) -> None:
    eligible = set()
    for i in range(130):
        pull = fake.add_pull(f"PR {i}")
        if i in (5, 101, 129):
            fake.approve(pull.number)
            fake.add_check_run(pull.number, "ci")
            eligible.add(pull.number)
    report = Harness(fake).run()
    assert report.open == 130 and len(report.pulls) == 130
    assert set(report.merged) == eligible
    assert fake.calls("POST", "/api/graphql") == 2 + 3  # two pages, and each merge's re-read
    assert fake.calls("PUT") == 3
    assert report.review_queue == 127


def test_dry_run_merges_nothing(fake: FakeGitHub) -> None:
    pull = green(fake)
    report = Harness(fake).run(dry_run=True)
    assert reasons(report) == {pull.number: (MergeOutcome.SKIPPED, "would merge (dry run)")}
    assert fake.calls("PUT") == 0 and not fake.pull(pull.number).merged


def test_mutations_are_spaced_without_real_sleep(fake: FakeGitHub) -> None:
    for i in range(3):
        green(fake, f"PR {i}")
    harness = Harness(fake)
    report = harness.run()
    assert len(report.merged) == 3
    assert len(harness.sleeps) == 2 and all(0 < s <= 1.0 for s in harness.sleeps)


# ------------------------------------------------------------------------------------ merge safety


def test_a_push_racing_the_merge_is_refused_by_github(fake: FakeGitHub) -> None:
    raced = green(fake, "Raced")
    calm = green(fake, "Calm")
    fake.on_merge = lambda n: fake.push(n) if n == raced.number else None
    harness = Harness(fake)
    report = harness.run()
    assert reasons(report) == {
        raced.number: (MergeOutcome.FAILED, "head moved"),
        calm.number: (MergeOutcome.MERGED, "merged"),
    }
    assert not fake.pull(raced.number).merged
    assert '"reason": "head moved"' in harness.events


def after_the_listing(fake: FakeGitHub, change: Callable[[], object]) -> None:
    """`change` lands once the pull request list has been answered, before anything else the step sends: the
    state GitHub holds by the time a busy cycle's last merge is due, up to a minute after the one read."""

    def hook(operation: str | None) -> None:
        if operation == "OpenPullRequests":
            change()

    fake.after_query = hook


# Each change GitHub itself would not stop, made after the listing: none may be merged, and the report says why.
RACES: dict[str, tuple[Callable[[FakeGitHub, int], object], dict[str, Any], str]] = {
    # GitHub does not enforce labels.
    "do-not-merge label added": (lambda gh, n: gh.add_label(n, "do-not-merge"), {}, "blocked by label"),
    # Without a required review, GitHub does not enforce a change request either; bob can push.
    "writer requests changes, no review required": (
        lambda gh, n: gh.request_changes(n, reviewer="bob"), {"require_review": False}, "changes requested"),
    # New code nobody approved or checked (GitHub would also refuse the old pin with 409).
    "new head pushed": (lambda gh, n: gh.push(n), {}, "not approved"),
    "closed": (lambda gh, n: gh.close(n), {}, "closed"),
}


@pytest.mark.parametrize("race", list(RACES))
def test_a_change_after_the_listing_is_seen_by_the_read_before_the_merge(race: str) -> None:
    change, options, reason = RACES[race]
    with FakeGitHub(token=TOKEN, **options) as fake:
        first, second, last = (green(fake, f"PR {i}") for i in range(3))
        after_the_listing(fake, lambda: change(fake, last.number))
        harness = Harness(fake)
        report = harness.run()
        assert fake.server_errors == []
        assert not fake.pull(last.number).merged
    assert reasons(report) == {
        first.number: (MergeOutcome.MERGED, "merged"),
        second.number: (MergeOutcome.MERGED, "merged"),
        last.number: (MergeOutcome.SKIPPED, reason),
    }
    assert fake.calls("PUT") == 2  # nothing was sent for the last one
    assert f'"event": "merge.changed", "fleet": "test", "number": {last.number}' in harness.events


def test_a_pull_request_merged_meanwhile_is_not_merged_again(fake: FakeGitHub) -> None:
    pull = green(fake)

    def merged_by_hand() -> None:  # someone pressed the button on GitHub meanwhile
        taken = fake.pull(pull.number)
        taken.state, taken.merged, taken.merge_commit_sha = "closed", True, "f" * 40

    after_the_listing(fake, merged_by_hand)
    report = Harness(fake).run()
    assert reasons(report) == {pull.number: (MergeOutcome.SKIPPED, "already merged")}
    assert fake.calls("PUT") == 0


def test_the_merge_is_pinned_to_the_head_the_read_before_it_saw(fake: FakeGitHub) -> None:
    pull = green(fake)
    pushed: list[str] = []

    def push_approved_and_green() -> None:  # a new head, reviewed and checked before the merge is due
        pushed.append(fake.push(pull.number))
        fake.approve(pull.number)
        fake.add_check_run(pull.number, "ci")

    after_the_listing(fake, push_approved_and_green)
    harness = Harness(fake)
    report = harness.run()
    # Pinned to the listing's head, GitHub would have answered 409 (head moved).
    assert reasons(report) == {pull.number: (MergeOutcome.MERGED, "merged")}
    assert f'"head": "{pushed[0]}"' in harness.events


def test_the_read_before_a_merge_sees_what_the_listing_sees(fake: FakeGitHub) -> None:
    ready = green(fake, "Ready", labels=("feature",))
    fake.add_status(ready.number, "deploy/preview")
    changes = green(fake, "Changes", mergeable="CONFLICTING")
    fake.request_changes(changes.number)
    fake.comment_review(changes.number)
    draft = fake.add_pull("Draft", draft=True, base="release/1.x")
    fake.add_check_run(draft.number, "ci", status="in_progress", conclusion=None)
    client = GitHubClient(settings_for(fake), timeout_s=5)
    listed = client.fetch_open_pulls().pulls
    assert len(listed) == 3
    assert [client.fetch_pull(pull.number) for pull in listed] == list(listed)
    assert client.fetch_pull(999) is None  # GitHub answers NOT_FOUND for a number it does not resolve


def test_a_pull_request_github_no_longer_resolves_is_not_merged(fake: FakeGitHub) -> None:
    pull = green(fake)
    # GitHub's answer for a number it does not resolve, as the local GitHub gives it.
    missing = requests.post(fake.graphql_url, headers={"Authorization": f"bearer {TOKEN}"}, timeout=10, json={
        "query": PULL_BEFORE_MERGE_QUERY, "variables": {"owner": fake.owner, "name": fake.name, "number": 999}}).json()
    assert missing["data"]["repository"] == {"pullRequest": None}
    assert [(e["type"], e["path"]) for e in missing["errors"]] == [("NOT_FOUND", ["repository", "pullRequest"])]
    after_the_listing(fake, lambda: fake.fail("POST", "/api/graphql", 200, body=missing))
    harness = Harness(fake)
    report = harness.run()
    assert reasons(report) == {pull.number: (MergeOutcome.FAILED, "not found")}
    assert fake.calls("PUT") == 0
    assert f"#{pull.number} is no longer on GitHub" in harness.events


def test_a_failed_read_before_the_merge_merges_nothing(fake: FakeGitHub) -> None:
    first, second = green(fake, "First"), green(fake, "Second")
    after_the_listing(fake, lambda: fake.fail("POST", "/api/graphql", 502, times=None))
    harness = Harness(fake, client_options={"max_attempts": 1})
    report = harness.run()
    assert reasons(report) == {
        first.number: (MergeOutcome.FAILED, "re-read failed"),
        second.number: (MergeOutcome.FAILED, "re-read failed"),
    }
    assert report.stopped is None and fake.calls("PUT") == 0
    assert '"reason": "re-read failed", "detail": "GitHub GraphQL query: GitHub answered HTTP 502' in harness.events


def test_a_rate_limit_on_the_read_before_a_merge_ends_the_step_cleanly(fake: FakeGitHub) -> None:
    first, second = green(fake, "First"), green(fake, "Second")
    after_the_listing(fake, lambda: fake.rate_limit(0, reset_in_s=600, resource="graphql"))
    report = Harness(fake).run()
    assert report.stopped is not None and report.stopped.startswith("GitHub GraphQL rate limit (RATE_LIMITED)")
    assert reasons(report) == {
        first.number: (MergeOutcome.SKIPPED, "stopped early"),
        second.number: (MergeOutcome.SKIPPED, "stopped early"),
    }
    assert fake.calls("PUT") == 0


def test_a_slow_read_before_a_merge_ends_by_the_cycle_deadline(fake: FakeGitHub) -> None:
    first, second = green(fake, "First"), green(fake, "Second")
    after_the_listing(fake, lambda: fake.fail("POST", "/api/graphql", 200, trickle=0.5, times=None))
    harness = Harness(fake)  # requests may take 5 s; the cycle has 2.5 s
    started = time.monotonic()
    report = harness.run(deadline=started + 2.5)
    elapsed = time.monotonic() - started
    assert reasons(report) == {
        first.number: (MergeOutcome.FAILED, "re-read failed"),
        second.number: (MergeOutcome.SKIPPED, "stopped early"),
    }
    assert report.stopped == "time budget spent"
    assert fake.calls("PUT") == 0
    assert 2.5 <= elapsed < 2.5 + PROMPT_S


def test_the_pause_between_merges_comes_before_the_read_not_between_it_and_the_merge(fake: FakeGitHub) -> None:
    for i in range(3):
        green(fake, f"PR {i}")
    timeline: list[str] = []
    fake.after_query = lambda operation: timeline.append(str(operation))
    fake.on_merge = lambda number: timeline.append("merge")
    harness = Harness(fake)
    harness.client = GitHubClient(harness.settings, timeout_s=5, sleep=lambda s: timeline.append("pause"))
    assert len(harness.run().merged) == 3
    read = "PullRequestBeforeMerge"
    assert timeline == ["OpenPullRequests", read, "merge", "pause", read, "merge", "pause", read, "merge"]


def test_a_5xx_after_github_merged_is_not_retried_but_confirmed(fake: FakeGitHub) -> None:
    pull = green(fake)
    fake.fail("PUT", r"/merge$", 502, after=True)
    report = Harness(fake).run()
    assert reasons(report) == {pull.number: (MergeOutcome.MERGED, "merged")}
    assert fake.calls("PUT") == 1  # never a second merge call
    assert fake.calls("GET", f"/pulls/{pull.number}") == 1
    assert report.api_calls == 4  # the list, the re-read, the merge, the read-back


def test_a_5xx_before_github_merged_fails_that_pull_only(fake: FakeGitHub) -> None:
    first = green(fake, "First")
    second = green(fake, "Second")
    fake.fail("PUT", rf"/pulls/{first.number}/merge$", 500)
    report = Harness(fake).run()
    assert reasons(report) == {
        first.number: (MergeOutcome.FAILED, "merge failed"),
        second.number: (MergeOutcome.MERGED, "merged"),
    }
    assert fake.calls("PUT", f"/pulls/{first.number}/") == 1


def test_an_unreadable_merge_outcome_is_reported_as_unknown(fake: FakeGitHub) -> None:
    pull = green(fake)
    fake.fail("PUT", r"/merge$", 504, after=True)
    fake.fail("GET", rf"/pulls/{pull.number}$", 503, times=None)
    harness = Harness(fake, client_options={"max_attempts": 2})
    report = harness.run()
    assert reasons(report) == {pull.number: (MergeOutcome.FAILED, "merge outcome unknown")}
    assert fake.calls("PUT") == 1 and fake.calls("GET") == 2  # the read-back was retried, the merge never


def test_no_answer_to_a_merge_is_an_unknown_outcome_not_a_retry(fake: FakeGitHub) -> None:
    pull = green(fake)
    with FakeGitHub(token=TOKEN) as gone:
        dead_api = gone.api_url  # a port nobody listens on once this block ends
    settings = settings_for(fake)
    harness = Harness(fake, client_options={"max_attempts": 1})
    harness.settings = GitHubSettings(
        settings.repository, settings.token, dead_api, settings.graphql_url  # REST unreachable, GraphQL fine
    )
    harness.client = GitHubClient(harness.settings, timeout_s=5, sleep=harness.sleeps.append, max_attempts=1)
    report = harness.run()
    assert reasons(report) == {pull.number: (MergeOutcome.FAILED, "merge outcome unknown")}
    assert report.api_calls == 4  # the list, the re-read, the merge, the read-back; no second merge
    assert '"detail": "reading #1 from GitHub: GitHub at 127.0.0.1:' in harness.events
    assert " unreachable (refused) after 1 attempt" in harness.events


@pytest.mark.parametrize(
    ("status", "reason", "options"),
    [
        (405, "not mergeable", {}),
        (422, "merge rejected", {}),
        (403, "forbidden", {"body": {"message": "Resource not accessible by integration"}}),
        (404, "not found", {}),
    ],
)
def test_a_refused_merge_is_reported_and_the_rest_go_on(
    fake: FakeGitHub, status: int, reason: str, options: dict[str, Any]
) -> None:
    first = green(fake, "First")
    second = green(fake, "Second")
    fake.fail("PUT", rf"/pulls/{first.number}/merge$", status, **options)
    report = Harness(fake).run()
    assert reasons(report) == {
        first.number: (MergeOutcome.FAILED, reason),
        second.number: (MergeOutcome.MERGED, "merged"),
    }


def test_a_repository_that_forbids_squash_answers_405() -> None:
    with FakeGitHub(token=TOKEN, allow_squash_merge=False) as fake:
        pull = green(fake)
        report = Harness(fake).run()
    assert reasons(report) == {pull.number: (MergeOutcome.FAILED, "not mergeable")}


# ------------------------------------------------------------------------------- rate limits, 5xx


def test_graphql_5xx_is_retried_with_backoff(fake: FakeGitHub) -> None:
    pull = green(fake)
    fake.fail("POST", "/api/graphql", 502, times=2)
    harness = Harness(fake)
    started = time.monotonic()
    report = harness.run()
    assert report.merged == [pull.number]
    assert time.monotonic() - started >= 1.0  # the second retry waited 2 x backoff_s (0.5 s)
    assert fake.calls("POST", "/api/graphql") == 3 + 1 and report.api_calls == 5  # the list thrice, the re-read


def test_a_502_blip_on_a_read_is_retried_once(fake: FakeGitHub) -> None:
    pull = green(fake)
    fake.fail("POST", "/api/graphql", 502)
    fake.fail("PUT", r"/merge$", 502, after=True)  # merged, then a 502: read back...
    fake.fail("GET", rf"/pulls/{pull.number}$", 502)  # ...which itself meets a 502 once
    report = Harness(fake).run()
    assert report.merged == [pull.number]
    assert fake.calls("POST") == 3 and fake.calls("GET") == 2 and fake.calls("PUT") == 1  # POST: twice, re-read
    assert report.api_calls == 6


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_merge_5xx_is_never_retried(fake: FakeGitHub, status: int) -> None:
    pull = green(fake)
    # A Retry-After on a 503 is what urllib3 retries by itself, method permitting: not a merge.
    fake.fail("PUT", r"/merge$", status, headers={"retry-after": "1"}, times=None)
    report = Harness(fake).run()
    assert reasons(report) == {pull.number: (MergeOutcome.FAILED, "merge failed")}
    assert fake.calls("PUT") == 1
    assert not fake.pull(pull.number).merged


def test_retry_after_is_honoured(fake: FakeGitHub) -> None:
    pull = green(fake)
    fake.fail("POST", "/api/graphql", 503, headers={"retry-after": "1"})
    started = time.monotonic()
    report = Harness(fake).run()
    assert report.merged == [pull.number]
    assert time.monotonic() - started >= 1.0
    assert fake.calls("POST") == 2 + 1  # the list twice, then the re-read


def test_retry_after_is_never_waited_past_the_deadline(fake: FakeGitHub) -> None:
    green(fake)
    fake.fail("POST", "/api/graphql", 503, headers={"retry-after": "30"}, times=None)
    harness = Harness(fake)
    started = time.monotonic()
    with pytest.raises(GitHubUnavailable, match=r"HTTP 503 after 1 attempt; no time left in this cycle to retry"):
        harness.run(deadline=started + 3)
    assert time.monotonic() - started < 1.0  # it gives up at once instead of sleeping into the deadline
    assert fake.calls("POST") == 1 and fake.calls("PUT") == 0


def test_graphql_5xx_that_persists_fails_the_step_clearly(fake: FakeGitHub) -> None:
    green(fake)
    fake.fail("POST", "/api/graphql", 503, times=None)
    harness = Harness(fake)
    with pytest.raises(GitHubUnavailable, match=r"HTTP 503 after 3 attempts$"):
        harness.run()
    assert fake.calls("POST") == 3 and fake.calls("PUT") == 0


def test_retries_stop_at_the_deadline(fake: FakeGitHub) -> None:
    fake.fail("POST", "/api/graphql", 502, times=None)
    harness = Harness(fake)
    started = time.monotonic()
    # Room for the first retry (at once) and a 1 s request, not for the second (after 1 s, then 1 s more).
    with pytest.raises(GitHubUnavailable, match="HTTP 502 after 2 attempts; no time left"):
        harness.run(deadline=started + 1.5)
    assert time.monotonic() - started < 1.5
    assert fake.calls("POST") == 2


def test_merges_stop_at_the_deadline(fake: FakeGitHub) -> None:
    pulls = [green(fake, f"PR {i}") for i in range(2)]

    def slow_merge(number: int) -> None:  # the first merge takes half of the cycle's time
        if number == pulls[0].number:
            time.sleep(1.5)

    fake.on_merge = slow_merge
    harness = Harness(fake)
    started = time.monotonic()
    report = harness.run(deadline=started + 3.0)
    # The second merge would need a second of spacing and room for itself and a read-back (2 x 1 s).
    assert reasons(report) == {
        pulls[0].number: (MergeOutcome.MERGED, "merged"),
        pulls[1].number: (MergeOutcome.SKIPPED, "stopped early"),
    }
    assert report.stopped == "time budget spent"
    assert fake.calls("PUT") == 1 and harness.sleeps == []
    assert time.monotonic() - started < 3.0


def test_no_request_starts_without_time_for_it(fake: FakeGitHub) -> None:
    green(fake)
    harness = Harness(fake)
    with pytest.raises(GitHubUnavailable, match="no time left in this cycle for GitHub GraphQL query"):
        harness.run(deadline=time.monotonic() + 0.5)  # less than min_request_s (1 s)
    assert fake.calls() == 0


# ------------------------------------------------------------------ a server that trickles its answers


@pytest.mark.parametrize("body_only", [False, True], ids=["status-and-headers", "body"])
def test_a_trickled_graphql_answer_gives_up_at_the_request_timeout(fake: FakeGitHub, body_only: bool) -> None:
    green(fake)
    fake.fail("POST", "/api/graphql", 200, body={"data": None}, trickle=0.5, trickle_body_only=body_only,
              times=None)
    settings = settings_for(fake)
    client = GitHubClient(settings, timeout_s=2)
    started = time.monotonic()
    with pytest.raises(GitHubUnavailable, match=r"^GitHub GraphQL query did not finish within 2 s$"):
        run_merge(client, settings, log=EventLog("test", secrets=[TOKEN], stream=io.StringIO()))
    assert 2.0 <= time.monotonic() - started < 2.0 + PROMPT_S
    assert fake.calls("POST") == 1


def test_a_trickled_graphql_answer_gives_up_at_the_cycle_deadline(fake: FakeGitHub) -> None:
    green(fake)
    fake.fail("POST", "/api/graphql", 200, trickle=0.5, times=None)
    harness = Harness(fake)  # its requests may take 5 s; the cycle has 1.5 s left
    started = time.monotonic()
    with pytest.raises(GitHubUnavailable, match=r"did not finish within 1\.[45] s"):
        harness.run(deadline=started + 1.5)
    assert 1.5 <= time.monotonic() - started < 1.5 + PROMPT_S


def test_a_merge_cut_off_is_an_unknown_outcome_and_never_sent_twice(fake: FakeGitHub) -> None:
    pull = green(fake)
    fake.fail("PUT", r"/merge$", 200, trickle=0.5, times=None)  # GitHub has not merged, and answers slowly
    harness = Harness(fake)
    harness.client = GitHubClient(harness.settings, timeout_s=2, sleep=harness.sleeps.append)
    started = time.monotonic()
    report = harness.run()
    elapsed = time.monotonic() - started
    # Read back: not merged, yet the abandoned PUT may still land, so "not merged" is no answer.
    assert reasons(report) == {pull.number: (MergeOutcome.FAILED, "merge outcome unknown")}
    assert fake.calls("PUT") == 1 and fake.calls("GET", f"/pulls/{pull.number}") == 1
    assert 2.0 <= elapsed < 2.0 + PROMPT_S
    assert "the merge of #1 did not finish within 2 s" in harness.events


def test_a_merge_cut_off_that_landed_is_confirmed_by_reading_back(fake: FakeGitHub) -> None:
    pull = green(fake)
    fake.fail("PUT", r"/merge$", 200, trickle=0.5, after=True)  # merged, then the answer trickles
    harness = Harness(fake)
    harness.client = GitHubClient(harness.settings, timeout_s=2, sleep=harness.sleeps.append)
    report = harness.run()
    assert reasons(report) == {pull.number: (MergeOutcome.MERGED, "merged")}
    assert fake.calls("PUT") == 1


def test_a_trickled_read_back_gives_up_at_its_timeout(fake: FakeGitHub) -> None:
    pull = green(fake)
    fake.fail("PUT", r"/merge$", 502)  # not merged, but the answer says nothing: read back...
    fake.fail("GET", rf"/pulls/{pull.number}$", 200, trickle=0.5, trickle_body_only=True, times=None)
    harness = Harness(fake)
    harness.client = GitHubClient(harness.settings, timeout_s=2, sleep=harness.sleeps.append)
    started = time.monotonic()
    report = harness.run()
    assert reasons(report) == {pull.number: (MergeOutcome.FAILED, "merge outcome unknown")}
    assert 2.0 <= time.monotonic() - started < 2.0 + PROMPT_S
    assert "reading #1 from GitHub did not finish within 2 s" in harness.events
    assert fake.calls("PUT") == 1 and fake.calls("GET") == 1


def test_a_merge_cut_off_by_the_cycle_deadline_is_reported_by_then(fake: FakeGitHub) -> None:
    first = green(fake, "First")
    second = green(fake, "Second")
    fake.fail("PUT", r"/merge$", 200, trickle=0.5, times=None)
    harness = Harness(fake)  # requests may take 5 s; the cycle has 2.5 s
    started = time.monotonic()
    report = harness.run(deadline=started + 2.5)
    elapsed = time.monotonic() - started
    assert reasons(report) == {
        first.number: (MergeOutcome.FAILED, "merge outcome unknown"),  # no time left to read it back
        second.number: (MergeOutcome.SKIPPED, "stopped early"),
    }
    assert report.stopped == "time budget spent"
    assert fake.calls("PUT") == 1 and fake.calls("GET") == 0
    assert 2.5 <= elapsed < 2.5 + PROMPT_S


def test_graphql_rate_limited_ends_the_step_cleanly(fake: FakeGitHub) -> None:
    green(fake)
    fake.rate_limit(0, reset_in_s=600, resource="graphql")
    harness = Harness(fake)
    report = harness.run()
    assert report.status is StepStatus.OK
    assert report.stopped is not None and report.stopped.startswith("GitHub GraphQL rate limit (RATE_LIMITED)")
    assert "retry after" in report.stopped
    assert report.pulls == [] and fake.calls("PUT") == 0
    assert '"event": "merge.stopped"' in harness.events


@pytest.mark.parametrize("status", [403, 429])
def test_a_secondary_rate_limit_on_graphql_ends_the_step_cleanly(fake: FakeGitHub, status: int) -> None:
    green(fake)
    fake.fail("POST", "/api/graphql", status, headers={"retry-after": "120"})
    harness = Harness(fake)
    report = harness.run()
    assert report.stopped is not None and f"secondary rate limit (HTTP {status}); retry after" in report.stopped
    assert harness.sleeps == [] and fake.calls() == 1


def test_a_429_without_hint_still_stops(fake: FakeGitHub) -> None:
    fake.fail("POST", "/api/graphql", 429, body={"message": "Too many requests"})
    report = Harness(fake).run()
    assert report.stopped is not None and report.stopped.startswith("GitHub rate limit (HTTP 429)")


def test_an_exhausted_rest_budget_stops_the_merges(fake: FakeGitHub) -> None:
    pulls = [green(fake, f"PR {i}") for i in range(3)]
    fake.rate_limit(0, reset_in_s=600, resource="core")
    report = Harness(fake).run()
    assert report.status is StepStatus.OK
    assert report.stopped is not None and report.stopped.startswith("GitHub rate limit exhausted (HTTP 403)")
    assert {p.reason for p in report.pulls} == {"stopped early"}
    assert fake.calls("PUT") == 1 and not any(fake.pull(p.number).merged for p in pulls)


@pytest.mark.parametrize("status", [403, 429])
def test_a_secondary_rate_limit_on_a_merge_stops_the_rest(fake: FakeGitHub, status: int) -> None:
    first = green(fake, "First")
    second = green(fake, "Second")
    third = green(fake, "Third")
    fake.fail("PUT", rf"/pulls/{second.number}/merge$", status, headers={"retry-after": "60"})
    report = Harness(fake).run()
    assert reasons(report) == {
        first.number: (MergeOutcome.MERGED, "merged"),
        second.number: (MergeOutcome.SKIPPED, "stopped early"),
        third.number: (MergeOutcome.SKIPPED, "stopped early"),
    }
    assert fake.calls("PUT") == 2


def test_a_low_budget_stops_before_it_runs_out(fake: FakeGitHub) -> None:
    pulls = [green(fake, f"PR {i}") for i in range(3)]
    fake.rate_limit(40, reset_in_s=600, resource="core")
    report = Harness(fake, client_options={"min_remaining": 39}).run()
    # The first merge shows 39 left; the floor (39) lets one more through, then stops.
    assert report.merged == [pulls[0].number, pulls[1].number]
    assert report.stopped is not None and report.stopped.startswith("GitHub core budget low (38 left)")
    assert fake.calls("PUT") == 2


def test_a_low_graphql_budget_stops_before_the_next_page(fake: FakeGitHub) -> None:
    for i in range(101):
        fake.add_pull(f"PR {i}")
    fake.rate_limit(30, reset_in_s=600, resource="graphql")
    report = Harness(fake).run()
    assert report.stopped is not None and "graphql budget low" in report.stopped
    assert fake.calls("POST") == 1 and report.pulls == []


# ------------------------------------------------------------------------- credentials, malformed


def test_bad_credentials_fail_the_step_with_a_clear_message(fake: FakeGitHub) -> None:
    green(fake)
    wrong = "ghp_WRONG_token_5e6f7a8b9c0d"
    harness = Harness(fake, token=wrong)
    with pytest.raises(BadCredentials, match="bad credentials") as caught:
        harness.run()
    assert wrong not in str(caught.value) and wrong not in repr(caught.value)
    assert fake.calls() == 1  # no retry helps


def test_bad_credentials_on_a_merge_fail_the_step(fake: FakeGitHub) -> None:
    green(fake)
    fake.fail("PUT", r"/merge$", 401, body={"message": "Bad credentials"})
    with pytest.raises(BadCredentials):
        Harness(fake).run()


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ("<html>oops</html>", MalformedAnswer, "answer should be an object"),
        ({"data": None}, MalformedAnswer, "data should be an object, got null"),
        ({"data": {"repository": {"defaultBranchRef": {"name": "main"}}}}, MalformedAnswer, "pullRequests"),
        (
            {"data": {"repository": {"defaultBranchRef": {"name": "main"}, "pullRequests": {
                "pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": [{"number": "one"}]}}}},
            MalformedAnswer,
            r"pullRequests.nodes\[0\].number should be a whole number",
        ),
        ({"data": {"repository": None}}, GitHubError, "not found, or the token cannot read it"),
        ({"errors": [{"type": "INTERNAL", "message": "Something went wrong"}]}, GitHubError, "Something went wrong"),
    ],
    ids=["not-json", "no-data", "no-pulls", "bad-number", "no-repo", "errors"],
)
def test_malformed_answers_fail_the_step_clearly(
    fake: FakeGitHub, body: Any, error: type[Exception], message: str
) -> None:
    fake.fail("POST", "/api/graphql", 200, body=body)
    with pytest.raises(error, match=message):
        Harness(fake).run()


def test_a_fine_grained_token_leaves_the_pull_request_it_cannot_read_open_with_its_reason(fake: FakeGitHub) -> None:
    # GitHub answers 200 with data and a FORBIDDEN error at each check run's path: that pull request is refused
    # with a reason naming the missing permission, the others are decided as usual.
    first = green(fake, "Checked by a check run")
    by_status = fake.add_pull("Checked by a commit status")
    fake.approve(by_status.number)
    fake.add_status(by_status.number, "ci")
    unreviewed = fake.add_pull("Unreviewed")
    fake.add_status(unreviewed.number, "ci")
    fake.fine_grained.add(TOKEN)
    harness = Harness(fake)
    report = harness.run()
    assert report.status is StepStatus.OK and report.stopped is None
    assert reasons(report) == {
        first.number: (MergeOutcome.SKIPPED, "checks unreadable: Resource not accessible by personal access token: "
                                             "give the token checks read, or use a GitHub App"),
        by_status.number: (MergeOutcome.MERGED, "merged"),
        unreviewed.number: (MergeOutcome.SKIPPED, "not approved"),
    }
    assert not fake.pull(first.number).merged and fake.pull(by_status.number).merged
    assert "checks unreadable" in harness.events


PULL_ZERO = ["repository", "pullRequests", "nodes", 0]


@pytest.mark.parametrize(
    ("path", "stops"),
    [
        (None, True),  # no path: the whole read failed, as before
        (["repository", "backlog"], True),  # outside any pull request
        ([*PULL_ZERO, "number"], True),  # the pull request cannot even be named
        ([*PULL_ZERO, "latestOpinionatedReviews", "nodes", 0], False),
        ([*PULL_ZERO, "mergeable"], False),
    ],
    ids=["no-path", "outside", "number", "reviews", "mergeable"],
)
def test_only_errors_inside_one_pull_request_spare_the_rest(
    fake: FakeGitHub, path: list[Any] | None, stops: bool
) -> None:
    node = {"number": 7, "title": "Seven", "createdAt": "2026-01-01T00:00:00Z", "isDraft": False, "state": "OPEN",
            "baseRefName": "main", "headRefOid": "a" * 40, "mergeable": None, "mergeStateStatus": "CLEAN",
            "reviewDecision": "APPROVED", "labels": {"nodes": []}, "latestOpinionatedReviews": {"nodes": [None]},
            "commits": {"nodes": []}}
    error: dict[str, Any] = {"type": "FORBIDDEN", "message": "Resource not accessible by integration"}
    if path is not None:
        error["path"] = path
    fake.fail("POST", "/api/graphql", 200, body={"errors": [error], "data": {"repository": {
        "defaultBranchRef": {"name": "main"}, "pullRequests": {
            "pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": [node]}}}})
    if stops:
        with pytest.raises(GitHubError, match="Resource not accessible by integration"):
            Harness(fake).run()
        return
    report = Harness(fake).run()
    part = "reviews" if "latestOpinionatedReviews" in path else "mergeable"  # type: ignore[operator]
    fix = "give the token pull_requests read" if part == "reviews" else "give the token read access to it"
    assert reasons(report) == {7: (MergeOutcome.SKIPPED, f"{part} unreadable: Resource not accessible by "
                                                          f"integration: {fix}, or use a GitHub App")}


def test_a_repeating_cursor_is_malformed(fake: FakeGitHub) -> None:
    page = {"data": {"repository": {"defaultBranchRef": {"name": "main"}, "pullRequests": {
        "pageInfo": {"hasNextPage": True, "endCursor": "abc"}, "nodes": []}}}}
    fake.fail("POST", "/api/graphql", 200, body=page, times=None)
    with pytest.raises(MalformedAnswer, match="endCursor repeats"):
        Harness(fake).run()


def test_a_malformed_merge_answer_is_checked_by_reading_back(fake: FakeGitHub) -> None:
    pull = green(fake)
    fake.fail("PUT", r"/merge$", 200, body={"unexpected": True}, after=True)
    report = Harness(fake).run()
    assert reasons(report) == {pull.number: (MergeOutcome.MERGED, "merged")}
    assert fake.calls("PUT") == 1 and fake.calls("GET") == 1


# ---------------------------------------------------------------------------------- token hygiene


def test_the_token_appears_in_no_output(fake: FakeGitHub, caplog: pytest.LogCaptureFixture,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)  # PyGithub, urllib3 and requests log requests at DEBUG
    for i in range(4):
        green(fake, f"PR {i}")
    # A hostile or buggy answer that echoes the token must not carry it into our messages.
    fake.fail("PUT", r"/pulls/1/merge$", 422, body={"message": f"token {TOKEN} is not allowed"})
    fake.fail("PUT", r"/pulls/2/merge$", 502)
    fake.fail("GET", r"/pulls/2$", 500, body={"message": f"oops {TOKEN}"}, times=None)
    fake.fail("PUT", r"/pulls/3/merge$", 409)
    harness = Harness(fake, client_options={"max_attempts": 1})
    report = harness.run()
    assert reasons(report)[1] == (MergeOutcome.FAILED, "merge rejected")
    assert reasons(report)[2] == (MergeOutcome.FAILED, "merge outcome unknown")
    fake.fail("POST", "/api/graphql", 500, body={"message": TOKEN}, times=None)
    with pytest.raises(GitHubError) as caught:
        harness.run()
    captured = capsys.readouterr()
    texts = [harness.events, repr(report), str(caught.value), repr(caught.value), caplog.text, captured.out,
             captured.err, repr(harness.client.__dict__.get("_settings"))]
    assert "token *** is not allowed" in harness.events  # proof the hostile text was there, scrubbed
    for text in texts:
        assert TOKEN not in text


def test_the_builders_backlog_is_counted_in_the_same_read(fake: FakeGitHub) -> None:
    for label in ("role:api_builder", "role:api_builder", "feature", "question"):
        fake.add_issue(f"Work labelled {label}", labels=(label,))
    fake.add_issue("Closed", labels=("feature",), state="closed")
    green(fake, "A pull request with a role label is not an issue", labels=("role:api_builder",))
    harness = Harness(fake)
    report = harness.run(backlog_labels=("role:api_builder", "feature"))
    assert report.backlog == 3
    assert fake.graphql_documents.count(OPEN_PULLS_QUERY) == 1  # the count rides on the first page
    assert report.rate_limit_remaining is not None
    assert Harness(fake).run().backlog is None  # nothing asked, nothing counted


def test_a_cycle_counts_the_task_driven_roles_labels_and_backlog_labels_never_a_reviewers(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    from coordinator.fleet import Mode
    from tests.fleet_harness import role_spec, write_roster

    roster = write_roster(tmp_path / "roster.json", [
        role_spec("api_builder", 2, "agent:1"), role_spec("reviewer", 1, "agent:1", mode=Mode.REVIEWER),
    ])
    for label in ("role:api_builder", "feature", "bug", "role:reviewer", "question"):
        fake.add_issue(f"Work labelled {label}", labels=(label,))
    env = cycle_env("tbacklog", roster, GITHUB_REPOSITORY=fake.repository, GITHUB_TOKEN=TOKEN,
                    GITHUB_API_URL=fake.api_url, GITHUB_GRAPHQL_URL=fake.graphql_url, BACKLOG_LABELS="feature,bug",
                    DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")  # no engine: only the merge step matters here
    run = run_cycle(env)
    assert run.report["merge"]["backlog"] == 3, run.stdout + run.stderr  # role:api_builder, feature, bug
    assert fake.calls("POST", "/graphql") == 1


def test_a_secondary_rate_limit_without_a_retry_hint_stops_the_merges_for_a_minute(fake: FakeGitHub) -> None:
    first, second = green(fake, "First"), green(fake, "Second")
    fake.fail("PUT", r"/merge$", 403, body={"message": "You have exceeded a secondary rate limit. Please wait."},
              times=1)
    harness = Harness(fake)
    report = harness.run()
    assert report.stopped is not None and report.stopped.startswith("GitHub secondary rate limit (HTTP 403)")
    assert reasons(report) == {first.number: (MergeOutcome.SKIPPED, "stopped early"),
                               second.number: (MergeOutcome.SKIPPED, "stopped early")}
    assert fake.calls("PUT", "/merge") == 1  # the rest waits for a later cycle


@pytest.mark.parametrize(
    ("api_url", "cause"),
    [
        ("refused", "refused"),  # a port nobody listens on
        ("http://github.invalid", "dns"),  # .invalid never resolves (RFC 6761)
    ],
)
def test_github_unreachable_names_the_host_and_the_cause(fake: FakeGitHub, api_url: str, cause: str) -> None:
    with FakeGitHub(token=TOKEN) as gone:
        dead = gone.api_url
    url = dead if api_url == "refused" else api_url
    host = urlsplit(url).netloc
    harness = Harness(fake)
    settings = settings_for(fake)
    harness.settings = GitHubSettings(settings.repository, settings.token, url, f"{url}/graphql")
    harness.client = GitHubClient(harness.settings, timeout_s=5, sleep=harness.sleeps.append, max_attempts=2)
    with pytest.raises(GitHubUnavailable) as unavailable:
        harness.run()
    assert str(unavailable.value) == f"GitHub GraphQL query: GitHub at {host} unreachable ({cause}) after 2 attempts"

"""GitHub's merge queue and the up-to-date policy, end to end over real HTTP against the local GitHub.

The local GitHub models a default branch whose ruleset requires the merge queue (a direct merge answers 405
"Changes must be made through the merge queue"; `enqueuePullRequest` checks the expected head and the merge's own
requirements; entries carry a state and a position) and the required checks' strict policy (every merge leaves
the other pull requests BEHIND; `PUT .../update-branch` checks `expected_head_sha`). Every GraphQL document the
coordinator sends is validated against GitHub's vendored schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from coordinator.edges.github import ENQUEUE_MUTATION, OPEN_PULLS_QUERY, PULL_BEFORE_MERGE_QUERY
from coordinator.report import CycleReport, MergeOutcome, to_dict
from tests.fakes.github import FakeGitHub, github_schema
from tests.test_merge_step import TOKEN, Harness, green, reasons


@pytest.fixture
def queue_branch() -> Iterator[FakeGitHub]:
    github_schema()
    with FakeGitHub(token=TOKEN, merge_queue=True, required_checks=("ci",)) as server:
        yield server
        assert server.server_errors == []


@pytest.fixture
def strict() -> Iterator[FakeGitHub]:
    github_schema()
    with FakeGitHub(token=TOKEN, require_up_to_date=True, required_checks=("ci",)) as server:
        yield server
        assert server.server_errors == []


def after(fake: FakeGitHub, operation: str, change: Callable[[], object], *, times: int = 1) -> None:
    """`change` lands right after the local GitHub answered `operation` (the first `times` times)."""
    left = [times]

    def hook(name: str | None) -> None:
        if name == operation and left[0] > 0:
            left[0] -= 1
            change()

    fake.after_query = hook


def enqueues(fake: FakeGitHub) -> list[dict[str, object]]:
    return [v for d, v in zip(fake.graphql_documents, fake.graphql_variables, strict=True) if d == ENQUEUE_MUTATION]


# ------------------------------------------------------------------------------------------ the merge queue


def test_on_a_queue_branch_eligible_pull_requests_are_enqueued_never_merged(queue_branch: FakeGitHub) -> None:
    fake = queue_branch
    first, second = green(fake, "First"), green(fake, "Second")
    unreviewed = fake.add_pull("Unreviewed")
    fake.add_check_run(unreviewed.number, "ci")
    draft = green(fake, "Draft", draft=True)
    failing = fake.add_pull("Failing")
    fake.approve(failing.number)
    fake.add_check_run(failing.number, "ci", conclusion="failure")
    queued, broken = green(fake, "Queued before"), green(fake, "Broken in the queue")
    fake.add_to_queue(queued.number)
    fake.add_to_queue(broken.number)
    fake.set_queue_state(broken.number, "UNMERGEABLE")

    harness = Harness(fake, required_checks=("ci",))
    report = harness.run()

    assert reasons(report) == {
        first.number: (MergeOutcome.QUEUED, "enqueued (AWAITING_CHECKS, position 3)"),
        second.number: (MergeOutcome.QUEUED, "enqueued (AWAITING_CHECKS, position 4)"),
        unreviewed.number: (MergeOutcome.SKIPPED, "not approved"),
        draft.number: (MergeOutcome.SKIPPED, "draft"),
        failing.number: (MergeOutcome.SKIPPED, "checks failed"),
        queued.number: (MergeOutcome.QUEUED, "in the merge queue (AWAITING_CHECKS, position 1)"),
        broken.number: (MergeOutcome.QUEUE_FAILED, "merge queue entry unmergeable"),
    }
    assert fake.calls("PUT") == 0 and not any(p.merged for p in fake.pulls)  # never merged directly
    assert fake.queue == [queued.number, broken.number, first.number, second.number]
    # Each enqueue pinned to the head its decision saw; the same three reads as a merge, no extra listing call.
    assert enqueues(fake) == [
        {"pullRequestId": first.node_id, "expectedHeadOid": first.head_sha},
        {"pullRequestId": second.node_id, "expectedHeadOid": second.head_sha},
    ]
    assert fake.graphql_documents == [OPEN_PULLS_QUERY] + [PULL_BEFORE_MERGE_QUERY, ENQUEUE_MUTATION] * 2
    assert report.queued == [first.number, second.number, queued.number]
    assert report.queue_failed == [broken.number]
    body = to_dict(CycleReport(fleet="test", started_at=datetime(2026, 1, 1, tzinfo=UTC), merge=report))
    assert json.loads(json.dumps(body))["merge"]["queued"] == report.queued
    assert body["merge"]["queue_failed"] == [broken.number]
    assert f'"event": "merge.enqueued", "fleet": "test", "number": {first.number}' in harness.events

    # Next cycle: already queued, so nothing is sent but the listing.
    sent = len(fake.requests)
    again = Harness(fake, required_checks=("ci",)).run()
    assert len(fake.requests) == sent + 1
    assert again.queued == [first.number, second.number, queued.number]


def test_a_merge_answered_with_the_queues_405_enqueues_in_the_same_cycle() -> None:
    github_schema()
    with FakeGitHub(token=TOKEN) as fake:
        pull = green(fake)
        # The queue is required from the moment after the read before the merge: a rule that read did not show.
        after(fake, "PullRequestBeforeMerge", lambda: setattr(fake, "merge_queue", True))
        harness = Harness(fake)
        report = harness.run()
        assert fake.server_errors == []
    assert reasons(report) == {pull.number: (MergeOutcome.QUEUED, "enqueued (AWAITING_CHECKS, position 1)")}
    assert not fake.pull(pull.number).merged and fake.queue == [pull.number]
    assert fake.calls("PUT", "/merge") == 1  # the refused merge; never retried as a merge
    assert enqueues(fake) == [{"pullRequestId": pull.node_id, "expectedHeadOid": pull.head_sha}]
    assert '"reason": "merge queue required", "detail": "HTTP 405: Changes must be made through the merge queue"' \
        in harness.events
    assert f'"event": "merge.queue_required", "fleet": "test", "number": {pull.number}' in harness.events


def test_a_push_after_the_read_is_refused_by_the_expected_head_oid(queue_branch: FakeGitHub) -> None:
    fake = queue_branch
    raced, calm = green(fake, "Raced"), green(fake, "Calm")
    # The push lands between the read before the enqueue and the enqueue itself.
    after(fake, "PullRequestBeforeMerge", lambda: fake.push(raced.number))
    harness = Harness(fake, required_checks=("ci",))
    report = harness.run()
    assert reasons(report) == {
        raced.number: (MergeOutcome.FAILED, "head moved"),
        calm.number: (MergeOutcome.QUEUED, "enqueued (AWAITING_CHECKS, position 1)"),
    }
    assert fake.queue == [calm.number]
    assert enqueues(fake)[0]["expectedHeadOid"] != fake.pull(raced.number).head_sha
    assert '"action": "enqueue"' in harness.events


def test_a_change_before_the_enqueue_is_seen_by_the_read_before_it(queue_branch: FakeGitHub) -> None:
    fake = queue_branch
    pull = green(fake)
    after(fake, "OpenPullRequests", lambda: fake.add_label(pull.number, "do-not-merge"))
    report = Harness(fake, required_checks=("ci",)).run()
    assert reasons(report) == {pull.number: (MergeOutcome.SKIPPED, "blocked by label")}
    assert fake.queue == [] and enqueues(fake) == []


def test_a_dry_run_enqueues_nothing(queue_branch: FakeGitHub) -> None:
    pull = green(queue_branch)
    report = Harness(queue_branch, required_checks=("ci",)).run(dry_run=True)
    assert reasons(report) == {pull.number: (MergeOutcome.SKIPPED, "would enqueue (dry run)")}
    assert queue_branch.queue == []


# ---------------------------------------------------------------------------- up to date, one at a time


def updates(fake: FakeGitHub) -> int:
    return fake.calls("PUT", "/update-branch")


def test_under_the_strict_policy_one_update_a_cycle_then_the_merge_once_green(strict: FakeGitHub) -> None:
    fake = strict
    # Approved in the order C, B: C's approval is the oldest, so C is brought up to date first.
    first = fake.add_pull("A")
    b, c = fake.add_pull("B"), fake.add_pull("C")
    for pull in (first, c, b):
        fake.approve(pull.number)
        fake.add_check_run(pull.number, "ci")

    def cycle() -> dict[int, tuple[MergeOutcome, str]]:
        return reasons(Harness(fake, required_checks=("ci",), require_up_to_date=True).run())

    # 1: all up to date; A merges, and B and C turn BEHIND (their read before the merge says so).
    assert cycle() == {
        first.number: (MergeOutcome.MERGED, "merged"),
        b.number: (MergeOutcome.SKIPPED, "behind the base branch"),
        c.number: (MergeOutcome.SKIPPED, "behind the base branch"),
    }
    assert fake.pull(b.number).merged is False and updates(fake) == 0
    # 2: one update, the oldest approval, pinned to the head it read.
    old_head = fake.pull(c.number).head_sha
    assert cycle() == {
        b.number: (MergeOutcome.SKIPPED, "behind the base branch"),
        c.number: (MergeOutcome.UPDATED, "brought up to date; merges once its checks pass on the new head"),
    }
    assert updates(fake) == 1 and fake.pull(c.number).head_sha != old_head
    update = [call for call in fake.requests if call.path.endswith("/update-branch")]
    assert len(update) == 1 and f"/pulls/{c.number}/" in update[0].path
    # 3: C's checks run on its new head: C waits, and B is not updated meanwhile (one at a time).
    fake.add_check_run(c.number, "ci", status="in_progress", conclusion=None)
    assert cycle() == {
        b.number: (MergeOutcome.SKIPPED, "behind the base branch"),
        c.number: (MergeOutcome.SKIPPED, "checks pending"),
    }
    assert updates(fake) == 1
    # 4: green on the new head: C merges, then B is brought up to date on top of it.
    fake.add_check_run(c.number, "ci")
    assert cycle() == {
        b.number: (MergeOutcome.UPDATED, "brought up to date; merges once its checks pass on the new head"),
        c.number: (MergeOutcome.MERGED, "merged"),
    }
    assert fake.pull(c.number).merged and updates(fake) == 2


def test_a_push_after_the_read_is_refused_by_the_expected_head_sha(strict: FakeGitHub) -> None:
    fake = strict
    pull, other = green(fake), green(fake, "Other")
    Harness(fake, required_checks=("ci",)).run()  # the first merges, which leaves the other behind
    assert fake.pull(pull.number).merged and not fake.pull(other.number).merged
    after(fake, "PullRequestBeforeMerge", lambda: fake.push(other.number))
    harness = Harness(fake, required_checks=("ci",), require_up_to_date=True)
    report = harness.run()
    assert reasons(report) == {other.number: (MergeOutcome.FAILED, "head moved")}
    assert '"action": "update"' in harness.events


def test_without_the_setting_a_behind_pull_request_is_never_updated(strict: FakeGitHub) -> None:
    fake = strict
    first, second = green(fake, "First"), green(fake, "Second")
    Harness(fake, required_checks=("ci",)).run()
    report = Harness(fake, required_checks=("ci",)).run()
    assert fake.pull(first.number).merged
    assert reasons(report) == {second.number: (MergeOutcome.SKIPPED, "behind the base branch")}
    assert updates(fake) == 0


def test_a_pull_request_brought_up_to_date_meanwhile_is_not_updated_again(strict: FakeGitHub) -> None:
    fake = strict
    first, second = green(fake, "First"), green(fake, "Second")
    Harness(fake, required_checks=("ci",)).run()  # the first merges, which leaves the second behind

    def updated_by_its_author() -> None:  # the agent merged main into its branch itself, after the listing
        pull = fake.pull(second.number)
        pull.base_sha = fake.pull(first.number).merge_commit_sha or ""
        fake.add_check_run(second.number, "ci")

    after(fake, "OpenPullRequests", updated_by_its_author)
    report = Harness(fake, required_checks=("ci",), require_up_to_date=True).run()
    assert reasons(report) == {second.number: (MergeOutcome.SKIPPED, "up to date already; merges next cycle")}
    assert updates(fake) == 0


def test_an_enqueue_without_an_answer_is_never_sent_twice(queue_branch: FakeGitHub) -> None:
    fake = queue_branch
    pull = green(fake)
    # The enqueue is applied, then answered 502: as with a merge, the outcome is unknown and nothing is resent.
    after(fake, "PullRequestBeforeMerge", lambda: fake.fail("POST", "/api/graphql", 502, after=True))
    report = Harness(fake, required_checks=("ci",)).run()
    assert reasons(report) == {pull.number: (MergeOutcome.FAILED, "enqueue outcome unknown")}
    assert len(enqueues(fake)) == 1 and fake.queue == [pull.number]
    # The next cycle reads it in the queue.
    fake.after_query = None
    assert Harness(fake, required_checks=("ci",)).run().queued == [pull.number]


def test_a_rate_limit_on_a_branch_update_ends_the_step_cleanly(strict: FakeGitHub) -> None:
    fake = strict
    first, second = green(fake, "First"), green(fake, "Second")
    Harness(fake, required_checks=("ci",)).run()
    fake.fail("PUT", "/update-branch$", 429, headers={"retry-after": "30"})
    report = Harness(fake, required_checks=("ci",), require_up_to_date=True).run()
    assert report.stopped is not None and report.stopped.startswith("GitHub secondary rate limit (HTTP 429)")
    assert reasons(report) == {second.number: (MergeOutcome.SKIPPED, "stopped early")}
    assert fake.pull(first.number).merged and updates(fake) == 1

"""The merge rules as a pure function: crafted snapshots in, decisions out. No network, no server.

Every enum value GitHub's schema defines is run through the rule that reads it, and the tables are
checked against the schema itself, so a value GitHub adds shows up here as a failing test.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from graphql import parse, validate
from graphql.type import GraphQLEnumType

from coordinator.edges.github import (
    MERGE_FACTS_FRAGMENT,
    OPEN_PULLS_QUERY,
    PULL_BEFORE_MERGE_QUERY,
    GraphQLAnswer,
    MalformedAnswer,
    PathError,
    snapshot_from_node,
)
from coordinator.pull_requests import (
    CheckConclusion,
    CheckRun,
    CheckStatus,
    CommitStatus,
    Mergeable,
    MergeQueueEntryState,
    MergeStateStatus,
    PullSnapshot,
    PullState,
    QueueEntry,
    Review,
    ReviewDecision,
    ReviewState,
    StatusState,
    Unreadable,
    Unrecognized,
)
from coordinator.report import MergeOutcome
from coordinator.steps.merge_plan import commit_title, plan_merges, queue_reason
from coordinator.steps.merge_rules import MergePolicy, Refusal, decide
from tests.fakes.github import github_schema

HEAD = "a" * 40
OLD = "b" * 40
T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = MergePolicy(default_branch="main")


def ready(**changes: Any) -> PullSnapshot:
    """A pull request every rule lets through; each test changes one thing."""
    pull = PullSnapshot(
        number=1,
        title="Add a thing",
        created_at=T0,
        is_draft=False,
        state=PullState.OPEN,
        base_ref="main",
        head_oid=HEAD,
        rollup_commit_oid=HEAD,
        rollup_state=StatusState.SUCCESS,
        checks=(CheckRun("ci", CheckStatus.COMPLETED, CheckConclusion.SUCCESS),),
        labels=("enhancement",),
        mergeable=Mergeable.MERGEABLE,
        merge_state_status=MergeStateStatus.CLEAN,
        review_decision=ReviewDecision.APPROVED,
        latest_reviews=(by_writer(ReviewState.APPROVED),),
    )
    return replace(pull, **changes)


def by_writer(state: ReviewState | Unrecognized) -> Review:
    return Review(state, author_can_push=True)


def by_outsider(state: ReviewState | Unrecognized) -> Review:
    """A review by someone without write access: anyone may review a public repository."""
    return Review(state, author_can_push=False)


def refusals(pull: PullSnapshot, policy: MergePolicy = POLICY) -> tuple[Refusal, ...]:
    return decide(pull, policy).refusals


@pytest.fixture(scope="module")
def schema() -> Any:
    return github_schema()


def test_a_ready_pull_request_is_eligible() -> None:
    decision = decide(ready(), POLICY)
    assert decision.eligible
    assert decision.refusals == ()
    assert decision.reason == "eligible"


# ---------------------------------------------------------------------------------------------- state

STATE = {PullState.OPEN: (), PullState.CLOSED: (Refusal.CLOSED,), PullState.MERGED: (Refusal.ALREADY_MERGED,)}


@pytest.mark.parametrize(("state", "expected"), STATE.items())
def test_state(state: PullState, expected: tuple[Refusal, ...]) -> None:
    assert refusals(ready(state=state)) == expected


def test_draft_refuses_even_when_everything_else_is_green() -> None:
    assert refusals(ready(is_draft=True)) == (Refusal.DRAFT,)


def test_only_the_default_branch_is_a_merge_target() -> None:
    assert refusals(ready(base_ref="release/1.x")) == (Refusal.NOT_DEFAULT_BRANCH,)
    assert refusals(ready(base_ref="release/1.x"), MergePolicy(default_branch="release/1.x")) == ()


@pytest.mark.parametrize("label", ["do-not-merge", "DO-NOT-MERGE", "Do-Not-Merge"])
def test_the_default_blocking_label_blocks_in_any_case(label: str) -> None:
    assert refusals(ready(labels=("bug", label))) == (Refusal.BLOCKED_BY_LABEL,)


def test_blocking_labels_are_configurable() -> None:
    policy = MergePolicy(default_branch="main", blocking_labels=("hold", "wip"))
    assert refusals(ready(labels=("wip",)), policy) == (Refusal.BLOCKED_BY_LABEL,)
    assert refusals(ready(labels=("do-not-merge",)), policy) == ()
    with pytest.raises(ValueError, match="blocking_labels is empty"):  # never "no blocking label at all"
        MergePolicy(default_branch="main", blocking_labels=())


def test_a_rollup_of_another_commit_than_the_head_is_not_trusted() -> None:
    assert refusals(ready(rollup_commit_oid=OLD)) == (Refusal.HEAD_MOVED,)
    assert Refusal.HEAD_MOVED in refusals(ready(rollup_commit_oid=None, rollup_state=None, checks=()))


# --------------------------------------------------------------------------------------------- review

DECISION = {
    ReviewDecision.APPROVED: (),
    ReviewDecision.CHANGES_REQUESTED: (Refusal.CHANGES_REQUESTED,),
    ReviewDecision.REVIEW_REQUIRED: (Refusal.NOT_APPROVED,),
}


@pytest.mark.parametrize(("decision", "expected"), DECISION.items())
def test_githubs_review_decision_is_final(decision: ReviewDecision, expected: tuple[Refusal, ...]) -> None:
    # GitHub's decision wins over the reviews we can see: it knows about stale approvals and code owners.
    assert refusals(ready(review_decision=decision, latest_reviews=(by_writer(ReviewState.APPROVED),))) == expected
    assert refusals(ready(review_decision=decision, latest_reviews=())) == expected


# reviewDecision null (no review required by the branch): decided from each reviewer's latest review.
NULL_DECISION = [
    ((), (Refusal.NOT_APPROVED,)),
    ((ReviewState.APPROVED,), ()),
    ((ReviewState.APPROVED, ReviewState.APPROVED), ()),
    ((ReviewState.APPROVED, ReviewState.CHANGES_REQUESTED), (Refusal.CHANGES_REQUESTED,)),
    ((ReviewState.CHANGES_REQUESTED,), (Refusal.CHANGES_REQUESTED,)),
    ((ReviewState.COMMENTED,), (Refusal.NOT_APPROVED,)),
    ((ReviewState.DISMISSED,), (Refusal.NOT_APPROVED,)),
    ((ReviewState.PENDING,), (Refusal.NOT_APPROVED,)),
    ((ReviewState.APPROVED, ReviewState.COMMENTED, ReviewState.DISMISSED, ReviewState.PENDING), ()),
    ((ReviewState.APPROVED, Unrecognized("review", "ENDORSED")), (Refusal.UNRECOGNIZED,)),
]


@pytest.mark.parametrize(("reviews", "expected"), NULL_DECISION)
def test_null_review_decision_is_never_approval_by_itself(
    reviews: tuple[ReviewState, ...], expected: tuple[Refusal, ...]
) -> None:
    assert refusals(ready(review_decision=None, latest_reviews=tuple(map(by_writer, reviews)))) == expected


@pytest.mark.parametrize(
    ("reviews", "expected"),
    [
        ((by_outsider(ReviewState.APPROVED),), (Refusal.NOT_APPROVED,)),
        ((by_outsider(ReviewState.APPROVED), by_outsider(ReviewState.APPROVED)), (Refusal.NOT_APPROVED,)),
        # An outsider can neither approve nor block: GitHub's own review decision counts writers only.
        ((by_writer(ReviewState.APPROVED), by_outsider(ReviewState.CHANGES_REQUESTED)), ()),
        ((by_outsider(ReviewState.APPROVED), by_writer(ReviewState.CHANGES_REQUESTED)), (Refusal.CHANGES_REQUESTED,)),
    ],
)
def test_only_reviews_by_people_who_can_push_count(reviews: tuple[Review, ...], expected: tuple[Refusal, ...]) -> None:
    assert refusals(ready(review_decision=None, latest_reviews=reviews)) == expected


def test_every_review_state_is_in_the_null_decision_table() -> None:
    seen = {r for reviews, _ in NULL_DECISION for r in reviews if isinstance(r, ReviewState)}
    assert seen == set(ReviewState)


# --------------------------------------------------------------------------------------------- checks

ROLLUP = {
    StatusState.SUCCESS: (),
    StatusState.PENDING: (Refusal.CHECKS_PENDING,),
    StatusState.EXPECTED: (Refusal.CHECKS_PENDING,),  # a required status has not reported yet
    StatusState.FAILURE: (Refusal.CHECKS_FAILED,),
    StatusState.ERROR: (Refusal.CHECKS_FAILED,),
}


@pytest.mark.parametrize(("state", "expected"), ROLLUP.items())
def test_rollup_state(state: StatusState, expected: tuple[Refusal, ...]) -> None:
    assert refusals(ready(rollup_state=state)) == expected


def test_nothing_reported_is_not_green() -> None:
    assert refusals(ready(rollup_state=None, checks=())) == (Refusal.NO_CHECKS,)
    # A rollup that names no check at all is not trusted either.
    assert refusals(ready(checks=())) == (Refusal.NO_CHECKS,)


CHECK_STATUS = {
    CheckStatus.QUEUED: (Refusal.CHECKS_PENDING,),
    CheckStatus.IN_PROGRESS: (Refusal.CHECKS_PENDING,),
    CheckStatus.PENDING: (Refusal.CHECKS_PENDING,),
    CheckStatus.REQUESTED: (Refusal.CHECKS_PENDING,),
    CheckStatus.WAITING: (Refusal.CHECKS_PENDING,),
    CheckStatus.COMPLETED: (),
}


@pytest.mark.parametrize(("status", "expected"), CHECK_STATUS.items())
def test_check_run_status_even_when_the_rollup_says_success(
    status: CheckStatus, expected: tuple[Refusal, ...]
) -> None:
    # The outage: CI still running. Rollup and single checks must agree before anything merges.
    conclusion = CheckConclusion.SUCCESS if status is CheckStatus.COMPLETED else None
    assert refusals(ready(checks=(CheckRun("ci", status, conclusion),))) == expected


CONCLUSION = {
    CheckConclusion.SUCCESS: (),
    CheckConclusion.NEUTRAL: (),  # GitHub counts neutral and skipped as success
    CheckConclusion.SKIPPED: (),
    CheckConclusion.FAILURE: (Refusal.CHECKS_FAILED,),
    CheckConclusion.CANCELLED: (Refusal.CHECKS_FAILED,),
    CheckConclusion.TIMED_OUT: (Refusal.CHECKS_FAILED,),
    CheckConclusion.ACTION_REQUIRED: (Refusal.CHECKS_FAILED,),
    CheckConclusion.STARTUP_FAILURE: (Refusal.CHECKS_FAILED,),
    CheckConclusion.STALE: (Refusal.CHECKS_FAILED,),
}


@pytest.mark.parametrize(("conclusion", "expected"), CONCLUSION.items())
def test_check_run_conclusion(conclusion: CheckConclusion, expected: tuple[Refusal, ...]) -> None:
    assert refusals(ready(checks=(CheckRun("ci", CheckStatus.COMPLETED, conclusion),))) == expected


def test_a_completed_check_without_conclusion_is_pending() -> None:
    assert refusals(ready(checks=(CheckRun("ci", CheckStatus.COMPLETED, None),))) == (Refusal.CHECKS_PENDING,)


@pytest.mark.parametrize(("state", "expected"), ROLLUP.items())
def test_commit_status_state(state: StatusState, expected: tuple[Refusal, ...]) -> None:
    assert refusals(ready(checks=(CommitStatus("ci/legacy", state),))) == expected


def test_the_worst_check_wins() -> None:
    checks = (
        CheckRun("lint", CheckStatus.COMPLETED, CheckConclusion.SUCCESS),
        CheckRun("test", CheckStatus.IN_PROGRESS, None),
        CommitStatus("deploy", StatusState.FAILURE),
    )
    assert refusals(ready(checks=checks)) == (Refusal.CHECKS_FAILED,)
    assert refusals(ready(checks=checks[:2])) == (Refusal.CHECKS_PENDING,)


# ------------------------------------------------------------------------------------- required checks

REQUIRED = MergePolicy(default_branch="main", required_checks=("build", "ci/legacy"))
BOTH_GREEN = (
    CheckRun("build", CheckStatus.COMPLETED, CheckConclusion.SUCCESS),
    CommitStatus("ci/legacy", StatusState.SUCCESS),
)


def test_required_checks_present_and_green() -> None:
    assert refusals(ready(checks=BOTH_GREEN), REQUIRED) == ()


def test_a_missing_required_check_refuses_even_with_a_green_rollup() -> None:
    assert refusals(ready(checks=BOTH_GREEN[:1]), REQUIRED) == (Refusal.REQUIRED_CHECK_MISSING,)
    assert refusals(ready(), REQUIRED) == (Refusal.REQUIRED_CHECK_MISSING,)


def test_a_required_check_reported_twice_must_pass_both_times() -> None:
    checks = (*BOTH_GREEN, CheckRun("build", CheckStatus.COMPLETED, CheckConclusion.FAILURE))
    assert refusals(ready(checks=checks, rollup_state=StatusState.FAILURE), REQUIRED) == (Refusal.CHECKS_FAILED,)


def test_required_check_names_are_exact() -> None:
    checks = (CheckRun("Build", CheckStatus.COMPLETED, CheckConclusion.SUCCESS), BOTH_GREEN[1])
    assert refusals(ready(checks=checks), REQUIRED) == (Refusal.REQUIRED_CHECK_MISSING,)


# -------------------------------------------------------------------------------------- mergeability

MERGEABLE = {
    Mergeable.MERGEABLE: (),
    Mergeable.CONFLICTING: (Refusal.CONFLICTING,),
    Mergeable.UNKNOWN: (Refusal.MERGEABILITY_UNKNOWN,),
}


@pytest.mark.parametrize(("mergeable", "expected"), MERGEABLE.items())
def test_mergeable(mergeable: Mergeable, expected: tuple[Refusal, ...]) -> None:
    assert refusals(ready(mergeable=mergeable)) == expected


MERGE_STATE = {
    MergeStateStatus.CLEAN: (),
    MergeStateStatus.HAS_HOOKS: (),
    MergeStateStatus.BEHIND: (Refusal.BEHIND,),
    MergeStateStatus.BLOCKED: (Refusal.BLOCKED,),
    MergeStateStatus.DIRTY: (Refusal.CONFLICTING,),
    MergeStateStatus.DRAFT: (Refusal.DRAFT,),
    MergeStateStatus.UNKNOWN: (Refusal.MERGEABILITY_UNKNOWN,),
    MergeStateStatus.UNSTABLE: (Refusal.UNSTABLE,),
}


@pytest.mark.parametrize(("status", "expected"), MERGE_STATE.items())
def test_merge_state_status(status: MergeStateStatus, expected: tuple[Refusal, ...]) -> None:
    assert refusals(ready(merge_state_status=status)) == expected


@pytest.mark.parametrize("connection", ["labels", "reviews", "checks"])
def test_a_truncated_snapshot_refuses(connection: str) -> None:
    assert refusals(ready(truncated=(connection,))) == (Refusal.TRUNCATED,)


# ----------------------------------------------------------------------------- values we do not know

UNKNOWN = Unrecognized("field", "SOMETHING_NEW")


@pytest.mark.parametrize(
    "changes",
    [
        {"state": UNKNOWN},
        {"rollup_state": UNKNOWN},
        {"checks": (CheckRun("ci", UNKNOWN, None),)},
        {"checks": (CheckRun("ci", CheckStatus.COMPLETED, UNKNOWN),)},
        {"checks": (CommitStatus("ci", UNKNOWN),)},
        {"mergeable": UNKNOWN},
        {"merge_state_status": UNKNOWN},
        {"review_decision": UNKNOWN},
        {"review_decision": None, "latest_reviews": (by_writer(UNKNOWN),)},
    ],
    ids=lambda c: ",".join(c),
)
def test_an_unknown_enum_value_is_a_refusal_never_a_pass(changes: dict[str, Any]) -> None:
    pull = ready(**changes)
    assert refusals(pull) == (Refusal.UNRECOGNIZED,)
    assert UNKNOWN in pull.unrecognized()


# --------------------------------------------------------------------------------- several at once


def test_every_reason_is_listed_and_the_headline_comes_first() -> None:
    pull = ready(
        is_draft=True,
        labels=("do-not-merge",),
        review_decision=ReviewDecision.REVIEW_REQUIRED,
        rollup_state=StatusState.PENDING,
        mergeable=Mergeable.CONFLICTING,
        merge_state_status=MergeStateStatus.DIRTY,
    )
    decision = decide(pull, POLICY)
    assert not decision.eligible
    assert decision.refusals == (
        Refusal.DRAFT,
        Refusal.BLOCKED_BY_LABEL,
        Refusal.NOT_APPROVED,
        Refusal.CHECKS_PENDING,
        Refusal.CONFLICTING,  # once, though mergeable and merge state both say so
    )
    assert decision.reason == "draft"


def test_the_tables_cover_every_value_githubs_schema_defines(schema: Any) -> None:
    def values(name: str) -> set[str]:
        enum = schema.type_map[name]
        assert isinstance(enum, GraphQLEnumType)
        return set(enum.values)

    tables: list[tuple[str, set[str]]] = [
        ("PullRequestState", {s.value for s in STATE}),
        ("PullRequestReviewDecision", {d.value for d in DECISION}),
        ("StatusState", {s.value for s in ROLLUP}),
        ("CheckStatusState", {s.value for s in CHECK_STATUS}),
        ("CheckConclusionState", {c.value for c in CONCLUSION}),
        ("MergeableState", {m.value for m in MERGEABLE}),
        ("MergeStateStatus", {m.value for m in MERGE_STATE}),
        ("PullRequestReviewState", {r.value for r in ReviewState}),
    ]
    for name, covered in tables:
        assert covered == values(name), name


# ----------------------------------------------------------------------------------------------- plan


def test_plan_merges_oldest_first_and_caps_the_cycle() -> None:
    pulls = [
        ready(number=5, created_at=T0 + timedelta(hours=3)),
        ready(number=2, created_at=T0 + timedelta(hours=1)),
        ready(number=9, created_at=T0),
        ready(number=7, created_at=T0 + timedelta(hours=2), is_draft=True),
    ]
    plan = plan_merges(pulls, POLICY, max_per_cycle=2)
    assert [p.number for p in plan.to_merge] == [9, 2]
    assert [p.number for p in plan.over_limit] == [5]
    assert [(p.number, d.refusals) for p, d in plan.refused] == [(7, (Refusal.DRAFT,))]
    assert [p.number for p in plan.considered] == [9, 2, 7, 5]
    assert plan.open == 4


def test_review_queue_and_conflicting_counts() -> None:
    pulls = [
        ready(number=1, review_decision=ReviewDecision.REVIEW_REQUIRED),  # awaiting
        ready(number=2, review_decision=None, latest_reviews=()),  # awaiting: nobody reviewed
        ready(number=3, review_decision=ReviewDecision.REVIEW_REQUIRED, is_draft=True),  # drafts do not queue
        ready(number=4, review_decision=ReviewDecision.CHANGES_REQUESTED),  # back with the author
        ready(number=5, mergeable=Mergeable.CONFLICTING),
        ready(number=6, mergeable=Mergeable.CONFLICTING, is_draft=True),
        ready(number=7),
    ]
    plan = plan_merges(pulls, POLICY, max_per_cycle=50)
    assert plan.review_queue == 2
    assert plan.conflicting == 2
    assert [p.number for p in plan.to_merge] == [7]


def test_plan_rejects_a_cap_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_merges([], POLICY, max_per_cycle=0)


def test_commit_title_names_the_pull_request() -> None:
    assert commit_title(ready(number=42, title="Fix login")) == "Fix login (#42)"


# ------------------------------------------------------------------------ the query and its answers


@pytest.mark.parametrize("query", [OPEN_PULLS_QUERY, PULL_BEFORE_MERGE_QUERY], ids=["listing", "before-merge"])
def test_the_queries_validate_against_githubs_schema(schema: Any, query: str) -> None:
    assert validate(schema, parse(query)) == []


def test_the_schema_check_can_fail(schema: Any) -> None:
    wrong = OPEN_PULLS_QUERY.replace("mergeStateStatus", "mergeStatus")
    assert validate(schema, parse(wrong)) != []


def test_both_reads_select_the_same_fields_through_one_fragment() -> None:
    for query in (OPEN_PULLS_QUERY, PULL_BEFORE_MERGE_QUERY):
        assert query.count("...MergeFacts") == 1 and query.endswith(MERGE_FACTS_FRAGMENT)


def node(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "PR_kwDOAbc12",
        "number": 12,
        "title": "Add a thing",
        "createdAt": "2026-01-01T00:00:00Z",
        "isDraft": False,
        "state": "OPEN",
        "baseRefName": "main",
        "headRefOid": HEAD,
        "mergeable": "MERGEABLE",
        "mergeStateStatus": "CLEAN",
        "reviewDecision": None,
        "isMergeQueueEnabled": False,
        "isInMergeQueue": False,
        "mergeQueueEntry": None,
        "labels": {"pageInfo": {"hasNextPage": False}, "nodes": [{"name": "bug"}]},
        "latestOpinionatedReviews": {
            "pageInfo": {"hasNextPage": False},
            "nodes": [{"state": "APPROVED", "authorCanPushToRepository": True, "submittedAt": "2026-01-01T01:00:00Z"}],
        },
        "commits": {
            "nodes": [
                {
                    "commit": {
                        "oid": HEAD,
                        "statusCheckRollup": {
                            "state": "SUCCESS",
                            "contexts": {
                                "pageInfo": {"hasNextPage": False},
                                "nodes": [
                                    {"__typename": "CheckRun", "name": "ci", "status": "COMPLETED",
                                     "conclusion": "SUCCESS"},
                                    {"__typename": "StatusContext", "context": "legacy", "state": "SUCCESS"},
                                ],
                            },
                        },
                    }
                }
            ]
        },
    }
    body.update(changes)
    return body


def test_a_node_becomes_a_snapshot() -> None:
    pull = snapshot_from_node(node())
    assert pull == ready(
        number=12,
        node_id="PR_kwDOAbc12",
        labels=("bug",),
        review_decision=None,
        latest_reviews=(Review(ReviewState.APPROVED, author_can_push=True, submitted_at=T0 + timedelta(hours=1)),),
        checks=(
            CheckRun("ci", CheckStatus.COMPLETED, CheckConclusion.SUCCESS),
            CommitStatus("legacy", StatusState.SUCCESS),
        ),
    )
    assert decide(pull, POLICY).eligible


def test_a_node_without_a_rollup_has_nothing_reported() -> None:
    pull = snapshot_from_node(node(commits={"nodes": [{"commit": {"oid": HEAD, "statusCheckRollup": None}}]}))
    assert pull.rollup_state is None
    assert refusals(pull) == (Refusal.NO_CHECKS,)


def test_unknown_enum_values_in_a_node_are_kept_as_unrecognized() -> None:
    pull = snapshot_from_node(node(mergeable="PROBABLY"))
    assert pull.mergeable == Unrecognized("mergeable", "PROBABLY")
    assert refusals(pull) == (Refusal.UNRECOGNIZED,)


def test_more_labels_than_one_page_is_truncated() -> None:
    pull = snapshot_from_node(node(labels={"pageInfo": {"hasNextPage": True}, "nodes": []}))
    assert pull.truncated == ("labels",)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"headRefOid": None}, r"pr\.headRefOid should be a string, got null"),
        ({"isDraft": "no"}, r"pr\.isDraft should be true or false, got str"),
        ({"number": "12"}, r"pr\.number should be a whole number"),
        ({"createdAt": "yesterday"}, r"pr\.createdAt should be an ISO 8601 time"),
        ({"labels": None}, r"pr\.labels should be an object, got null"),
        ({"commits": {"nodes": [{"commit": {"oid": HEAD, "statusCheckRollup": {"state": "SUCCESS"}}}]}}, "contexts"),
    ],
)
def test_a_malformed_node_is_a_clear_error(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedAnswer, match=message):
        snapshot_from_node(node(**changes), "pr")


# ----------------------------------------------------------------------------- merge queue and up-to-date


BEHIND = {"merge_state_status": MergeStateStatus.BEHIND}
PENDING = (CheckRun("ci", CheckStatus.IN_PROGRESS, None),)

# Behind its base and something else: never brought up to date.
NOT_UPDATED = {
    "draft": ready(number=2, is_draft=True, **BEHIND),
    "conflicting": ready(number=2, mergeable=Mergeable.CONFLICTING, **BEHIND),
    "failing": ready(number=2, rollup_state=StatusState.FAILURE,
                     checks=(CheckRun("ci", CheckStatus.COMPLETED, CheckConclusion.FAILURE),), **BEHIND),
    "unapproved": ready(number=2, review_decision=ReviewDecision.REVIEW_REQUIRED, latest_reviews=(), **BEHIND),
    "changes requested": ready(number=2, review_decision=ReviewDecision.CHANGES_REQUESTED, **BEHIND),
    "labelled": ready(number=2, labels=("do-not-merge",), **BEHIND),
}


@pytest.mark.parametrize("kind", list(NOT_UPDATED))
def test_only_a_pull_request_eligible_but_for_being_behind_is_brought_up_to_date(kind: str) -> None:
    plan = plan_merges([NOT_UPDATED[kind]], POLICY, 40, updates_per_cycle=5)
    assert plan.to_update == () and len(plan.refused) == 1


def approved(number: int, at_hour: int, **changes: Any) -> PullSnapshot:
    review = Review(ReviewState.APPROVED, author_can_push=True, submitted_at=T0 + timedelta(hours=at_hour))
    return ready(number=number, created_at=T0 + timedelta(minutes=number), latest_reviews=(review,), **changes)


def test_updates_go_oldest_approval_first_at_most_the_cycles_number() -> None:
    pulls = [approved(1, 5, **BEHIND), approved(2, 1, **BEHIND), approved(3, 3, **BEHIND)]
    assert [p.number for p in plan_merges(pulls, POLICY, 40, updates_per_cycle=1).to_update] == [2]
    assert [p.number for p in plan_merges(pulls, POLICY, 40, updates_per_cycle=2).to_update] == [2, 3]
    assert plan_merges(pulls, POLICY, 40).to_update == ()  # the default: never
    refused = plan_merges(pulls, POLICY, 40, updates_per_cycle=1).refused
    assert [(p.number, d.reason) for p, d in refused] == [(1, "behind the base branch"), (3, "behind the base branch")]


def test_no_update_while_an_up_to_date_pull_request_waits_for_its_checks() -> None:
    in_flight = approved(9, 0, rollup_state=StatusState.PENDING, checks=PENDING,
                         merge_state_status=MergeStateStatus.BLOCKED)
    behind = approved(1, 1, **BEHIND)
    assert plan_merges([behind, in_flight], POLICY, 40, updates_per_cycle=1).to_update == ()
    assert [p.number for p in plan_merges([behind, in_flight], POLICY, 40, updates_per_cycle=2).to_update] == [1]
    # A pending pull request nobody approved is not in flight: it would not merge next.
    unapproved = replace(in_flight, review_decision=ReviewDecision.REVIEW_REQUIRED, latest_reviews=())
    assert [p.number for p in plan_merges([behind, unapproved], POLICY, 40, updates_per_cycle=1).to_update] == [1]


def test_on_a_queue_branch_being_behind_does_not_matter_the_queue_tests_the_merged_result() -> None:
    assert refusals(ready(merge_queue_enabled=True, **BEHIND)) == ()
    assert refusals(ready(**BEHIND)) == (Refusal.BEHIND,)


def test_pull_requests_already_in_the_queue_are_left_to_it() -> None:
    entry = QueueEntry(MergeQueueEntryState.QUEUED, 2)
    queued = ready(number=1, merge_queue_enabled=True, in_merge_queue=True, queue_entry=entry)
    fresh = ready(number=2, merge_queue_enabled=True)
    plan = plan_merges([queued, fresh], POLICY, 40)
    assert plan.in_queue == (queued,) and plan.to_merge == (fresh,)
    assert plan.considered == (queued, fresh)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (QueueEntry(MergeQueueEntryState.AWAITING_CHECKS, 1),
         (MergeOutcome.QUEUED, "in the merge queue (AWAITING_CHECKS, position 1)")),
        (QueueEntry(MergeQueueEntryState.MERGEABLE, 3),
         (MergeOutcome.QUEUED, "in the merge queue (MERGEABLE, position 3)")),
        (QueueEntry(MergeQueueEntryState.UNMERGEABLE, 2), (MergeOutcome.QUEUE_FAILED, "merge queue entry unmergeable")),
        (None, (MergeOutcome.QUEUED, "in the merge queue")),
    ],
)
def test_a_queue_entry_is_reported_with_its_state(entry: QueueEntry | None, expected: tuple[MergeOutcome, str]) -> None:
    assert queue_reason(ready(in_merge_queue=True, queue_entry=entry)) == expected


def test_a_queue_entry_in_a_node_is_read() -> None:
    pull = snapshot_from_node(node(isMergeQueueEnabled=True, isInMergeQueue=True,
                                   mergeQueueEntry={"state": "LOCKED", "position": 4}))
    assert (pull.merge_queue_enabled, pull.in_merge_queue) == (True, True)
    assert pull.queue_entry == QueueEntry(MergeQueueEntryState.LOCKED, 4)
    odd = snapshot_from_node(node(isInMergeQueue=True, mergeQueueEntry={"state": "SIDEWAYS", "position": 1}))
    assert odd.unrecognized() == (Unrecognized("MergeQueueEntry.state", "SIDEWAYS"),)


# ------------------------------------------------------------------------------------ partial answers

CONTEXTS = ("commits", "nodes", 0, "commit", "statusCheckRollup", "contexts", "nodes")
PAT_DENIED = "Resource not accessible by personal access token"


def hidden_check_run(**changes: Any) -> dict[str, Any]:
    """The node as GitHub shows it to a fine-grained token: the check run null, the status readable."""
    body = node(**changes)
    body["commits"]["nodes"][0]["commit"]["statusCheckRollup"]["contexts"]["nodes"][0] = None
    return body


def test_a_check_run_github_hid_makes_the_pull_request_unreadable_with_the_fix() -> None:
    pull = snapshot_from_node(hidden_check_run(), "pr", [PathError((*CONTEXTS, 0), PAT_DENIED)])
    assert pull.checks == (CommitStatus("legacy", StatusState.SUCCESS),)
    assert pull.unreadable == (Unreadable("checks", PAT_DENIED),)
    decision = decide(pull, POLICY)
    assert decision.refusals == (Refusal.UNREADABLE,)
    assert decision.reason == f"checks unreadable: {PAT_DENIED}: give the token checks read, or use a GitHub App"


def test_a_null_check_without_an_error_at_its_path_is_still_malformed() -> None:
    with pytest.raises(MalformedAnswer, match=r"contexts\.nodes\[0\] should be an object, got null"):
        snapshot_from_node(hidden_check_run(), "pr")
    # With an error elsewhere in it, the pull request is refused as unreadable all the same, never merged.
    pull = snapshot_from_node(hidden_check_run(), "pr", [PathError(("labels", "nodes", 0), PAT_DENIED)])
    assert decide(pull, POLICY).refusals[0] is Refusal.UNREADABLE


@pytest.mark.parametrize(
    ("changes", "error_path", "part"),
    [
        ({"mergeable": None}, ("mergeable",), "mergeable"),
        ({"labels": None}, ("labels",), "labels"),
        ({"latestOpinionatedReviews": None}, ("latestOpinionatedReviews",), "reviews"),
        ({"title": None, "createdAt": None}, ("title",), "title"),
    ],
)
def test_a_hidden_field_the_rules_need_still_names_the_pull_request_and_refuses_it(
    changes: dict[str, Any], error_path: tuple[str, ...], part: str
) -> None:
    pull = snapshot_from_node(node(**changes), "pr", [PathError(error_path, "Resource not accessible by integration")])
    assert pull.number == 12
    assert decide(pull, POLICY).refusals[0] is Refusal.UNREADABLE
    assert decide(pull, POLICY).reason.startswith(f"{part} unreadable: Resource not accessible by integration: ")


def test_the_answers_errors_are_taken_relative_to_each_pull_request() -> None:
    answer = GraphQLAnswer({}, (
        PathError(("repository", "pullRequests", "nodes", 1, *CONTEXTS, 0), PAT_DENIED),
        PathError(("repository", "pullRequests", "nodes", 1, *CONTEXTS, 2), PAT_DENIED),
    ))
    assert answer.inside(("repository", "pullRequests", "nodes", 0)) == ()
    assert answer.inside(("repository", "pullRequests", "nodes", 1)) == (
        PathError((*CONTEXTS, 0), PAT_DENIED), PathError((*CONTEXTS, 2), PAT_DENIED))

"""The local GitHub of the tests, proved over real HTTP with requests and PyGithub."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from github import Auth, BadCredentialsException, Github, GithubException

from tests.fakes.github import FakeGitHub

PULL_FIELDS = """
  id number title isDraft state merged headRefOid headRefName baseRefName createdAt url author { login }
  labels(first: 20) { nodes { name } }
  mergeable mergeStateStatus reviewDecision
  latestOpinionatedReviews(first: 20) { nodes { state author { login } } }
  commits(last: 1) { nodes { commit { oid statusCheckRollup { state contexts(first: 50) { nodes {
    __typename ... on CheckRun { name status conclusion } ... on StatusContext { context state } } } } } } }
"""
OPEN_PULLS = f"""
query($owner: String!, $name: String!, $after: String) {{
  rateLimit {{ cost limit remaining used resetAt }}
  repository(owner: $owner, name: $name) {{
    id name defaultBranchRef {{ name }}
    pullRequests(states: OPEN, first: 100, after: $after, orderBy: {{field: CREATED_AT, direction: ASC}}) {{
      totalCount pageInfo {{ hasNextPage endCursor }} nodes {{ {PULL_FIELDS} }}
    }}
  }}
}}"""
ONE_PULL = f"""
query($owner: String!, $name: String!, $number: Int!) {{
  repository(owner: $owner, name: $name) {{ pullRequest(number: $number) {{ {PULL_FIELDS} }} }}
}}"""
MERGE = """
mutation($id: ID!, $oid: GitObjectID, $headline: String) {
  mergePullRequest(input: {pullRequestId: $id, expectedHeadOid: $oid, mergeMethod: SQUASH, commitHeadline: $headline}) {
    pullRequest { number state merged mergeCommit { oid } }
  }
}"""


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake
        assert fake.server_errors == []


def auth(fake: FakeGitHub) -> dict[str, str]:
    return {"Authorization": f"token {fake.token}"}


def rest(fake: FakeGitHub, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, fake.api_url + path, headers=auth(fake), timeout=10, **kwargs)


def graphql(fake: FakeGitHub, query: str, **variables: Any) -> dict[str, Any]:
    answer = requests.post(fake.graphql_url, json={"query": query, "variables": variables}, headers=auth(fake),
                           timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def in_repo(selection: str) -> str:
    return '{ repository(owner: "acme", name: "webapp") { ' + selection + " } }"


def pull_view(fake: FakeGitHub, number: int) -> dict[str, Any]:
    body = graphql(fake, ONE_PULL, owner=fake.owner, name=fake.name, number=number)
    assert "errors" not in body, body
    view: dict[str, Any] = body["data"]["repository"]["pullRequest"]
    return view


def client(fake: FakeGitHub, token: str | None = None) -> Github:
    return Github(auth=Auth.Token(token or fake.token), base_url=fake.api_url, per_page=100, retry=None,
                  seconds_between_requests=0, seconds_between_writes=0)


# ------------------------------------------------------------------------------------------- auth and rate limits


def test_requests_without_the_right_token_get_401_and_the_token_never_comes_back(gh: FakeGitHub) -> None:
    missing = requests.get(gh.api_url + "/repos/acme/webapp", timeout=10)
    wrong = requests.get(gh.api_url + "/repos/acme/webapp", headers={"Authorization": "token nope"}, timeout=10)
    graph = requests.post(gh.graphql_url, json={"query": "{ viewer { login } }"},
                          headers={"Authorization": "bearer nope"}, timeout=10)
    assert (missing.status_code, wrong.status_code, graph.status_code) == (401, 401, 401)
    assert wrong.json()["message"] == graph.json()["message"] == "Bad credentials"
    bearer = requests.get(gh.api_url + "/repos/acme/webapp", headers={"Authorization": f"Bearer {gh.token}"},
                          timeout=10)
    assert bearer.status_code == 200 and bearer.json()["full_name"] == "acme/webapp"
    with pytest.raises(BadCredentialsException):
        client(gh, token="wrong").get_repo(gh.repository)
    for answer in (missing, wrong, graph, bearer):
        assert gh.token not in answer.text and gh.token not in str(answer.headers)


def test_every_answer_carries_rate_limit_headers_counting_down(gh: FakeGitHub) -> None:
    first = rest(gh, "GET", "/repos/acme/webapp")
    second = rest(gh, "GET", "/repos/acme/webapp/pulls")
    missing = rest(gh, "GET", "/repos/acme/webapp/nothing-here")
    assert missing.status_code == 404 and missing.json()["message"] == "Not Found"
    assert [int(a.headers["x-ratelimit-remaining"]) for a in (first, second, missing)] == [4999, 4998, 4997]
    assert first.headers["x-ratelimit-limit"] == "5000" and second.headers["x-ratelimit-used"] == "2"
    assert int(first.headers["x-ratelimit-reset"]) > time.time()
    assert rest(gh, "GET", "/repos/other/repo").status_code == 404


def test_a_spent_budget_refuses_rest_with_403_and_graphql_with_rate_limited(gh: FakeGitHub) -> None:
    gh.rate_limit(1, reset_in_s=30)
    assert rest(gh, "GET", "/repos/acme/webapp").headers["x-ratelimit-remaining"] == "0"
    refused = rest(gh, "GET", "/repos/acme/webapp")
    assert refused.status_code == 403 and "rate limit" in refused.json()["message"]
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) == pytest.approx(time.time() + 30, abs=2)
    assert graphql(gh, "{ rateLimit { remaining } }")["data"]["rateLimit"]["remaining"] == 0  # its own budget
    body = graphql(gh, "{ rateLimit { remaining } }")
    assert body["errors"][0]["type"] == "RATE_LIMITED" and "data" not in body
    limits = rest(gh, "GET", "/rate_limit").json()  # does not count, as on GitHub
    assert limits["resources"]["core"]["remaining"] == limits["resources"]["graphql"]["remaining"] == 0
    gh.rate_limit(0, reset_in_s=-1)  # the reset time has passed: the budget refills
    assert rest(gh, "GET", "/repos/acme/webapp").headers["x-ratelimit-remaining"] == "4999"
    assert graphql(gh, "{ rateLimit { remaining limit cost } }")["data"]["rateLimit"] == {
        "remaining": 4999, "limit": 5000, "cost": 1}


# --------------------------------------------------------------------------------------------------- pagination


def test_rest_pagination_past_100_with_link_headers(gh: FakeGitHub) -> None:
    for i in range(150):
        gh.add_pull(f"change {i}")
    gh.close(7)
    page = rest(gh, "GET", "/repos/acme/webapp/pulls", params={"state": "open", "per_page": 100})
    assert len(page.json()) == 100 and 'rel="next"' in page.headers["link"]
    assert "mergeable" not in page.json()[0]  # list items do not carry it
    pulls = list(client(gh).get_repo(gh.repository).get_pulls(state="open"))
    assert len(pulls) == 149 and 7 not in {p.number for p in pulls}
    assert gh.calls("GET", "/pulls?") == 3  # ours, then PyGithub's two pages


def test_graphql_pagination_past_100_and_its_limits(gh: FakeGitHub) -> None:
    for i in range(150):
        gh.add_pull(f"change {i}")
    first = graphql(gh, OPEN_PULLS, owner="acme", name="webapp")["data"]["repository"]["pullRequests"]
    assert first["totalCount"] == 150 and len(first["nodes"]) == 100 and first["pageInfo"]["hasNextPage"]
    gh.close(3)  # gone between pages: keyset cursors skip nothing
    after = first["pageInfo"]["endCursor"]
    second = graphql(gh, OPEN_PULLS, owner="acme", name="webapp", after=after)["data"]["repository"]["pullRequests"]
    assert [n["number"] for n in second["nodes"]] == list(range(101, 151)) and not second["pageInfo"]["hasNextPage"]

    too_many = graphql(gh, in_repo("pullRequests(first: 101) { nodes { id } }"))
    assert too_many["errors"][0]["type"] == "EXCESSIVE_PAGINATION" and "data" not in too_many
    assert "exceeds the `first` limit of 100" in too_many["errors"][0]["message"]
    unbounded = graphql(gh, in_repo("pullRequests { nodes { id } }"))
    assert unbounded["errors"][0]["type"] == "MISSING_PAGINATION_BOUNDARIES"
    count = graphql(gh, in_repo("pullRequests(states: OPEN) { totalCount }"))
    assert count["data"]["repository"]["pullRequests"]["totalCount"] == 149


# ------------------------------------------------------------------------------------------- schema validation


def test_documents_are_validated_against_github_schema(gh: FakeGitHub) -> None:
    unknown = graphql(gh, in_repo("pullRequest(number: 1) { approved }"))
    assert "data" not in unknown
    assert unknown["errors"][0]["message"] == "Field 'approved' doesn't exist on type 'PullRequest'"
    syntax = graphql(gh, "{ repository(owner: ")
    assert "Syntax Error" in syntax["errors"][0]["message"]
    wrong_enum = graphql(gh, in_repo("pullRequests(states: APPROVED, first: 1) { totalCount }"))
    assert wrong_enum["errors"] and "data" not in wrong_enum
    missing = graphql(gh, in_repo("pullRequest(number: 9) { number }"))
    assert missing["data"]["repository"]["pullRequest"] is None and missing["errors"][0]["type"] == "NOT_FOUND"
    with pytest.raises(GithubException):
        client(gh).requester.graphql_query("{ viewer { notAField } }", {})
    _, body = client(gh).requester.graphql_query("{ viewer { login } }", {})
    assert body["data"]["viewer"]["login"]
    assert gh.graphql_documents[-1] == "{ viewer { login } }"


# --------------------------------------------------------------------------------------------------- derivations


def test_review_decision_counts_each_reviewers_latest_opinion(gh: FakeGitHub) -> None:
    def decision(number: int) -> tuple[str | None, list[tuple[str, str]]]:
        view = pull_view(gh, number)
        reviews = [(r["author"]["login"], r["state"]) for r in view["latestOpinionatedReviews"]["nodes"]]
        return view["reviewDecision"], sorted(reviews)

    nobody, approved, mixed, changed_mind, commented, dismissed = (gh.add_pull().number for _ in range(6))
    gh.approve(approved)
    gh.approve(mixed, "alice")
    gh.request_changes(mixed, "bob")
    gh.request_changes(changed_mind, "bob")
    gh.approve(changed_mind, "bob")
    gh.approve(commented, "alice")
    gh.comment_review(commented, "alice")
    gh.approve(dismissed, "alice")
    gh.dismiss_review(dismissed, "alice")
    assert decision(nobody) == ("REVIEW_REQUIRED", [])
    assert decision(approved) == ("APPROVED", [("alice", "APPROVED")])
    assert decision(mixed) == ("CHANGES_REQUESTED", [("alice", "APPROVED"), ("bob", "CHANGES_REQUESTED")])
    assert decision(changed_mind) == ("APPROVED", [("bob", "APPROVED")])
    assert decision(commented) == ("APPROVED", [("alice", "APPROVED")])
    assert decision(dismissed) == ("REVIEW_REQUIRED", [])
    states = [r["state"] for r in rest(gh, "GET", f"/repos/acme/webapp/pulls/{commented}/reviews").json()]
    assert states == ["APPROVED", "COMMENTED"]

    gh.require_review = False  # no review required: null, never "approved"
    assert decision(nobody) == (None, [])
    assert decision(approved) == (None, [("alice", "APPROVED")])


@pytest.mark.parametrize(
    ("checks", "statuses", "expected"),
    [
        ([], [], None),
        ([("ci", "completed", "success"), ("lint", "completed", "neutral"), ("docs", "completed", "skipped")], [],
         "SUCCESS"),
        ([("ci", "completed", "success"), ("e2e", "completed", "timed_out")], [], "FAILURE"),
        ([("ci", "completed", "success")], [("deploy", "error")], "ERROR"),
        ([("ci", "in_progress", None)], [("deploy", "success")], "PENDING"),
        ([], [("deploy", "pending")], "PENDING"),
        ([("lint", "completed", "success")], [], "EXPECTED"),  # the required "ci" has not reported
        ([("ci", "completed", "failure"), ("ci", "completed", "success")], [], "SUCCESS"),  # a re-run supersedes
    ],
)
def test_status_check_rollup(checks: list[tuple[str, str, str | None]], statuses: list[tuple[str, str]],
                             expected: str | None) -> None:
    with FakeGitHub(required_checks=("ci",)) as gh:
        pr = gh.add_pull()
        for name, status, conclusion in checks:
            gh.add_check_run(pr.number, name, status, conclusion)
        for context, state in statuses:
            gh.add_status(pr.number, context, state)
        commit = pull_view(gh, pr.number)["commits"]["nodes"][0]["commit"]
        assert commit["oid"] == pr.head_sha
        rollup = commit["statusCheckRollup"]
        assert (rollup and rollup["state"]) == expected
        if rollup:
            names = {c.get("name") or c.get("context") for c in rollup["contexts"]["nodes"]}
            assert names == {name for name, *_ in checks} | {context for context, _ in statuses}
        combined = rest(gh, "GET", f"/repos/acme/webapp/commits/{pr.head_sha}/status").json()
        assert combined["total_count"] == len(statuses)
        runs = rest(gh, "GET", f"/repos/acme/webapp/commits/{pr.head_ref}/check-runs").json()
        assert {r["name"] for r in runs["check_runs"]} == {name for name, *_ in checks}


def test_a_fine_grained_token_reads_every_check_run_as_null_with_a_forbidden_error_at_its_path(
    gh: FakeGitHub,
) -> None:
    pr = gh.add_pull()
    gh.add_check_run(pr.number, "ci")
    gh.add_status(pr.number, "deploy")
    gh.add_check_run(pr.number, "lint")
    gh.fine_grained.add(gh.token)
    body = graphql(gh, ONE_PULL, owner=gh.owner, name=gh.name, number=pr.number)
    rollup = body["data"]["repository"]["pullRequest"]["commits"]["nodes"][0]["commit"]["statusCheckRollup"]
    assert rollup["state"] == "SUCCESS"  # the rollup itself stays readable, as on GitHub
    assert rollup["contexts"]["nodes"] == [None, None, {"__typename": "StatusContext", "context": "deploy",
                                                        "state": "SUCCESS"}]
    prefix = ["repository", "pullRequest", "commits", "nodes", 0, "commit", "statusCheckRollup", "contexts", "nodes"]
    assert [(e["type"], e["message"], e["path"]) for e in body["errors"]] == [
        ("FORBIDDEN", "Resource not accessible by personal access token", [*prefix, index]) for index in (0, 1)
    ]
    gh.fine_grained.clear()  # a classic token reads them all
    assert "errors" not in graphql(gh, ONE_PULL, owner=gh.owner, name=gh.name, number=pr.number)


def test_merge_state_status_and_rest_mergeable() -> None:
    with FakeGitHub(required_checks=("ci",)) as gh:
        def ready(**kwargs: Any) -> int:
            number = gh.add_pull(**kwargs).number
            gh.approve(number)
            gh.add_check_run(number, "ci")
            return number

        clean, draft, dirty, unknown, unstable = ready(), ready(draft=True), ready(mergeable="CONFLICTING"), \
            ready(mergeable="UNKNOWN"), ready()
        gh.add_status(unstable, "optional", "failure")
        unapproved = gh.add_pull().number
        gh.add_check_run(unapproved, "ci")
        red = ready()
        gh.add_check_run(red, "ci", conclusion="failure")
        expected = {clean: ("CLEAN", True), draft: ("DRAFT", True), dirty: ("DIRTY", False),
                    unknown: ("UNKNOWN", None), unstable: ("UNSTABLE", True), unapproved: ("BLOCKED", True),
                    red: ("BLOCKED", True)}
        for number, (state, mergeable) in expected.items():
            assert pull_view(gh, number)["mergeStateStatus"] == state
            detail = rest(gh, "GET", f"/repos/acme/webapp/pulls/{number}").json()
            assert (detail["mergeable_state"], detail["mergeable"]) == (state.lower(), mergeable)


# ------------------------------------------------------------------------------------------------------- merging


def ready_pull(gh: FakeGitHub, title: str = "Add login") -> int:
    number = gh.add_pull(title).number
    gh.approve(number)
    gh.add_check_run(number, "ci")
    return number


def test_rest_merge_squashes_with_the_pinned_head_and_records_the_title(gh: FakeGitHub) -> None:
    number = ready_pull(gh)
    head = gh.pull(number).head_sha
    pull = client(gh).get_repo(gh.repository).get_pull(number)
    status = pull.merge(commit_title="Add login (#1)", commit_message="", merge_method="squash", sha=head)
    assert status.merged and status.sha == gh.pull(number).merge_commit_sha
    merged = gh.pull(number)
    assert (merged.merged, merged.state, merged.merged_title, merged.merge_method) == (
        True, "closed", "Add login (#1)", "squash")
    detail = rest(gh, "GET", f"/repos/acme/webapp/pulls/{number}").json()
    assert detail["merged"] and detail["state"] == "closed" and detail["merge_commit_sha"] == merged.merge_commit_sha
    again = rest(gh, "PUT", f"/repos/acme/webapp/pulls/{number}/merge", json={"merge_method": "squash"})
    assert again.status_code == 405 and again.json()["message"] == "Pull Request is not mergeable"


def test_rest_merge_refusals() -> None:
    with FakeGitHub(allow_merge_commit=False, required_checks=("ci",)) as gh:
        def merge(number: int, **body: Any) -> requests.Response:
            return rest(gh, "PUT", f"/repos/acme/webapp/pulls/{number}/merge", json={"merge_method": "squash", **body})

        stale = ready_pull(gh)
        answer = merge(stale, sha="0" * 40)
        assert answer.status_code == 409
        assert answer.json()["message"] == "Head branch was modified. Review and try the merge again."
        assert rest(gh, "PUT", f"/repos/acme/webapp/pulls/{stale}/merge", json={}).status_code == 405  # merge commit
        draft = ready_pull(gh)
        gh.set_draft(draft)
        conflicting = ready_pull(gh)
        gh.set_mergeable(conflicting, "CONFLICTING")
        unapproved = gh.add_pull().number
        gh.add_check_run(unapproved, "ci")
        unchecked = gh.add_pull().number
        gh.approve(unchecked)
        for number in (draft, conflicting, unapproved, unchecked):
            assert merge(number).status_code == 405
        assert 'Required status check "ci" is expected.' in merge(unchecked).json()["message"]
        assert merge(99).status_code == 404
        assert merge(stale, merge_method="fast-forward").status_code == 422
        assert not any(p.merged for p in gh.pulls)


def test_a_push_between_evaluation_and_merge_fails_the_pinned_merge(gh: FakeGitHub) -> None:
    number = ready_pull(gh)
    seen = gh.pull(number).head_sha
    gh.on_merge = gh.push
    answer = rest(gh, "PUT", f"/repos/acme/webapp/pulls/{number}/merge", json={"merge_method": "squash", "sha": seen})
    assert answer.status_code == 409 and not gh.pull(number).merged


def test_a_change_after_a_query_lands_after_its_answer_and_before_the_next_request(gh: FakeGitHub) -> None:
    number = ready_pull(gh)
    names: list[str | None] = []

    def label_once(operation: str | None) -> None:
        names.append(operation)
        if len(names) == 1:
            gh.add_label(number, "do-not-merge")

    gh.after_query = label_once
    named = "query Labels($owner: String!, $name: String!, $number: Int!) " + ONE_PULL.split(")", 1)[1]
    before = graphql(gh, named, owner=gh.owner, name=gh.name, number=number)["data"]["repository"]["pullRequest"]
    after = pull_view(gh, number)
    assert [label["name"] for label in before["labels"]["nodes"]] == []
    assert [label["name"] for label in after["labels"]["nodes"]] == ["do-not-merge"]
    assert names == ["Labels", None]  # the operation's name; None for an unnamed one


def test_push_dismisses_stale_approvals_and_leaves_checks_on_the_old_head(gh: FakeGitHub) -> None:
    number = ready_pull(gh)
    old = gh.pull(number).head_sha
    new = gh.push(number)
    view = pull_view(gh, number)
    assert view["headRefOid"] == new != old
    assert view["reviewDecision"] == "REVIEW_REQUIRED" and view["mergeStateStatus"] == "BLOCKED"
    assert view["commits"]["nodes"][0]["commit"]["statusCheckRollup"] is None
    assert rest(gh, "GET", f"/repos/acme/webapp/commits/{old}/check-runs").json()["total_count"] == 1
    states = [r["state"] for r in rest(gh, "GET", f"/repos/acme/webapp/pulls/{number}/reviews").json()]
    assert states == ["DISMISSED"]
    with FakeGitHub(dismiss_stale_reviews=False) as keep:
        kept = ready_pull(keep)
        keep.push(kept)
        assert pull_view(keep, kept)["reviewDecision"] == "APPROVED"


def test_graphql_merge_mutation_pins_the_head(gh: FakeGitHub) -> None:
    number = ready_pull(gh)
    node_id = rest(gh, "GET", f"/repos/acme/webapp/pulls/{number}").json()["node_id"]
    assert graphql(gh, "query($id: ID!) { node(id: $id) { ... on PullRequest { number } } }", id=node_id)["data"] == {
        "node": {"number": number}}
    refused = graphql(gh, MERGE, id=node_id, oid="0" * 40)
    assert refused["data"]["mergePullRequest"] is None
    assert refused["errors"][0]["message"] == "Head branch was modified. Review and try the merge again."
    assert not gh.pull(number).merged
    done = graphql(gh, MERGE, id=node_id, oid=gh.pull(number).head_sha, headline="Add login (#1)")
    assert "errors" not in done
    assert done["data"]["mergePullRequest"]["pullRequest"] == {
        "number": number, "state": "MERGED", "merged": True, "mergeCommit": {"oid": gh.pull(number).merge_commit_sha}}
    assert gh.pull(number).merged_title == "Add login (#1)" and gh.graphql_variables[-1]["headline"] == "Add login (#1)"
    squash_only = FakeGitHub(allow_squash_merge=False)
    with squash_only:
        other = ready_pull(squash_only)
        answer = graphql(squash_only, MERGE, id=squash_only.pull(other).node_id)
        assert answer["errors"][0]["message"] == "Squash merges are not allowed on this repository."


# -------------------------------------------------------------------------------------------------------- faults


def test_faults_5xx_and_429_with_retry_after(gh: FakeGitHub) -> None:
    gh.fail("GET", r"/pulls$", 502, times=2)
    gh.fail("*", r"^/api/graphql$", 429, headers={"Retry-After": "7"})
    assert [rest(gh, "GET", "/repos/acme/webapp/pulls").status_code for _ in range(3)] == [502, 502, 200]
    throttled = requests.post(gh.graphql_url, json={"query": "{ viewer { login } }"}, headers=auth(gh), timeout=10)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "7"
    assert "secondary rate limit" in throttled.json()["message"]
    assert "data" in graphql(gh, "{ viewer { login } }")
    forever = gh.fail("GET", r"/repos/acme/webapp$", 503, body="upstream gone", times=None)
    answers = [rest(gh, "GET", "/repos/acme/webapp") for _ in range(3)]
    assert [a.status_code for a in answers] == [503] * 3 and answers[0].text == "upstream gone" and forever.hits == 3
    gh.clear_faults()
    assert rest(gh, "GET", "/repos/acme/webapp").status_code == 200


def test_a_merge_that_succeeds_but_answers_502(gh: FakeGitHub) -> None:
    number = ready_pull(gh)
    gh.fail("PUT", r"/pulls/\d+/merge$", 502, after=True)
    answer = rest(gh, "PUT", f"/repos/acme/webapp/pulls/{number}/merge", json={"merge_method": "squash"})
    assert answer.status_code == 502 and gh.pull(number).merged
    assert gh.calls("PUT", "/merge") == 1
    assert rest(gh, "GET", f"/repos/acme/webapp/pulls/{number}").json()["merged"] is True


def test_a_slow_answer_times_out_the_client(gh: FakeGitHub) -> None:
    gh.fail("GET", r"/repos/acme/webapp$", 200, body={"late": True}, delay=0.5)
    with pytest.raises(requests.Timeout):
        requests.get(gh.api_url + "/repos/acme/webapp", headers=auth(gh), timeout=0.1)


# ---------------------------------------------------------------------------------------------------- concurrency


def test_concurrent_requests_are_all_counted(gh: FakeGitHub) -> None:
    ready_pull(gh)

    def work() -> None:
        with requests.Session() as session:
            session.headers.update(auth(gh))
            for _ in range(10):
                assert session.get(gh.api_url + "/repos/acme/webapp/pulls/1", timeout=10).status_code == 200
                assert session.post(gh.graphql_url, json={"query": ONE_PULL, "variables": {
                    "owner": "acme", "name": "webapp", "number": 1}}, timeout=10).json()["data"]

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert gh.calls("GET", "/pulls/1") == 60 and gh.calls("POST", "/api/graphql") == 60
    assert rest(gh, "GET", "/rate_limit").json()["resources"]["core"]["remaining"] == 5000 - 60


# ------------------------------------------------------------------------------------------------ issues and reviews


def test_issues_through_pygithub_list_pull_requests_too_and_labels_mean_all_of_them() -> None:
    with FakeGitHub(labels=("bug",), extra_tokens={"builder-token-123456": "builder[bot]"}) as gh:
        gh.add_pull("A pull request", labels=("bug",))
        repo = Github(auth=Auth.Token("builder-token-123456"), base_url=gh.api_url,
                      seconds_between_requests=0).get_repo(gh.repository)
        opened = repo.create_issue("Broken login", body="It fails.", labels=["bug", "new-label"])
        assert (opened.user.login, opened.state, [la.name for la in opened.labels]) == (
            "builder[bot]", "open", ["bug", "new-label"])
        assert "new-label" in gh.labels.values()  # created on use, as GitHub does
        listed = list(repo.get_issues(state="open", labels=[repo.get_label("bug")]))
        assert sorted((i.number, i.pull_request is not None) for i in listed) == [(1, True), (opened.number, False)]
        assert [i.number for i in repo.get_issues(state="open", labels=["bug", "new-label"])] == [opened.number]
        comment = opened.create_comment("Taken.")
        assert [(c.id, c.user.login, c.body) for c in opened.get_comments()] == [(comment.id, "builder[bot]", "Taken.")]
        assert repo.get_issue(1).pull_request is not None


def test_reviews_through_rest_as_github_answers_them() -> None:
    with FakeGitHub(extra_tokens={"author-token-1234567": "author", "other-token-1234567": "other"}) as gh:
        pull = gh.add_pull("Change", author="author")

        def review(token: str, **body: Any) -> requests.Response:
            return requests.post(f"{gh.api_url}/repos/{gh.repository}/pulls/{pull.number}/reviews", json=body,
                                 headers={"Authorization": f"Bearer {token}"}, timeout=10)

        refused = review("author-token-1234567", event="APPROVE")
        assert refused.status_code == 422 and refused.json()["errors"] == ["Can not approve your own pull request"]
        assert review("other-token-1234567", event="REQUEST_CHANGES").status_code == 422  # a body is required
        assert review("other-token-1234567", event="APPROVE", commit_id="f" * 40).status_code == 422  # unknown sha
        old_head = pull.head_sha
        gh.push(pull.number)
        approved = review("other-token-1234567", event="APPROVE", commit_id=old_head)
        assert approved.status_code == 200 and approved.json()["commit_id"] == old_head
        assert [(r.reviewer, r.state, r.commit_id) for r in gh.pull(pull.number).reviews] == [
            ("other", "APPROVED", old_head)]
        diff = requests.get(f"{gh.api_url}/repos/{gh.repository}/pulls/{pull.number}", timeout=10,
                            headers={"Authorization": f"Bearer {gh.token}", "Accept": "application/vnd.github.diff"})
        assert diff.status_code == 200 and diff.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(("body", "closed"), [("Closes #10001", True), ("Refers to #10001", False)])
def test_a_merge_into_the_default_branch_closes_the_issues_the_pull_request_says_it_closes(
    body: str, closed: bool,
) -> None:
    with FakeGitHub(require_review=False) as gh:
        number = gh.add_issue("Broken login")
        other = gh.add_issue("Another")
        pull = gh.add_pull("Fix login", body=body)
        side = gh.add_pull("Into a branch", body="Closes #10002", base="release")
        gh._merge(side.number, "squash", None, None, None)
        gh._merge(pull.number, "squash", None, None, None)
        assert gh.issue(number)["state"] == ("CLOSED" if closed else "OPEN")
        assert gh.issue(other)["state"] == "OPEN"  # merged into another branch: GitHub closes nothing


# --- the merge queue and the strict policy -----------------------------------------------------------------------

QUEUE_FIELDS = "pullRequest(number: 1) { isMergeQueueEnabled isInMergeQueue mergeQueueEntry { state position } }"


def approved_green(fake: FakeGitHub) -> Any:
    pull = fake.add_pull()
    fake.approve(pull.number)
    fake.add_check_run(pull.number, "ci")
    return pull


def enqueue(fake: FakeGitHub, pull_id: str, oid: str) -> dict[str, Any]:
    return graphql(fake, "mutation($id: ID!, $oid: GitObjectID!) { enqueuePullRequest(input: "
                   "{pullRequestId: $id, expectedHeadOid: $oid}) { mergeQueueEntry { state position } } }",
                   id=pull_id, oid=oid)


def test_a_queue_branch_refuses_a_direct_merge_and_takes_an_entry_pinned_to_its_head() -> None:
    with FakeGitHub(merge_queue=True) as fake:
        pull = approved_green(fake)
        assert graphql(fake, in_repo(QUEUE_FIELDS))["data"]["repository"]["pullRequest"] == {
            "isMergeQueueEnabled": True, "isInMergeQueue": False, "mergeQueueEntry": None}
        refused = rest(fake, "PUT", f"/repos/acme/webapp/pulls/{pull.number}/merge",
                       json={"merge_method": "squash", "sha": pull.head_sha})
        assert refused.status_code == 405
        assert refused.json()["message"] == "Changes must be made through the merge queue"
        stale = enqueue(fake, pull.node_id, "0" * 40)
        assert stale["data"] == {"enqueuePullRequest": None}
        assert stale["errors"][0]["message"] == "Head branch was modified. Review and try the merge again."
        entry = enqueue(fake, pull.node_id, pull.head_sha)["data"]["enqueuePullRequest"]["mergeQueueEntry"]
        assert entry == {"state": "AWAITING_CHECKS", "position": 1}
        fake.set_queue_state(pull.number, "UNMERGEABLE")
        assert graphql(fake, in_repo(QUEUE_FIELDS))["data"]["repository"]["pullRequest"] == {
            "isMergeQueueEnabled": True, "isInMergeQueue": True,
            "mergeQueueEntry": {"state": "UNMERGEABLE", "position": 1}}
        fake.push(pull.number)  # a push takes it out of the queue
        assert fake.queue == []
        assert fake.server_errors == []


def test_enqueue_needs_a_queue_and_what_a_merge_needs(gh: FakeGitHub) -> None:
    pull = approved_green(gh)
    assert "Merge queue is not enabled" in enqueue(gh, pull.node_id, pull.head_sha)["errors"][0]["message"]
    gh.merge_queue = True
    unapproved = gh.add_pull("Unapproved")
    gh.add_check_run(unapproved.number, "ci")
    answer = enqueue(gh, unapproved.node_id, unapproved.head_sha)
    assert "approving review is required" in answer["errors"][0]["message"]
    assert gh.queue == []


def test_under_the_strict_policy_a_merge_leaves_the_others_behind_until_updated() -> None:
    with FakeGitHub(require_up_to_date=True, required_checks=("ci",)) as fake:
        first, second = approved_green(fake), approved_green(fake)
        merged = rest(fake, "PUT", f"/repos/acme/webapp/pulls/{first.number}/merge", json={"merge_method": "squash"})
        assert merged.status_code == 200
        state = graphql(fake, in_repo("pullRequest(number: 2) { mergeStateStatus }"))
        assert state["data"]["repository"]["pullRequest"]["mergeStateStatus"] == "BEHIND"
        behind = rest(fake, "PUT", f"/repos/acme/webapp/pulls/{second.number}/merge", json={"merge_method": "squash"})
        assert behind.status_code == 405
        path = f"/repos/acme/webapp/pulls/{second.number}/update-branch"
        moved = rest(fake, "PUT", path, json={"expected_head_sha": "0" * 40})
        assert moved.status_code == 422 and "expected head sha" in moved.json()["message"]
        old = second.head_sha
        assert rest(fake, "PUT", path, json={"expected_head_sha": old}).status_code == 202
        assert fake.pull(second.number).head_sha != old  # a new head: its checks run again
        state = graphql(fake, in_repo("pullRequest(number: 2) { mergeStateStatus reviewDecision }"))
        # Approvals kept (a merge of the base is no reviewable change); the required check has not run on it yet.
        assert state["data"]["repository"]["pullRequest"] == {"mergeStateStatus": "BLOCKED",
                                                              "reviewDecision": "APPROVED"}
        assert rest(fake, "PUT", path, json={}).status_code == 422  # up to date: nothing to merge in
        assert fake.server_errors == []

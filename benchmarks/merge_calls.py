"""GitHub calls of the merge step, against the local GitHub (tests/fakes/github.FakeGitHub).

Two cases, each with its baseline run in the same process:

1. 130 open pull requests, 3 eligible: the merge step against a naive per-PR REST loop (list, then reviews,
   status, check runs and the pull request for each), on the same state.
2. The scale case, 1,000 open pull requests, 10 eligible (every hundredth): the merge step against the
   target, at most ceil(N/100) reads plus two calls per merge (the read of that pull request just before
   its merge, and the merge), and against the floor of its own work: the same GraphQL pages, re-reads and
   merge PUTs sent bare with `requests` (no decisions, no checks), timed on the same state. Printed: GraphQL
   requests, REST calls, calls per merge, the most requests ever in flight at once, time, and the points.

Points. The local GitHub answers `rateLimit { cost }` with 1 for every query: it does not model GitHub's
cost. The primary cost is therefore computed by GitHub's documented formula, from the query the coordinator
actually sends (coordinator.edges.github.OPEN_PULLS_QUERY and PULL_BEFORE_MERGE_QUERY, parsed here with their
shared fragment and typed by GitHub's schema): add up the requests needed to fill each connection, assuming every
`first`/`last` is reached (a connection nested in another needs one request per parent node), divide by 100,
round to the nearest whole number, at least 1.
The secondary-rate-limit points are GitHub's documented table: 1 per GraphQL query without a mutation, 5 per
REST PUT.

GitHub asks for at least one second between mutating requests; the merge step keeps it (its client sleeps
between merges). That wait is recorded here, not slept, and shown beside the measured time.

3. The three merge policies at the scale case's state (issue 24), each run cycle after cycle until every eligible
   pull request has landed: direct merges (the default); the merge queue (the coordinator enqueues, GitHub's queue
   merges: the local GitHub lands each entry between cycles); and the up-to-date policy (strict required checks: each
   merge leaves the others BEHIND, the coordinator brings one up to date a cycle, CI reports green on its new head
   before the next cycle, and it merges then). Printed: cycles, GraphQL and REST calls, and calls per merged pull
   request, the listing's pages included.

Run from the repository root:  .venv/bin/python benchmarks/merge_calls.py [--open 1000] [--eligible 10]
"""

from __future__ import annotations

import argparse
import inspect
import io
import math
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    parse,
)
from graphql.language import FragmentSpreadNode, InlineFragmentNode
from requests.adapters import HTTPAdapter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coordinator.edges.github import OPEN_PULLS_QUERY, PULL_BEFORE_MERGE_QUERY, GitHubClient
from coordinator.fleet import Mode, role_label
from coordinator.redact import Secret
from coordinator.report import EventLog
from coordinator.settings import GitHubSettings
from coordinator.steps.merge import run_merge
from roster import ROSTER
from tests.fakes.github import FakeGitHub, github_schema

OPEN = 130
ELIGIBLE = (7, 64, 121)  # creation indexes of the pull requests that are ready
SCALE_OPEN = 1000
SCALE_ELIGIBLE = 10
CYCLES_PER_HOUR = 12  # the default schedule, every 5 minutes
HOURLY_BUDGET = 5000  # REST requests, or GraphQL points, per token and hour (primary rate limits)
MAX_MERGES_PER_CYCLE = GitHubSettings("o/n", Secret("x"), "http://x", "http://x").max_merges_per_cycle

# GitHub's secondary rate limits, as its REST and GraphQL rate-limit pages state them.
SECONDARY_CONCURRENT = 100  # requests in flight at once, REST and GraphQL together
SECONDARY_GRAPHQL_POINTS_PER_MIN = 2000  # GraphQL endpoint; a query without a mutation is 1 point
SECONDARY_REST_POINTS_PER_MIN = 900  # REST endpoints; GET 1 point, POST/PATCH/PUT/DELETE 5 points
SECONDARY_CONTENT_PER_MIN = 80  # content-creating requests (a merge creates a commit)
SECONDARY_CONTENT_PER_HOUR = 500
POINTS = {"graphql": 1, "GET": 1, "PUT": 5, "POST": 5, "PATCH": 5, "DELETE": 5}


# --- GitHub's documented primary cost of a query ----------------------------------------------------------------


def _page_size(node: FieldNode) -> int:
    for argument in node.arguments or ():
        if argument.name.value in ("first", "last"):
            if not isinstance(argument.value, IntValueNode):
                raise ValueError(f"{node.name.value}: {argument.name.value} is not a literal; cannot cost it")
            return int(argument.value.value)
    return 0  # no page asked for (totalCount only): the connection still costs its request


def _connection_requests(schema: GraphQLSchema, parent: GraphQLNamedType, selections: SelectionSetNode | None,
                         parents: int, fragments: dict[str, FragmentDefinitionNode]) -> int:
    """Requests needed to fill every connection under `selections`, given `parents` nodes above them."""
    if selections is None:
        return 0
    total = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value.startswith("__"):
                continue
            assert isinstance(parent, GraphQLObjectType | GraphQLInterfaceType), parent
            named = get_named_type(parent.fields[selection.name.value].type)
            if named.name.endswith("Connection"):  # one request per parent node; its nodes are the next parents
                total += parents
                total += _connection_requests(schema, named, selection.selection_set, parents * _page_size(selection),
                                              fragments)
            else:
                total += _connection_requests(schema, named, selection.selection_set, parents, fragments)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            narrowed = schema.get_type(condition.name.value) if condition is not None else parent
            assert narrowed is not None
            total += _connection_requests(schema, narrowed, selection.selection_set, parents, fragments)
        elif isinstance(selection, FragmentSpreadNode):  # costed where it is spread, as if written out there
            fragment = fragments[selection.name.value]
            narrowed = schema.get_type(fragment.type_condition.name.value)
            assert narrowed is not None
            total += _connection_requests(schema, narrowed, fragment.selection_set, parents, fragments)
    return total


def documented_cost(query: str) -> tuple[int, int]:
    """(requests summed over the connections, points): GitHub's formula for one query, typed by GitHub's schema
    (the copy vendored for the local GitHub)."""
    schema = github_schema()
    document = parse(query)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    root = schema.query_type
    assert root is not None
    needed = _connection_requests(schema, root, operation.selection_set, 1, fragments)
    return needed, max(1, round(needed / 100))


# --- the state, and what is measured ----------------------------------------------------------------------------


def arrange(fake: FakeGitHub, open_pulls: int, eligible: Sequence[int]) -> None:
    """`open_pulls` open pull requests: every tenth a draft, a third with failed CI, none approved but the
    `eligible` ones (by creation index), which are approved and green."""
    for i in range(open_pulls):
        pull = fake.add_pull(f"Change {i}", draft=(i % 10 == 9) and i not in eligible)
        fake.add_check_run(pull.number, "ci", conclusion="success" if i % 3 else "failure")
        if i in eligible:
            fake.approve(pull.number)
            fake.add_check_run(pull.number, "ci")


def settings_for(fake: FakeGitHub) -> GitHubSettings:
    return GitHubSettings(fake.repository, Secret(fake.token), fake.api_url, fake.graphql_url)


BACKLOG_LABELS = tuple(role_label(role.key) for role in ROSTER if role.mode is Mode.TASK_DRIVEN)


@dataclass
class Run:
    merged: list[int]
    seconds: float
    spacing_s: float  # GitHub's one second between merges, recorded, not slept
    graphql: int
    rest: dict[str, int]  # by method
    max_in_flight: int

    @property
    def calls(self) -> int:
        return self.graphql + sum(self.rest.values())

    def secondary_points(self) -> tuple[int, int]:
        """(GraphQL endpoint, REST endpoints) secondary-rate-limit points, by GitHub's table."""
        return self.graphql * POINTS["graphql"], sum(POINTS.get(m, 1) * n for m, n in self.rest.items())


@dataclass
class InFlight:
    now: int = 0
    most: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def in_flight_meter() -> Iterator[InFlight]:
    """Counts the HTTP requests in flight at once, on every requests adapter (ours and PyGithub's)."""
    meter = InFlight()
    original = HTTPAdapter.send

    def send(self: HTTPAdapter, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        with meter.lock:
            meter.now += 1
            meter.most = max(meter.most, meter.now)
        try:
            return original(self, request, *args, **kwargs)
        finally:
            with meter.lock:
                meter.now -= 1

    HTTPAdapter.send = send  # type: ignore[method-assign]
    try:
        yield meter
    finally:
        HTTPAdapter.send = original  # type: ignore[method-assign]


def merge_step(fake: FakeGitHub, waits: list[float]) -> list[int]:
    client = GitHubClient(settings_for(fake), sleep=waits.append)
    # The cycle counts the Task-driven roles' backlog in the first page, where the step supports it.
    supported = "backlog_labels" in inspect.signature(run_merge).parameters
    extra: dict[str, Any] = {"backlog_labels": BACKLOG_LABELS} if supported else {}
    report = run_merge(client, settings_for(fake), log=EventLog("bench", stream=io.StringIO()), **extra)
    assert not report.stopped, report.stopped
    return list(report.merged)


def bare_floor(fake: FakeGitHub, waits: list[float], merge_indexes: Sequence[int]) -> list[int]:
    """The least the step's work can cost on this server: the same GraphQL pages, the same read of each pull
    request before its merge and the same merge PUTs, sent with plain `requests`, nothing decided or checked.
    `merge_indexes`: creation indexes to merge."""
    session = requests.Session()
    session.headers["Authorization"] = f"bearer {fake.token}"
    cursor: str | None = None
    pulls: list[dict[str, Any]] = []
    variables: dict[str, Any] = {"owner": fake.owner, "name": fake.name, "backlogLabels": list(BACKLOG_LABELS)}
    while True:
        body = {"query": OPEN_PULLS_QUERY, "variables": {**variables, "cursor": cursor,
                                                        "countBacklog": cursor is None}}
        page = session.post(fake.graphql_url, json=body, timeout=30).json()["data"]["repository"]["pullRequests"]
        pulls += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        cursor = page["pageInfo"]["endCursor"]
    merged: list[int] = []
    for i in merge_indexes:
        if merged:
            waits.append(1.0)
        body = {"query": PULL_BEFORE_MERGE_QUERY,
                "variables": {"owner": fake.owner, "name": fake.name, "number": pulls[i]["number"]}}
        pull = session.post(fake.graphql_url, json=body, timeout=30).json()["data"]["repository"]["pullRequest"]
        answer = session.put(f"{fake.api_url}/repos/{fake.repository}/pulls/{pull['number']}/merge",
                             json={"merge_method": "squash", "sha": pull["headRefOid"]}, timeout=30)
        if answer.status_code == 200:
            merged.append(int(pull["number"]))
    session.close()
    return merged


def naive_rest(fake: FakeGitHub, waits: list[float]) -> list[int]:
    """What the guide's step looks like when written against REST: five reads per pull request."""
    api = f"{fake.api_url}/repos/{fake.repository}"
    session = requests.Session()
    session.headers["Authorization"] = f"token {fake.token}"
    pulls: list[dict[str, Any]] = []
    url: str | None = f"{api}/pulls?state=open&per_page=100"
    while url:
        page = session.get(url, timeout=10)
        pulls += page.json()
        url = page.links.get("next", {}).get("url")
    merged: list[int] = []
    for pull in sorted(pulls, key=lambda p: p["created_at"]):
        number, sha = pull["number"], pull["head"]["sha"]
        reviews = session.get(f"{api}/pulls/{number}/reviews?per_page=100", timeout=10).json()
        status = session.get(f"{api}/commits/{sha}/status", timeout=10).json()
        runs = session.get(f"{api}/commits/{sha}/check-runs?per_page=100", timeout=10).json()["check_runs"]
        detail = session.get(f"{api}/pulls/{number}", timeout=10).json()
        latest = {r["user"]["login"]: r["state"] for r in reviews if r["state"] != "COMMENTED"}
        approved = "APPROVED" in latest.values() and "CHANGES_REQUESTED" not in latest.values()
        statuses_ok = status["total_count"] == 0 or status["state"] == "success"
        checks_ok = bool(runs) and all(
            r["status"] == "completed" and r["conclusion"] in ("success", "neutral", "skipped") for r in runs
        )
        if not pull["draft"] and approved and statuses_ok and checks_ok and detail["mergeable"] is True:
            if merged:
                waits.append(1.0)
            answer = session.put(
                f"{api}/pulls/{number}/merge",
                json={"merge_method": "squash", "sha": sha, "commit_title": f"{pull['title']} (#{number})"},
                timeout=10,
            )
            if answer.status_code == 200:
                merged.append(number)
    session.close()
    return merged


def measure(strategy: Callable[[FakeGitHub, list[float]], list[int]], open_pulls: int,
            eligible: Sequence[int]) -> Run:
    with FakeGitHub() as fake:
        arrange(fake, open_pulls, eligible)
        waits: list[float] = []
        with in_flight_meter() as meter:
            started = time.perf_counter()
            merged = strategy(fake, waits)
            elapsed = time.perf_counter() - started
        assert not fake.server_errors, fake.server_errors
        graphql = fake.calls("POST", "/api/graphql")
        rest = {m: fake.calls(m) for m in ("GET", "PUT", "POST", "PATCH", "DELETE")}
        rest["POST"] -= graphql
        return Run(merged, elapsed, sum(waits), graphql, {m: n for m, n in rest.items() if n}, meter.most)


def rest_text(rest: dict[str, int]) -> str:
    return " + ".join(f"{n} {m}" for m, n in sorted(rest.items())) or "0"


# --- the run ----------------------------------------------------------------------------------------------------


def small_case() -> None:
    calls = measure(merge_step, OPEN, ELIGIBLE)
    naive = measure(naive_rest, OPEN, ELIGIBLE)
    assert sorted(calls.merged) == sorted(naive.merged) and len(calls.merged) == len(ELIGIBLE)
    print(f"1. one cycle, {OPEN} open pull requests, {len(ELIGIBLE)} eligible (both merged {sorted(calls.merged)})")
    print(f"   {'strategy':<26}{'HTTP calls':>11}{'REST':>7}{'GraphQL':>9}{'wall s':>9}")
    for name, run in (("merge step (GraphQL)", calls), ("naive per-PR REST", naive)):
        print(f"   {name:<26}{run.calls:>11}{sum(run.rest.values()):>7}{run.graphql:>9}{run.seconds:>9.3f}")
    print(f"   ratio naive / merge step: {naive.calls / calls.calls:.0f}x calls, "
          f"{naive.seconds / calls.seconds:.1f}x wall time (local server; merge spacing not slept)")
    naive_hour = sum(naive.rest.values()) * CYCLES_PER_HOUR
    step_hour = sum(calls.rest.values()) * CYCLES_PER_HOUR
    print(f"   hourly at {CYCLES_PER_HOUR} cycles/h: merge step {step_hour} REST, naive {naive_hour} REST "
          f"(primary limit {HOURLY_BUDGET}/h: naive "
          f"{'exceeds it' if naive_hour > HOURLY_BUDGET else 'fits'})")


def scale_case(open_pulls: int, eligible_count: int, repeats: int) -> bool:
    step_every = open_pulls // eligible_count
    eligible = tuple(range(step_every // 2, open_pulls, step_every))[:eligible_count]
    merges = len(eligible)
    steps: list[Run] = []
    floors: list[Run] = []
    for n in range(repeats):  # alternating, each on a fresh server with the same state
        for side in ("step", "floor") if n % 2 == 0 else ("floor", "step"):
            if side == "step":
                steps.append(measure(merge_step, open_pulls, eligible))
            else:
                floors.append(measure(lambda fake, waits: bare_floor(fake, waits, eligible), open_pulls, eligible))
    step = steps[0]
    assert all(len(r.merged) == merges for r in steps + floors), [r.merged for r in steps + floors]
    assert len({(r.graphql, tuple(sorted(r.rest.items()))) for r in steps}) == 1, "calls varied between runs"

    needed, points_per_page = documented_cost(OPEN_PULLS_QUERY)
    reread_needed, points_per_reread = documented_cost(PULL_BEFORE_MERGE_QUERY)
    pages = math.ceil(open_pulls / 100)
    target = pages + 2 * merges
    rereads = step.graphql - pages
    points = pages * points_per_page + rereads * points_per_reread
    step_s = statistics.median(r.seconds for r in steps)
    floor_s = statistics.median(r.seconds for r in floors)
    graphql_points, rest_points = step.secondary_points()
    print(f"\n2. one cycle, {open_pulls} open pull requests, {merges} eligible (every {step_every}th), "
          f"{repeats} runs each, alternating")
    print(f"   {'':<44}{'GraphQL':>8}{'REST':>10}{'calls':>7}{'median s':>10}{'min s':>8}")
    print(f"   {'merge step':<44}{step.graphql:>8}{rest_text(step.rest):>10}{step.calls:>7}{step_s:>10.3f}"
          f"{min(r.seconds for r in steps):>8.3f}")
    floor = floors[0]
    print(f"   {'floor: same pages, re-reads, PUTs, bare':<44}{floor.graphql:>8}{rest_text(floor.rest):>10}"
          f"{floor.calls:>7}{floor_s:>10.3f}{min(r.seconds for r in floors):>8.3f}")
    print(f"   ratio merge step / floor: {step.calls / floor.calls:.2f}x calls, {step_s / floor_s:.2f}x time "
          f"(the local server's time; GitHub's own is longer and the same for both)")
    print(f"   target: at most ceil({open_pulls}/100) + 2 x {merges} = {target} calls: {step.calls} "
          f"({pages} GraphQL pages + {rereads} GraphQL re-reads + {sum(step.rest.values())} REST, "
          f"{(rereads + sum(step.rest.values())) / merges:.1f} per merge): "
          f"{'met' if step.calls <= target else 'NOT met'}")
    print(f"   GitHub's one second between merges: {step.spacing_s:.0f} s of waits on top "
          f"(a cycle of this state takes about {step_s + step.spacing_s:.1f} s plus GitHub's answer times)")
    print(f"   primary cost by GitHub's formula: {needed} connection requests per page -> {points_per_page} points "
          f"per page; {reread_needed} per re-read -> {points_per_reread} point(s); {points} points this cycle "
          f"(the local GitHub reports cost 1 per query: it does not model cost); "
          f"{points * CYCLES_PER_HOUR} of {HOURLY_BUDGET} points an hour at {CYCLES_PER_HOUR} cycles/h")
    content_hour = MAX_MERGES_PER_CYCLE * CYCLES_PER_HOUR
    checks = [
        (f"requests in flight at once: {step.max_in_flight} (limit {SECONDARY_CONCURRENT}; serial, as GitHub "
         "asks)", step.max_in_flight <= 1),
        (f"GraphQL endpoint: {graphql_points} points this cycle, so at most that in any minute "
         f"(limit {SECONDARY_GRAPHQL_POINTS_PER_MIN}/min)", graphql_points <= SECONDARY_GRAPHQL_POINTS_PER_MIN),
        (f"REST endpoints: {rest_points} points this cycle ({merges} PUTs x 5); at one merge a second at most "
         f"{60 * 5} a minute (limit {SECONDARY_REST_POINTS_PER_MIN}/min)", SECONDARY_REST_POINTS_PER_MIN >= 60 * 5),
        (f"content-creating requests: {merges} merges, at most 60 a minute with the spacing (limit "
         f"{SECONDARY_CONTENT_PER_MIN}/min)", SECONDARY_CONTENT_PER_MIN >= 60),
        (f"content-creating requests an hour: {merges * CYCLES_PER_HOUR} at this state; at the cap of "
         f"{MAX_MERGES_PER_CYCLE} merges a cycle, {content_hour} (limit {SECONDARY_CONTENT_PER_HOUR}/h)",
         merges * CYCLES_PER_HOUR <= SECONDARY_CONTENT_PER_HOUR),
    ]
    print("   GitHub's secondary rate limits:")
    for text, ok in checks:
        print(f"     {'within' if ok else 'OVER  '}  {text}")
    if content_hour > SECONDARY_CONTENT_PER_HOUR:
        print(f"     note: MERGE_MAX_PER_CYCLE {MAX_MERGES_PER_CYCLE} at {CYCLES_PER_HOUR} cycles/h allows "
              f"{content_hour} merges an hour, above the {SECONDARY_CONTENT_PER_HOUR}/h content-creation guidance, "
              "should that many ever be ready")
    return step.calls <= target and all(ok for _, ok in checks[:4])


@dataclass
class PolicyRun:
    name: str
    cycles: int
    merged: int
    graphql: int
    rest: dict[str, int]

    @property
    def calls(self) -> int:
        return self.graphql + sum(self.rest.values())


def run_policy(name: str, open_pulls: int, eligible: Sequence[int], *, merge_queue: bool = False,
               strict: bool = False, max_cycles: int = 100) -> PolicyRun:
    """Cycles of the merge step until every eligible pull request has landed; what GitHub does between cycles
    (the queue merging its entries, CI reporting on a new head) is done to the local GitHub directly, uncounted."""
    with FakeGitHub(merge_queue=merge_queue, require_up_to_date=strict) as fake:
        arrange(fake, open_pulls, eligible)
        wanted = {fake.pulls[i].number for i in eligible}
        settings = GitHubSettings(fake.repository, Secret(fake.token), fake.api_url, fake.graphql_url,
                                  require_up_to_date=strict)
        cycles = 0
        while cycles < max_cycles and not all(fake.pull(n).merged for n in wanted):
            cycles += 1
            client = GitHubClient(settings, sleep=lambda _: None)
            report = run_merge(client, settings, log=EventLog("bench", stream=io.StringIO()),
                               backlog_labels=BACKLOG_LABELS)
            assert not report.stopped, report.stopped
            for number in fake.queue:  # GitHub's queue merges its entries once their merge groups pass
                fake.land_from_queue(number)
            for number in wanted:  # CI reports green on a branch brought up to date
                pull = fake.pull(number)
                if not pull.merged and not fake._outcomes(pull.head_sha):
                    fake.add_check_run(number, "ci")
        assert not fake.server_errors, fake.server_errors
        merged = sum(fake.pull(n).merged for n in wanted)
        assert merged == len(wanted), f"{name}: {merged} of {len(wanted)} landed in {cycles} cycles"
        graphql = fake.calls("POST", "/api/graphql")
        rest = {m: fake.calls(m) for m in ("GET", "PUT", "POST")}
        rest["POST"] -= graphql
        return PolicyRun(name, cycles, merged, graphql, {m: n for m, n in rest.items() if n})


def policies_case(open_pulls: int, eligible_count: int) -> list[PolicyRun]:
    step_every = open_pulls // eligible_count
    eligible = tuple(range(step_every // 2, open_pulls, step_every))[:eligible_count]
    runs = [
        run_policy("direct merge (default)", open_pulls, eligible),
        run_policy("merge queue (mergeQueue)", open_pulls, eligible, merge_queue=True),
        run_policy("up to date, one at a time (requireUpToDate)", open_pulls, eligible, strict=True),
    ]
    print(f"\n3. the three merge policies, {open_pulls} open pull requests, {len(eligible)} eligible, cycles until "
          "all have landed")
    print(f"   {'policy':<46}{'cycles':>7}{'GraphQL':>9}{'REST':>14}{'calls':>7}{'per merged PR':>15}")
    for run in runs:
        print(f"   {run.name:<46}{run.cycles:>7}{run.graphql:>9}{rest_text(run.rest):>14}{run.calls:>7}"
              f"{run.calls / run.merged:>15.1f}")
    print("   (the listing's pages, ceil(N/100) a cycle, are counted in every cycle it takes)")
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--open", type=int, default=SCALE_OPEN, help=f"open pull requests (default {SCALE_OPEN})")
    parser.add_argument("--eligible", type=int, default=SCALE_ELIGIBLE,
                        help=f"of which eligible (default {SCALE_ELIGIBLE})")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side of the scale case (default 3)")
    parser.add_argument("--skip-small", action="store_true", help="skip the 130-PR comparison with naive REST")
    parser.add_argument("--only-policies", action="store_true", help="run only the three merge policies (case 3)")
    args = parser.parse_args(argv)
    measure(merge_step, 3, (1,))  # warm-up: builds the GraphQL schema once, outside the timings
    if args.only_policies:
        policies_case(args.open, args.eligible)
        return 0
    if not args.skip_small:
        small_case()
    ok = scale_case(args.open, args.eligible, args.repeats)
    policies_case(args.open, args.eligible)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""GitHub calls of one merge cycle: the merge step against a naive per-PR REST loop, in the same run.

Both run against the local FakeGitHub with the same 130 open pull requests, 3 of them eligible.
Printed: HTTP calls, GitHub rate-limit budget used, wall time, and the ratio naive / merge step.
Run from the repository root:  python benchmarks/merge_calls.py
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coordinator.edges.github import GitHubClient
from coordinator.report import EventLog
from coordinator.settings import GitHubSettings, Secret
from coordinator.steps.merge import run_merge
from tests.fakes.github import FakeGitHub

OPEN = 130
ELIGIBLE = (7, 64, 121)  # creation indexes of the pull requests that are ready
CYCLES_PER_HOUR = 12  # the default schedule, every 5 minutes
HOURLY_BUDGET = 5000  # REST requests, or GraphQL points, per token and hour

# GitHub's documented GraphQL cost: the requests needed to fill every connection, divided by 100.
# Per page of OPEN_PULLS_QUERY: 1 (pullRequests) + 100 x 4 (labels, reviews, commits, contexts).
GRAPHQL_POINTS_PER_PAGE = round((1 + 100 * 4) / 100)


def arrange(fake: FakeGitHub) -> None:
    for i in range(OPEN):
        pull = fake.add_pull(f"Change {i}", draft=(i % 10 == 9))
        fake.add_check_run(pull.number, "ci", conclusion="success" if i % 3 else "failure")
        if i in ELIGIBLE:
            fake.approve(pull.number)
            fake.add_check_run(pull.number, "ci")


def settings_for(fake: FakeGitHub) -> GitHubSettings:
    return GitHubSettings(fake.repository, Secret(fake.token), fake.api_url, fake.graphql_url)


def merge_step(fake: FakeGitHub) -> list[int]:
    client = GitHubClient(settings_for(fake), sleep=lambda _: None)  # GitHub's 1 s between writes is not timed
    report = run_merge(client, settings_for(fake), log=EventLog("bench", stream=io.StringIO()))
    client.close()
    return report.merged


def naive_rest(fake: FakeGitHub) -> list[int]:
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
    merged = []
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
            answer = session.put(
                f"{api}/pulls/{number}/merge",
                json={"merge_method": "squash", "sha": sha, "commit_title": f"{pull['title']} (#{number})"},
                timeout=10,
            )
            if answer.status_code == 200:
                merged.append(number)
    session.close()
    return merged


def measure(strategy: Callable[[FakeGitHub], list[int]]) -> tuple[int, int, int, float, list[int]]:
    with FakeGitHub() as fake:
        arrange(fake)
        started = time.perf_counter()
        merged = strategy(fake)
        elapsed = time.perf_counter() - started
        graphql = fake.calls("POST", "/api/graphql")
        return fake.calls(), graphql, fake.calls() - graphql, elapsed, merged


def main() -> None:
    measure(merge_step)  # warm-up: builds the GraphQL schema once, outside the timings
    calls, graphql, rest, seconds, merged = measure(merge_step)
    n_calls, _, n_rest, n_seconds, n_merged = measure(naive_rest)
    assert sorted(merged) == sorted(n_merged) and len(merged) == len(ELIGIBLE), (merged, n_merged)

    points = graphql * GRAPHQL_POINTS_PER_PAGE
    print(f"one cycle, {OPEN} open pull requests, {len(ELIGIBLE)} eligible (both merged {sorted(merged)})")
    print(f"{'strategy':<26}{'HTTP calls':>11}{'REST':>7}{'GraphQL':>9}{'wall s':>9}")
    print(f"{'merge step (GraphQL)':<26}{calls:>11}{rest:>7}{graphql:>9}{seconds:>9.3f}")
    print(f"{'naive per-PR REST':<26}{n_calls:>11}{n_rest:>7}{0:>9}{n_seconds:>9.3f}")
    print(f"ratio naive / merge step: {n_calls / calls:.0f}x calls, {n_seconds / seconds:.1f}x wall time")
    print(
        f"hourly budget at {CYCLES_PER_HOUR} cycles/h: merge step {rest * CYCLES_PER_HOUR} REST + "
        f"~{points * CYCLES_PER_HOUR} GraphQL points; naive {n_rest * CYCLES_PER_HOUR} REST "
        f"(limit {HOURLY_BUDGET} each: naive {'exceeds' if n_rest * CYCLES_PER_HOUR > HOURLY_BUDGET else 'fits'})"
    )


if __name__ == "__main__":
    main()

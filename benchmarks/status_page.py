"""The status page at 600 agents and a day of 5-minute cycles (288 reports), against baselines run side by side.

The reports are made by the real report code (tests/fleet_day.py: CycleReport, the verdict, the advice, the
event log's JSON lines parsed back as `status` reads them) and fed to a `FleetMetrics` as the scheduler feeds
them; its server (coordinator.web) serves them on 127.0.0.1. Two measures, rounds alternating:

1. Over real HTTP, a fresh connection per request as a browser's reload makes: GET / (the page) against
   GET /metrics (the scrape Prometheus makes every 15 s, the baseline). Also GET /reports.json, for scripts.
2. In the process, the page's pure function `render_page` (over the reports read, as the scheduler's history
   holds them) against `json.dumps` of the same reports (what serialising them costs at all), each timed alone.

Printed: median and 95th percentile of each, the page's size, and the ratios. The page's target is an answer in
under 50 ms.

Run from the repository root:  .venv/bin/python benchmarks/status_page.py [--agents 600] [--cycles 288] [--rounds 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coordinator.metrics import FleetMetrics
from coordinator.page import render_page
from tests.fleet_day import day_of_reports, read_all

SECRET = "benchmark-token-0123456789abcdef"


def timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return (time.perf_counter() - began) * 1000


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
    return body


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"  {name:<34} median {statistics.median(samples):7.1f} ms   p95 {p95:7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=600)
    parser.add_argument("--cycles", type=int, default=288)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()

    now = datetime.now(UTC).replace(microsecond=0)
    reports = day_of_reports(agents=args.agents, end=now, cycles=args.cycles, secret=SECRET)
    typed = read_all(reports)  # as the scheduler's history holds them: read once, as each report comes in
    metrics = FleetMetrics()
    for report in reports:
        metrics.observe_report(report)
    metrics.observe_schedule(300.0)
    server = metrics.serve(port=0, addr="127.0.0.1", secrets=[SECRET])
    base = f"http://127.0.0.1:{server.port}"
    try:
        page_size, metrics_size, json_size = len(get(f"{base}/")), len(get(f"{base}/metrics")), len(
            get(f"{base}/reports.json"))
        samples: dict[str, list[float]] = {"GET /": [], "GET /metrics": [], "GET /reports.json": [],
                                           "render_page": [], "json.dumps": []}
        for round_ in range(args.rounds):
            sides: list[tuple[str, Callable[[], object]]] = [
                ("GET /", lambda: get(f"{base}/")),
                ("GET /metrics", lambda: get(f"{base}/metrics")),
                ("render_page", lambda: render_page(typed, now=now, refresh_s=300, secrets=[SECRET])),
                ("json.dumps", lambda: json.dumps(reports)),
            ]
            if round_ % 4 == 0:
                sides.append(("GET /reports.json", lambda: get(f"{base}/reports.json")))
            if round_ % 2:
                sides.reverse()
            for name, action in sides:
                samples[name].append(timed(action))
    finally:
        server.stop()

    agents = sum(tally["desired"] for tally in reports[-1]["roles"].values())
    print(f"status page: {agents} agents in {len(reports[-1]['roles'])} roles, {len(reports)} reports, "
          f"{args.rounds} rounds")
    print(f"  sizes: page {page_size / 1024:.0f} KiB, /metrics {metrics_size / 1024:.0f} KiB, "
          f"/reports.json {json_size / 1024:.0f} KiB")
    for name, values in samples.items():
        print(summary(name, values))
    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"  GET / over GET /metrics: {median['GET /'] / median['GET /metrics']:.2f}x")
    print(f"  render_page over json.dumps of the same reports: {median['render_page'] / median['json.dumps']:.2f}x")
    print(f"  GET / under 50 ms: {'yes' if median['GET /'] < 50 else 'NO'} (median {median['GET /']:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The status page: the pure renderer on crafted reports, and the page served over real HTTP by the scheduler's
server from a day of real reports, rendered by a real headless Chromium (Debian's `chromium`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from coordinator.metrics import FleetMetrics, MetricsServer
from coordinator.page import CONTENT_SECURITY_POLICY, render_page
from tests.fleet_day import day_of_reports, read_all

SECRET = "fake-token-pageSECRET0123456789abcdef"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# --- the DOM, as a browser or the parser sees it ---------------------------------------------------


class Dom(HTMLParser):
    """Every element's tag and attributes, and the text of the whole page, from HTML."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: list[str] = []
        self._inside: list[tuple[str, dict[str, str]]] = []
        self.text_by_id: dict[str, list[str]] = {}
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.elements.append((tag, attributes))
        if tag not in ("meta", "br", "img", "input", "link", "rect", "line", "polyline"):
            self._inside.append((tag, attributes))

    def handle_endtag(self, tag: str) -> None:
        while self._inside:
            if self._inside.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        self.texts.append(data)
        for _, attributes in self._inside:
            if "id" in attributes:
                self.text_by_id.setdefault(attributes["id"], []).append(data)

    def text(self, element_id: str | None = None) -> str:
        parts = self.texts if element_id is None else self.text_by_id.get(element_id, [])
        return " ".join(" ".join(parts).split())

    def all(self, tag: str, **attributes: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.elements
                if name == tag and all(attrs.get(key.replace("_", "-")) == value for key, value in attributes.items())]


def rows_by_role(dom: Dom) -> dict[str, dict[str, str]]:
    return {attrs["data-role"]: attrs for attrs in dom.all("tr") if "data-role" in attrs}


def external_references(dom: Dom) -> list[str]:
    """Every attribute value that would make a browser fetch something: src, href, url(...) and the like."""
    found = []
    for tag, attributes in dom.elements:
        for name, value in attributes.items():
            if name in ("src", "href", "srcset", "action", "data", "poster", "xlink:href") or "url(" in value:
                found.append(f"<{tag} {name}={value!r}>")
        if tag in ("script", "link", "iframe", "object", "embed", "img", "image", "use", "base"):
            found.append(f"<{tag}>")
    return found


# --- the pure renderer -----------------------------------------------------------------------------


def test_an_empty_day_says_so_and_still_reloads() -> None:
    page = render_page([], now=NOW, refresh_s=60)
    dom = Dom(page)
    assert "No cycle reports in the last day yet" in dom.text()
    assert dom.all("meta", http_equiv="refresh") == [{"http-equiv": "refresh", "content": "60"}]


def test_the_page_of_a_day_shows_each_piece_and_fetches_nothing() -> None:
    reports = day_of_reports(agents=38, end=NOW, cycles=36)
    page = render_page(read_all(reports), now=NOW, refresh_s=300)
    dom = Dom(page)

    assert dom.all("meta", http_equiv="Content-Security-Policy")[0]["content"] == CONTENT_SECURITY_POLICY
    assert dom.all("meta", http_equiv="refresh")[0]["content"] == "300"
    assert external_references(dom) == []
    assert len(dom.all("rect", **{"class": "cycle"})) == 36
    roles = rows_by_role(dom)
    assert len(roles) == 25
    assert "code_reviewer" in roles
    # The last four merges failed: the judgment across cycles says broken, the cycle's own verdict degraded.
    assert dom.text("verdict-now") == "broken"
    assert dom.text("verdict-cycle") == "degraded"
    assert dom.text("verdict-across") == "broken"
    assert "GitHub API errors persisting across cycles" in dom.text("across-reasons")
    assert "errors in merge" in dom.text("cycle-reasons")
    for section in ("roles", "timeline", "activity", "pulls", "production", "errors"):
        assert dom.text(section), f"section {section} is empty"


def test_a_merge_queue_shows_its_entries_and_the_failed_ones_with_their_reasons() -> None:
    reports = day_of_reports(agents=10, end=NOW, cycles=12)
    latest_read = max(i for i, report in enumerate(reports) if report["merge"]["status"] == "ok")
    reports = reports[:latest_read + 1]  # the day ends with a cycle whose merge step read the pulls
    merge = reports[-1]["merge"]
    merge["pulls"] += [{"number": 41, "outcome": "queued", "reason": "in the merge queue (QUEUED, position 1)"},
                       {"number": 42, "outcome": "queue failed", "reason": "the queue's checks failed <on main>"}]
    merge["queued"], merge["queue_failed"] = [41], [42]
    dom = Dom(render_page(read_all(reports), now=NOW, refresh_s=300))
    assert "1 in the merge queue, 1 failed in it" in dom.text("pulls")
    assert dom.text("queue-failed") == "#42: the queue's checks failed <on main>"
    # Without a queue, the chart keeps to the review queue and conflicts, and no failed entries are listed.
    plain = Dom(render_page(read_all(reports[:-1]), now=NOW, refresh_s=300))
    assert "0 in the merge queue, 0 failed in it" in plain.text("pulls")
    assert plain.all("ul", id="queue-failed") == []


def test_text_from_reports_is_scrubbed_and_escaped() -> None:
    reports = day_of_reports(agents=10, end=NOW, cycles=6, secret=SECRET, log_knows_secret=False)
    assert SECRET in json.dumps(reports)  # the reports hold it: only the page's scrubbing keeps it out
    reports[-1]["errors"].append({"step": "health", "message": "<script>alert(1)</script> at https://u:p@host/?k=v"})
    page = render_page(read_all(reports), now=NOW, refresh_s=300, secrets=[SECRET])
    assert SECRET not in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "u:p@" not in page and "k=v" not in page


def test_one_mark_per_cycle_however_many_and_coloured_by_the_cycles_own_verdict() -> None:
    reports = day_of_reports(agents=600, end=NOW, cycles=288)
    dom = Dom(render_page(read_all(reports), now=NOW, refresh_s=300))
    marks = dom.all("rect", **{"class": "cycle"})
    assert [mark["data-verdict"] for mark in marks] == [report["verdict"] for report in reports]
    colours = {mark["data-verdict"]: mark["fill"] for mark in marks}
    assert len(set(colours.values())) == len(colours)


# --- served over HTTP, rendered by Chromium ---------------------------------------------------------


@pytest.fixture
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not on PATH; install Debian's chromium package "
                    "(apt-get install -y --no-install-recommends chromium), which scripts/test does when run as root",
                    pytrace=False)
    return found


@pytest.fixture
def served_day() -> Iterator[tuple[MetricsServer, list[dict[str, Any]]]]:
    """The scheduler's server with a day of 600 agents' reports fed in as the scheduler feeds them, ending now.

    The reports were written by an event log that did not know the secret, so the page's own scrubbing is
    what keeps it off the page.
    """
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    reports = day_of_reports(agents=600, end=now, secret=SECRET, log_knows_secret=False)
    metrics = FleetMetrics()
    for report in reports:
        metrics.observe_report(report)
    metrics.observe_schedule(300.0)
    server = metrics.serve(port=0, addr="127.0.0.1", secrets=[SECRET])
    yield server, reports
    server.stop()


def run_chromium(chromium: str, url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
         # Chromium's own traffic (component updates, time checks) is not the page's; keep it quiet.
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--disable-extensions", *args, url],
        capture_output=True, text=True, timeout=120, check=False,
    )


def requests_of_the_page(netlog: Path) -> list[str]:
    """The URLs Chromium requested on behalf of pages from 127.0.0.1 (their network isolation key), from its net log."""
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    starts = [event.get("params", {}) for event in log["events"] if event["type"] == start_job]
    return [params["url"] for params in starts if "127.0.0.1" in params.get("network_isolation_key", "")]


def test_chromium_renders_the_served_page_with_the_fleet_and_nothing_else(
    chromium: str, served_day: tuple[MetricsServer, list[dict[str, Any]]], tmp_path: Path
) -> None:
    server, reports = served_day
    url = f"http://127.0.0.1:{server.port}/"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"

    netlog = tmp_path / "netlog.json"
    dumped = run_chromium(chromium, url, tmp_path, f"--log-net-log={netlog}", "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    shot = tmp_path / "status-page.png"
    screenshot = run_chromium(chromium, url, tmp_path, "--window-size=800,2600", f"--screenshot={shot}")
    assert screenshot.returncode == 0, screenshot.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

    dom = Dom(dumped.stdout)
    # It reloads itself each schedule interval (the scheduler's, 5 minutes here).
    assert dom.all("meta", http_equiv="refresh")[0]["content"] == "300"
    # The roles with their counts, as the latest report has them.
    latest = reports[-1]
    roles = rows_by_role(dom)
    assert set(roles) == set(latest["roles"])
    for role, tally in latest["roles"].items():
        assert f"{role} {tally['present']} / {tally['desired']}" in dom.text(), role
    # The verdict, and its reasons, each verdict named for what it judges.
    assert dom.text("verdict-now") == "broken"
    assert dom.text("verdict-cycle") == latest["verdict"]
    for reason in latest["verdict_reasons"]:
        assert reason in dom.text("cycle-reasons")
    assert "GitHub API errors persisting across cycles: the merge step failed in each of the last 3 cycles" \
        in dom.text("across-reasons")
    # One timeline mark per cycle of the day.
    assert len(dom.all("rect", **{"class": "cycle"})) == len(reports) == 288
    # No secret; nothing fetched but the page itself, and nothing in it that could fetch.
    assert SECRET not in dumped.stdout
    assert "***" in dom.text("errors")
    assert requests_of_the_page(netlog) == [url]
    assert external_references(dom) == []
    assert not re.search(r"https?://(?!127\.0\.0\.1)", dumped.stdout)


def test_reports_json_serves_the_same_reports_scrubbed(
    served_day: tuple[MetricsServer, list[dict[str, Any]]],
) -> None:
    server, reports = served_day
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/reports.json", timeout=30) as response:
        assert response.headers["Content-Type"] == "application/json"
        body = response.read().decode()
    assert SECRET not in body
    served = json.loads(body)["reports"]
    assert [r["started_at"] for r in served] == [r["started_at"] for r in reports]
    assert served[0] == reports[0]  # a report without the secret is served as it is
    assert served[-1]["steps"]["merge"]["detail"] == "GitHub answered 502 (token ***)"

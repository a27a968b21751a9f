"""`python -m coordinator <command>`: the runtime's command line.

  cycle        run one cycle; exit 0 when every step succeeded, 1 when one failed, 2 on bad settings
  plan         print what a cycle would do now; changes nothing
  schedule     run cycles on COORDINATOR_SCHEDULE, each in a fresh process (the container's entrypoint)
  status       the last cycles from the coordinator's log, with the current advice
  healthcheck  the container's health check: has a cycle finished within two schedule intervals?
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import TextIO

from coordinator.exit_codes import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from coordinator.fleet import DEFAULT_FLEET_ID
from coordinator.healthcheck import healthcheck_main
from coordinator.history import MAX_REPORTS, ReportHistory
from coordinator.redact import scrub
from coordinator.report import EventLog, render_text
from coordinator.runtime import AgentRuntime, RuntimeFailure
from coordinator.settings import (
    ConfigError,
    Settings,
    env_value,
    known_secrets,
    load_runtime_settings,
    load_settings,
)
from coordinator.status import read_reports, run_status

# Imported inside the commands that use them, so that the health check (every 30 s) and `status` do not load
# what they never call: the cycle (requests, the GitHub client), the scheduler and metrics (prometheus_client)
# and the runtimes' adapters (the Docker SDK).

FORMATS = ("text", "json")


def output_format(requested: str | None, out: TextIO) -> str:
    """`requested` if given; else text for a person at a terminal, JSON when the output is piped or redirected."""
    if requested is not None:
        return requested
    isatty = getattr(out, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m coordinator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    cycle = commands.add_parser("cycle", help="run one cycle")
    cycle.add_argument("--format", choices=FORMATS, default="json",
                       help="json (default): one JSON object per line, the report last; text: the report for a person")
    plan = commands.add_parser("plan", help="show what a cycle would do; change nothing")
    plan.add_argument("--format", choices=FORMATS, default=None,
                      help="text: the report for a person; json: one JSON object per line, the report last "
                      "(default: text on a terminal, json when piped or redirected)")
    commands.add_parser("schedule", help="run cycles on COORDINATOR_SCHEDULE")
    status = commands.add_parser("status", help="the last cycles from the coordinator's log")
    status.add_argument("--fleet", default=None, help="fleet id (default: FLEET_ID, else agent-fleet)")
    status.add_argument("--source", "--container", dest="source", default=None,
                        help="the coordinator's container (one engine) or service (swarm), by name or id")
    status.add_argument("--last", type=int, default=10, help="how many cycles to show (default 10)")
    status.add_argument("--format", choices=FORMATS, default=None,
                        help="text: a table for a person; json: the reports and the verdicts "
                        "(default: text on a terminal, json when piped or redirected)")
    status.add_argument("--json", dest="format", action="store_const", const="json", help="the same as --format json")
    status.add_argument("--watch", action="store_true", help="redraw each time a new cycle has reported; Ctrl-C ends")
    status.add_argument("--every", type=float, default=10.0,
                        help="with --watch: seconds between reads of the log (default 10)")
    commands.add_parser("healthcheck", help="exit 0 when a cycle finished within two schedule intervals")
    return parser


def _cycle(settings: Settings, *, dry_run: bool, text: bool) -> int:
    from coordinator.cycle import run_cycle, stop_on_sigterm

    # The scheduler's time limit arrives as SIGTERM: the cycle then writes its report before it exits.
    stop_on_sigterm()
    # In text mode the event lines go to stderr, so stdout holds only the report a person reads.
    log = EventLog(settings.fleet_id, settings.secrets(), stream=sys.stderr if text else sys.stdout)
    # Leave the merge step a margin before the scheduler's time limit, so it stops cleanly instead of being killed.
    deadline = time.monotonic() + settings.cycle_timeout_s * 0.8 if settings.cycle_timeout_s else None
    report = run_cycle(settings, log=log, dry_run=dry_run, deadline=deadline)
    if text:
        sys.stdout.write(log.scrub(render_text(report)))
    return EXIT_FAILED if report.failed else EXIT_OK


def _check_shared_accounts(settings: Settings, log: EventLog) -> None:
    """Two token identities that are one GitHub account: one GET /user per token identity, once, at the scheduler's
    start; each finding is logged and left beside the heartbeat, where every cycle puts it in its report (verdict
    and `status`)."""
    import json

    from coordinator.identities import SHARED_ACCOUNTS_FILE, TokenIdentity, shared_accounts

    tokens = {n: i.token for n, i in settings.agent_identities.items() if isinstance(i, TokenIdentity)}
    found: list[str] = []
    if len(tokens) > 1:
        from coordinator.edges.github_app import token_login

        logins = {name: token_login(settings.github_api_url, token.reveal()) for name, token in tokens.items()}
        found = shared_accounts({name: login for name, login in logins.items() if login is not None})
    for finding in found:
        log.emit("identities.shared_account", warning=finding)
    path = settings.heartbeat_file.parent / SHARED_ACCOUNTS_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(found), encoding="utf-8")
    except OSError as exc:
        log.emit("identities.unrecorded", error=exc.strerror or str(exc))


def _schedule(settings: Settings) -> int:
    from coordinator.metrics import FleetMetrics, MetricsServer
    from coordinator.schedule import install_signal_handlers, run_schedule

    stop = threading.Event()
    install_signal_handlers(stop)
    log = EventLog(settings.fleet_id, settings.secrets())
    _check_shared_accounts(settings, log)
    metrics: FleetMetrics | None = None
    server: MetricsServer | None = None
    if settings.metrics_port is not None:
        metrics = FleetMetrics()
        try:
            # Every interface: in a container, a published port reaches it through the container's own address.
            server = metrics.serve(port=settings.metrics_port, addr="0.0.0.0", secrets=settings.secrets())
        except OSError as exc:
            # The fleet comes first: cycles go on unobserved, and Prometheus' `up` says the target is down.
            log.emit("schedule.metrics_unavailable", port=settings.metrics_port, error=exc.strerror or str(exc),
                     effect="cycles run, no metrics are served")
            metrics = None
        else:
            log.emit("schedule.metrics_serving", port=server.port, path="/metrics", page="/", reports="/reports.json")
            read_back_history(settings.fleet_id, metrics.history, log)
    try:
        return run_schedule(
            schedule=settings.schedule,
            cycle_argv=[sys.executable, "-m", "coordinator", "cycle"],
            timeout_s=settings.cycle_timeout_s,
            heartbeat_file=settings.heartbeat_file,
            log=log,
            stop=stop,
            metrics=metrics,
        )
    finally:
        if server is not None:
            server.stop()


def read_back_history(fleet_id: str, history: ReportHistory, log: EventLog,
                      runtime: AgentRuntime | None = None) -> threading.Thread:
    """Start reading the last day's reports back from the coordinator's own log into `history`, as `status` reads them.

    A restarted scheduler so shows the day it has not seen itself on its page and in its judgments. In a thread
    of its own (returned, started): reading a day of log must not hold up the first cycle. Failing to read it
    costs only the page's past, and is logged.
    """
    def read_back() -> None:
        try:
            if runtime is None:
                from coordinator.runtimes import open_runtime

                reader = open_runtime(load_runtime_settings(os.environ))
            else:
                reader = runtime
            _, reports = read_reports(reader, fleet_id=fleet_id, source=None, last=MAX_REPORTS)
        except (RuntimeFailure, ConfigError, OSError) as exc:  # no engine, no coordinator found, no log
            log.emit("schedule.history_unavailable", error=str(exc), effect="the status page starts from this cycle")
            return
        except Exception as exc:  # anything else: the page's past is an extra, so the thread ends quietly all the same
            log.emit("schedule.history_unavailable", error=type(exc).__name__,
                     effect="the status page starts from this cycle")
            return
        history.add(reports)
        log.emit("schedule.history_read", reports=len(reports))

    thread = threading.Thread(target=read_back, name="history-read-back", daemon=True)
    thread.start()
    return thread


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "status":
        fleet = args.fleet or env_value(os.environ, "FLEET_ID") or DEFAULT_FLEET_ID
        try:
            return run_status(fleet_id=fleet, source=args.source, last=args.last,
                              output=output_format(args.format, sys.stdout), out=sys.stdout,
                              watch_every_s=args.every if args.watch else None)
        except KeyboardInterrupt:  # the way out of --watch
            return EXIT_OK
    if args.command == "healthcheck":
        return healthcheck_main(os.environ)
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        # The message quotes values through redact.shown already; scrub it again with every secret this
        # process can know, since a token pasted into a URL's path is recognisable only by its value.
        print(scrub(f"agent-fleet coordinator: bad configuration: {exc}", known_secrets(os.environ)), file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "schedule":
        return _schedule(settings)
    return _cycle(settings, dry_run=args.command == "plan", text=output_format(args.format, sys.stdout) == "text")

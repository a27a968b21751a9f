"""What both Docker adapters share: the engine's client for one cycle, and how Docker writes times.

A cycle makes one client. The SDK's API version "auto" asks the engine (`GET /version`) each time a client is
made, which would be a second call in every steady cycle. So the version is remembered beside the heartbeat
(`ApiVersionMemo`), and later cycles make their client without asking. A remembered version that the engine
refuses (it was downgraded, or upgraded past serving it) is forgotten at the first refusal: the engine is asked
again and the call repeated, so the cycle does not fail. DOCKER_API_VERSION, when set, pins the version and
nothing is remembered.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import docker
import docker.errors

from coordinator.files import replace_file
from coordinator.runtime import EARLIEST_TIME, LATEST_TIME, RuntimeFailure
from coordinator.settings import env_value

# Agents' own logs rotate too, so that a chatty agent cannot fill the Docker host's disk.
AGENT_LOG_OPTIONS = {"max-size": "10m", "max-file": "3"}
DOCKER_TIMEOUT_S = 30
_DOCKER_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", re.ASCII)
_API_VERSION = re.compile(r"1\.\d{1,3}", re.ASCII)
T = TypeVar("T")


def parse_docker_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds; '0001-01-01T00:00:00Z' means never.

    Raises ValueError, naming the value, for anything else that is not a time within the range a record's
    times keep to (runtime.EARLIEST_TIME to LATEST_TIME): the adapter then reads that record as unreadable."""
    if not value or value.startswith("0001-"):
        return None
    try:
        match = _DOCKER_TIME.fullmatch(value)
        if match:
            whole, fraction = match.groups()
            micros = int((fraction or "0")[:6].ljust(6, "0"))
            moment = datetime.fromisoformat(whole).replace(tzinfo=UTC, microsecond=micros)
        else:
            moment = datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"{value[:40]!r} is not a time") from None
    if not EARLIEST_TIME <= moment < LATEST_TIME:
        raise ValueError(f"{value[:40]!r} is out of range: a time from {EARLIEST_TIME:%Y} to {LATEST_TIME:%Y}")
    return moment


def epoch_time(value: object) -> datetime:
    """An engine's time in whole epoch seconds, within the same range (ValueError naming it otherwise)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{str(value)[:40]!r} is not a time in epoch seconds")
    if not EARLIEST_TIME.timestamp() <= value < LATEST_TIME.timestamp():
        raise ValueError(f"{value} is out of range: a time from {EARLIEST_TIME:%Y} to {LATEST_TIME:%Y}")
    return datetime.fromtimestamp(value, UTC)


class ApiVersionMemo:
    """The API version an engine answered, in a small file, for the engine at one address only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def recall(self, host: str) -> str | None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            version = saved.get("api_version")
            if saved.get("host") == host and isinstance(version, str) and _API_VERSION.fullmatch(version):
                return version
        return None

    def remember(self, host: str, version: str) -> None:
        """Replace the file in one step; a memo that cannot be written only costs the version probe."""
        with contextlib.suppress(OSError):
            replace_file(self.path, json.dumps({"host": host, "api_version": version}))

    def forget(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


def refuses_api_version(exc: docker.errors.APIError) -> bool:
    """The engine's answer to a client version it does not serve: 400, "client version 1.99 is too new...". """
    return exc.status_code == 400 and "client version" in str(exc.explanation or "").lower()


class Engine:
    """The engine's low-level client for one cycle, at the address DOCKER_HOST and friends name (the Docker
    CLI's own variables), with its API version pinned, remembered or asked for, in that order.

    `ask_again`, given only when the version was remembered, forgets it and makes a client that asks."""

    def __init__(self, api: docker.APIClient, *, ask_again: Callable[[], docker.APIClient] | None = None) -> None:
        self.api = api
        self._ask_again = ask_again

    @classmethod
    def connect(cls, what: str, *, timeout_s: int = DOCKER_TIMEOUT_S, memo: ApiVersionMemo | None = None) -> Engine:
        settings = docker.utils.kwargs_from_env()
        host = str(settings.get("base_url") or "default")
        pinned = env_value(os.environ, "DOCKER_API_VERSION")
        if pinned or memo is None:
            return cls(_client(what, settings, timeout_s, pinned or "auto"))

        def ask() -> docker.APIClient:
            client = _client(what, settings, timeout_s, "auto")
            memo.remember(host, str(client.api_version))
            return client

        def ask_again() -> docker.APIClient:
            memo.forget()
            return ask()

        remembered = memo.recall(host)
        if remembered is None:
            return cls(ask())
        return cls(_client(what, settings, timeout_s, remembered), ask_again=ask_again)

    def first_call(self, call: Callable[[docker.APIClient], T]) -> T:
        """The cycle's first call to the engine (its inventory). Should the engine refuse the remembered API
        version, the memo is forgotten, the engine asked, and the call made once more."""
        try:
            return call(self.api)
        except docker.errors.APIError as exc:
            if self._ask_again is None or not refuses_api_version(exc):
                raise
        self.api, self._ask_again = self._ask_again(), None
        return call(self.api)


def _client(what: str, settings: dict[str, object], timeout_s: int, version: str) -> docker.APIClient:
    try:
        return docker.APIClient(**settings, timeout=timeout_s, version=version)
    except docker.errors.DockerException as exc:
        raise RuntimeFailure(f"cannot reach {what}: {exc}") from None
    except Exception as exc:  # an ssh:// engine connects at once, and paramiko raises its own errors (or OSError)
        raise RuntimeFailure(f"cannot reach {what} at {settings.get('base_url')}: {type(exc).__name__}: {exc}") \
            from None

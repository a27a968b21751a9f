"""Parsers for the values of settings, shared by both halves: the runtime's environment (`coordinator.settings`)
and the stack's configuration (`deploy.stack_config`).

A parser takes a setting's raw text, already stripped (blank means unset and never reaches a parser: see
`blank_is_unset`), and returns the value or raises `ValueProblem`. The problem says what is wrong and how
to fix it, never where and never the value itself: each side wraps it in its own naming style
(`NAME='value' <reason>; <fix>` for a variable, `agent-fleet:key is 'value': it <reason>; <fix>` for a
stack key) and quotes the value through `coordinator.redact.shown`, the one place that knows how to
quote a value that may hold a credential.

Everything here is pure and uses the standard library only, because the coordinator image holds
nothing else and the Pulumi side imports the same rules.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from coordinator.redact import shown


class ValueProblem(ValueError):
    """A value is refused. `reason` is a predicate ("is not a whole number"), `fix` says what to write instead."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(f"{reason}; {fix}")
        self.reason = reason
        self.fix = fix


def blank_is_unset(raw: str | None) -> str | None:
    """The text of a setting, or None when it is unset, empty or only spaces.

    Docker Compose turns `${VAR}` into "" when VAR is unset, and Pulumi's project defaults are "" for
    optional keys, so an empty value must mean "not given" (the default applies), never "nothing".
    """
    if raw is None:
        return None
    text = raw.strip()
    return text or None


# --- numbers -----------------------------------------------------------------------------------

# Longer integers are refused before Python converts them: int() of a huge string is slow (quadratic)
# and past 4300 digits raises a ValueError of its own. 18 digits still fit a signed 64-bit integer.
MAX_INT_DIGITS = 18
_INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits only: str.isdigit and int() accept other scripts' digits
# Seconds are written with at most three decimals, so that a value the scheduler hands on as "%.3f"
# (COORDINATOR_CYCLE_TIMEOUT_S) reads back as the same number, and the smallest is 0.001.
_SECONDS = re.compile(r"-?[0-9]{1,12}(?:\.[0-9]{1,3})?")
MIN_SECONDS = 0.001


T = TypeVar("T")
D = TypeVar("D")


def parse_or_refuse(
    text: str | None, parse: Callable[[str], T], default: D, refuse: Callable[[str, ValueProblem], Exception]
) -> T | D:
    """Both sides' one read: `default` when `text` is unset (see `blank_is_unset`), else `parse(text)`; a
    `ValueProblem` becomes the side's own error, `refuse(text, problem)`, worded in its naming style."""
    if text is None:
        return default
    try:
        return parse(text)
    except ValueProblem as problem:
        raise refuse(text, problem) from None


def ascii_digits(text: str) -> int | None:
    """The number `text` spells in ASCII digits (at most 18), else None. For labels and other machine-written text."""
    if len(text) > MAX_INT_DIGITS or not _INTEGER.fullmatch(text) or text.startswith("-"):
        return None
    return int(text)


def whole_number(value: object, *, minimum: int, maximum: int, example: int, maximum_hint: str = "") -> int:
    """An already-parsed value (e.g. from JSON) that must be an int in [minimum, maximum]; bool is not a number."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueProblem("is not a whole number", f"use a whole number like {example}")
    if value < minimum:
        raise ValueProblem(f"is less than {minimum}", f"use {minimum} or more")
    if value > maximum:
        raise ValueProblem(f"is more than {maximum}", f"use at most {maximum}{maximum_hint}")
    return value


def parse_int(raw: str, *, minimum: int, maximum: int, example: int, maximum_hint: str = "") -> int:
    """A whole number in ASCII digits within [minimum, maximum]."""
    if not _INTEGER.fullmatch(raw):
        raise ValueProblem("is not a whole number", f"use a whole number like {example}")
    if len(raw.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueProblem(f"has more than {MAX_INT_DIGITS} digits", f"use at most {maximum}{maximum_hint}")
    return whole_number(int(raw), minimum=minimum, maximum=maximum, example=example, maximum_hint=maximum_hint)


def parse_switch(raw: str) -> bool:
    """true or false, in any case (Pulumi hands a boolean key over as that text)."""
    value = {"true": True, "false": False}.get(raw.lower())
    if value is None:
        raise ValueProblem("is neither true nor false", "use true or false")
    return value


def check_seconds(value: float, *, maximum: float, minimum: float = MIN_SECONDS) -> float:
    """A number of seconds: finite, at least `minimum` (so more than 0) and at most `maximum`."""
    if not math.isfinite(value):
        raise ValueProblem("is not a finite number of seconds", f"use a number of seconds up to {maximum:g}")
    if value < minimum:
        raise ValueProblem("is not more than 0 seconds", f"use at least {minimum:g}")
    if value > maximum:
        raise ValueProblem(f"is more than {maximum:g} seconds", f"use at most {maximum:g}")
    return value


def parse_seconds(raw: str, *, maximum: float, example: str, minimum: float = MIN_SECONDS) -> float:
    """Seconds written as digits with at most three decimals (`10`, `2.5`); never inf, nan or an exponent."""
    if not _SECONDS.fullmatch(raw):
        try:
            finite = math.isfinite(float(raw))  # float() takes inf, nan and 1e400 (= inf): say so plainly
        except ValueError:
            finite = True
        reason = "is not a number of seconds" if finite else "is not a finite number of seconds"
        raise ValueProblem(reason, f"use digits with at most three decimals, like {example}")
    return check_seconds(float(raw), maximum=maximum, minimum=minimum)


# --- text --------------------------------------------------------------------------------------

# Linux refuses to exec a program when one argument or environment string is longer than this
# (MAX_ARG_STRLEN, 32 pages), so Docker could create such an agent but never start it.
MAX_EXEC_STRING_BYTES = 128 * 1024


def docker_text_problem(text: str) -> str | None:
    """Why `text` cannot reach Docker as a name, argument or environment value, or None when it can.

    A NUL ends a C string (Docker refuses it), and a lone surrogate (which JSON's \\ud800 escape
    produces) cannot be encoded as UTF-8 at all.
    """
    if "\x00" in text:
        return "holds a NUL character"
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        return f"holds a character that is not valid Unicode (at position {exc.start})"
    if size > MAX_EXEC_STRING_BYTES:
        return f"is {size} bytes long, more than the {MAX_EXEC_STRING_BYTES} a process's argument may hold"
    return None


def is_one_line(text: str) -> bool:
    """No line break and no other control character (tab aside), in any script."""
    return all(char == "\t" or char.isprintable() for char in text)


def parse_list(raw: str, *, what: str, example: str) -> tuple[str, ...]:
    """A comma-separated list; a value that names nothing at all (",, ,") is refused, never read as empty."""
    items = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not items:
        raise ValueProblem(f"names no {what}", f"leave it unset for the default, or list them like {example}")
    for item in items:
        if not is_one_line(item):
            raise ValueProblem(f"has a {what} with a control character", f"list them like {example}")
    return items


# --- names -------------------------------------------------------------------------------------

# The fleet id starts every agent's container name, `<fleet>-<role>-<slot>`, which must fit a DNS label
# (63 characters: Swarm service names are DNS labels). 24 + 1 + 30 (a role key) + 1 + 4 (slot 1000) = 60.
DOCKER_RUNTIME = "docker"  # one engine
SWARM_RUNTIME = "swarm"
RUNTIMES = (DOCKER_RUNTIME, SWARM_RUNTIME)
DEFAULT_RUNTIME = DOCKER_RUNTIME


def parse_runtime(raw: str) -> str:
    """FLEET_RUNTIME, and the stack's `runtime`: one of RUNTIMES."""
    if raw not in RUNTIMES:
        raise ValueProblem("is not a runtime", f"use {' or '.join(RUNTIMES)}")
    return raw


MAX_FLEET_ID_CHARS = 24
_FLEET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def parse_fleet_id(raw: str) -> str:
    if not _FLEET_ID.fullmatch(raw):
        raise ValueProblem(
            "may hold only ASCII letters, digits, '_', '.' and '-', starting with a letter or digit",
            "use a name like agent-fleet",
        )
    if len(raw) > MAX_FLEET_ID_CHARS:
        raise ValueProblem(
            f"is {len(raw)} characters long, more than {MAX_FLEET_ID_CHARS}",
            "shorten it: agent container names are <fleet>-<role>-<slot> and must fit 63 characters",
        )
    return raw


def parse_swarm_fleet_id(raw: str) -> str:
    """A fleet id on a swarm, where it also starts every agent's service name and the coordinator's: Swarm holds
    those to DNS labels, and refuses a '.' in them ("name must be valid as a DNS name component")."""
    fleet_id = parse_fleet_id(raw)
    if "." in fleet_id:
        raise ValueProblem(
            "holds a '.', which a swarm refuses in service names (<fleet>-<role>-<slot>)",
            "use '-' or '_' in its place on a swarm",
        )
    return fleet_id


# GitHub's own rules: an owner is 1-39 letters, digits or inner single hyphens; a repository name is
# up to 100 letters, digits, '.', '_' or '-', and never '.' or '..'.
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
_REPOSITORY_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


def parse_repository(raw: str) -> str:
    """`owner/name` as GitHub spells them."""
    owner, slash, name = raw.partition("/")
    if not slash or not _OWNER.fullmatch(owner) or not _REPOSITORY_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueProblem("is not owner/name", "use the repository's owner/name, like acme/webapp")
    return raw


def repository_parts(repository: str) -> tuple[str, str]:
    """(owner, name) of a repository `parse_repository` accepted."""
    owner, _, name = repository.partition("/")
    return owner, name


# An image reference: [registry[:port]/]path[:tag][@digest], ASCII without spaces.
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}")


def parse_image(raw: str, *, example: str) -> str:
    if not _IMAGE.fullmatch(raw):
        raise ValueProblem("is not an image reference", f"use an image reference like {example}")
    return raw


# A Docker network mode: bridge, host, none, container:<name>, or a network's name.
_NETWORK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}")


def parse_network(raw: str) -> str:
    if not _NETWORK.fullmatch(raw):
        raise ValueProblem("is not a Docker network", "use bridge, host, or a network's name like fleet-net")
    return raw


# --- URLs ----------------------------------------------------------------------------------------


def parse_url(raw: str, *, example: str, schemes: Iterable[str] = ("http", "https")) -> str:
    """An absolute URL of one of `schemes`, with a host, in printable ASCII (no space or control character)."""
    allowed = tuple(schemes)
    fix = f"use a URL like {example}"
    if not raw.isascii() or not raw.isprintable() or " " in raw:
        raise ValueProblem("is not a URL: it holds a space, a control character or a non-ASCII character", fix)
    try:
        parts = urlsplit(raw)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        raise ValueProblem("is not a URL", fix) from None
    if parts.scheme.lower() not in allowed:
        wanted = " or ".join(f"{scheme}://" for scheme in allowed)
        raise ValueProblem(f"does not start with {wanted}", fix)
    if not parts.hostname and parts.scheme.lower() not in ("unix", "npipe"):
        raise ValueProblem("has no host", fix)
    if not port_ok:
        raise ValueProblem("has an invalid port", fix)
    return raw


# --- JSON ----------------------------------------------------------------------------------------

# Deeper documents are refused with a message rather than left to Python's recursion limit. The roster
# and the stack's maps are three levels deep; 32 leaves room and stays far below the C parser's limit.
MAX_JSON_DEPTH = 32


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Python would keep the last one silently; a person who wrote the key twice meant one of them.
            raise ValueProblem(f"has the key {shown(key)} twice in one object", "keep only one of them")
        result[key] = value
    return result


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueProblem(f"has a number of more than {MAX_INT_DIGITS} digits", "use a smaller number")
    return int(text)


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueProblem("has a number too large to represent", "use a smaller number")
    return number


def _constant(name: str) -> float:
    raise ValueProblem(f"has {name}, which is not JSON", "use a number")


def _depth(value: object) -> int:
    """How deeply `value` nests lists and objects, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def load_json(data: str | bytes, *, max_bytes: int | None = None) -> object:
    """Parse JSON strictly: UTF-8 only, no duplicate keys, no NaN or Infinity, no 19-digit numbers, no deep nesting.

    Raises ValueProblem naming the byte offset, line or key at fault.
    """
    if isinstance(data, bytes):
        if max_bytes is not None and len(data) > max_bytes:
            raise ValueProblem(f"is {len(data)} bytes, more than the limit of {max_bytes}", "make it smaller")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueProblem(
                f"is not UTF-8: byte {exc.start} is 0x{data[exc.start]:02x}", "write the file as UTF-8"
            ) from None
    else:
        text = data
    try:
        value: object = json.loads(
            text, object_pairs_hook=_pairs, parse_int=_int, parse_float=_float, parse_constant=_constant
        )
    except ValueProblem:
        raise
    except json.JSONDecodeError as exc:
        raise ValueProblem(
            f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", "fix the JSON"
        ) from None
    except RecursionError:
        value = None
        too_deep = True
    else:
        too_deep = _depth(value) > MAX_JSON_DEPTH
    if too_deep:
        raise ValueProblem("is nested too deeply", f"use at most {MAX_JSON_DEPTH} levels of lists and objects")
    return value


# --- numeric settings, each declared once -------------------------------------------------------


@dataclass(frozen=True)
class Count:
    """A whole-number setting, declared once: its name, meaning, default and limits. Its help text (`doc`) and
    its parser (`parse`, used by every side that reads it) are rendered from this record."""

    name: str
    meaning: str  # what it is, as sentences; the default and the limit are added by `doc`
    default: int
    maximum: int
    minimum: int = 1
    example: int | None = None  # what an error suggests; the default when None
    off: str = ""  # when set, 0 is allowed and means this ("no budget"), and is the default
    maximum_note: str = ""  # why the maximum, said after it in the help text
    maximum_hint: str = ""  # said after the maximum when a value above it is refused

    def parse(self, text: str) -> int:
        example = self.default if self.example is None else self.example
        return parse_int(text, minimum=self.minimum, maximum=self.maximum, example=example,
                         maximum_hint=self.maximum_hint)

    @property
    def doc(self) -> str:
        if self.off:
            return f"{self.meaning} Unset or 0: {self.off}; at most {self.maximum}{self.maximum_note}."
        return f"{self.meaning} Default {self.default}, at most {self.maximum}{self.maximum_note}."


class Declared(Protocol):
    """What every declaration below gives the reference: the variable's name and its help text."""

    @property
    def name(self) -> str: ...

    @property
    def doc(self) -> str: ...


Parsed = TypeVar("Parsed")
ParsedDefault = TypeVar("ParsedDefault")


@dataclass(frozen=True)
class Text(Generic[Parsed, ParsedDefault]):
    """A setting of its own kind (a fleet id, a schedule, a switch), declared once: its name, meaning, parser and
    default. The meaning says the default and the limits, as its parser's refusals do."""

    name: str
    meaning: str
    parse: Callable[[str], Parsed]
    default: ParsedDefault

    @property
    def doc(self) -> str:
        return self.meaning


@dataclass(frozen=True)
class Documented:
    """A setting read by a loader of its own (a file, a token) or by the Docker SDK, declared with its meaning."""

    name: str
    meaning: str

    @property
    def doc(self) -> str:
        return self.meaning


# A Seconds' default: a number, or None for one derived elsewhere.
SecondsDefault = TypeVar("SecondsDefault", float, None)


@dataclass(frozen=True)
class Seconds(Generic[SecondsDefault]):
    """A number of seconds, declared once like `Count`. A default of None is derived elsewhere, as
    `derived_default` says."""

    name: str
    meaning: str
    default: SecondsDefault
    maximum: float
    example: str = ""  # what an error suggests; the default when empty
    derived_default: str = ""

    def parse(self, text: str) -> float:
        return parse_seconds(text, maximum=self.maximum, example=self.example or f"{self.default:g}")

    @property
    def doc(self) -> str:
        if self.default is None:
            return f"{self.meaning} Default: {self.derived_default}. At most {self.maximum:g}."
        return f"{self.meaning} Default {self.default:g}, at most {self.maximum:g}."


@dataclass(frozen=True)
class Names:
    """A comma-separated list setting, declared once like `Count`: its help text and its parser come from here."""

    name: str
    meaning: str
    what: str  # one item, as a refusal names it ("label")
    example: str  # what a refusal suggests
    default: tuple[str, ...] = ()

    def parse(self, text: str) -> tuple[str, ...]:
        return parse_list(text, what=self.what, example=self.example)

    @property
    def doc(self) -> str:
        if not self.default:
            return self.meaning
        return f"{self.meaning} Default {','.join(self.default)}; a value that names no {self.what} is refused."


@dataclass(frozen=True)
class Url:
    """An http(s) URL setting, declared once like `Count`. Unset is None: its default, if any, is derived where it
    is read and said in `meaning`. A refusal quotes the value without userinfo, query or fragment."""

    name: str
    meaning: str
    example: str  # what a refusal suggests
    default: None = None

    def parse(self, text: str) -> str:
        return parse_url(text, example=self.example)

    @property
    def doc(self) -> str:
        return self.meaning

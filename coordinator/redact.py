"""The one scrubber: what the coordinator writes or raises never holds a credential.

`scrub(text, secrets)` is applied to every event line, every report, every error message:

- each known secret value (the GitHub token) becomes `***`, also as JSON escapes it; a value shorter than
  MIN_SECRET_CHARS is no secret (the settings refuse one) and is left alone: blanking it would wreck ordinary
  text and show the value by the gaps;
- URL userinfo becomes `***`: `https://user:token@host` -> `https://***@host`, whatever the scheme, even a
  mistyped one (`htps://`), and `user:token@host` without a scheme;
- a query string or a URL's fragment becomes `***`: `?access_token=...` -> `?***`.

`scrub_values(value, secrets)` scrubs what becomes a JSON line before it is serialised: its string values
only, never its keys, numbers or syntax, so a secret can blank some text but never break the line's structure.

`shown(value)` is how an error message quotes the value of a setting: scrubbed, cut to a readable
length, in quotes. For a URL setting (`url=True`) it also drops the query and fragment wholesale and any
userinfo before an '@', since a mistyped URL (no scheme, one slash) escapes the patterns above.

Pure and standard library only; the Pulumi side uses it for its own errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Any

REDACTED = "***"
# The fewest characters a secret has (its text stripped): every secret the coordinator, the program and the
# reference agent take (agent/entrypoint.py MIN_SECRET_CHARS says it again; a test holds the two equal).
MIN_SECRET_CHARS = 8
# A quoted value longer than this is cut: a 16 KiB brief in an error message helps nobody.
MAX_SHOWN_CHARS = 200  # long enough for a file path

# A token is a run of characters between these: whitespace, quotes, and the backslash of a JSON escape
# (eating it would break the JSON line around a URL), and angle brackets. Every rule below looks at one
# token at a time with plain string methods, so scrubbing is linear in the text: a regular expression
# that may start anywhere and run to the end (a scheme, a userinfo) turns quadratic on a 2 MB brief.
_TOKEN = re.compile(r"[^\s'\"\\<>]+")
# Inside a token, what may come right before a bare `user:password@`: `token=x:y@h`, `(x:y@h`, `[x:y@h`.
_BARE_START = re.compile(r"[(=,\[{]")


def _secret_forms(secrets: Iterable[str]) -> list[str]:
    forms: set[str] = set()
    for secret in secrets:
        if len(secret.strip()) >= MIN_SECRET_CHARS:
            forms.add(secret)
            forms.add(json.dumps(secret)[1:-1])  # as it appears inside an event line
    # Longest first, so a secret that contains another is replaced whole.
    return sorted(forms, key=len, reverse=True)


def _userinfo_end(text: str) -> int:
    """Where the userinfo at the start of `text` ends: the last '@' before any '/', '?' or '#'; -1 if none."""
    end = min((found for found in (text.find(mark) for mark in "/?#") if found != -1), default=len(text))
    return text.rfind("@", 0, end)


def _scrub_token(token: str) -> str:
    if "://" in token:
        # scheme://userinfo@host, whatever the scheme, even a mistyped one ("htps"); every URL in the token.
        first, *rests = token.split("://")
        for index, rest in enumerate(rests):
            at = _userinfo_end(rest)
            if at != -1:
                rests[index] = REDACTED + rest[at:]
        token = "://".join([first, *rests])
        # A fragment, only after a scheme: '#' elsewhere is a pull request number ("#12").
        hash_at = token.find("#", token.find("://"))
        if hash_at != -1 and hash_at < len(token) - 1:
            token = token[:hash_at] + "#" + REDACTED
    else:
        # user:password@host without a scheme, at the start of the token or after `=`, `(`, `,`, `[`, `{`.
        pieces = _BARE_START.split(token)
        marks = _BARE_START.findall(token)
        for index, piece in enumerate(pieces):
            at = _userinfo_end(piece)
            if at > 0 and ":" in piece[:at] and at < len(piece) - 1:
                pieces[index] = REDACTED + piece[at:]
        token = pieces[0] + "".join(mark + piece for mark, piece in zip(marks, pieces[1:], strict=True))
    # A query string: a '?' glued to what precedes it and followed by something ("?token", "?a=b"). A lone
    # '?' (cron's "0 0 ? * MON", "is it set?") is its own token or ends one, and is left alone.
    question = token.find("?", 1)
    while question != -1 and token[question - 1] == "?":
        question = token.find("?", question + 1)
    if question != -1 and question < len(token) - 1:
        token = token[:question] + "?" + REDACTED
    return token


def _scrub(text: str, forms: list[str]) -> str:
    for form in forms:
        text = text.replace(form, REDACTED)
    return _TOKEN.sub(lambda match: _scrub_token(match.group(0)), text)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the known `secrets`, URL userinfo, query strings or URL fragments."""
    return _scrub(text, _secret_forms(secrets))


def scrub_values(value: Any, secrets: Iterable[str] = ()) -> Any:
    """`value`, JSON-like data, with each string value scrubbed; dict keys, numbers, booleans, None, times and
    enumeration members (the code's own words: a verdict, a status) as they are. Anything else becomes its
    scrubbed text, as `json.dumps(default=str)` would have written it unscrubbed."""
    forms = _secret_forms(secrets)

    def walk(item: Any) -> Any:
        if isinstance(item, Enum) or item is None or isinstance(item, bool | int | float | datetime):
            return item
        if isinstance(item, str):
            return _scrub(item, forms)
        if isinstance(item, dict):
            return {key: walk(inner) for key, inner in item.items()}
        if isinstance(item, list | tuple):
            return [walk(inner) for inner in item]
        return _scrub(str(item), forms)

    return walk(value)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 1] + "…"


def shown(value: object, *, url: bool = False, secrets: Iterable[str] = ()) -> str:
    """How an error message quotes a setting's value: scrubbed, cut short, quoted like repr()."""
    if not isinstance(value, str):
        return _cut(scrub(repr(value), secrets))
    text = scrub(value, secrets)
    if url:
        # Whatever follows the first '?' or '#', and whatever precedes an '@' back to a '/', is never shown.
        cut_at = min((found for found in (text.find("?"), text.find("#")) if found != -1), default=-1)
        if cut_at != -1:
            text = text[: cut_at + 1] + REDACTED
        text = "/".join(
            REDACTED + segment[segment.rfind("@"):] if "@" in segment else segment for segment in text.split("/")
        )
    return repr(_cut(text))


class Secret:
    """A string that never shows itself in repr, str or f-strings; `reveal()` is the only way out. Here, below the
    settings, so that the identities the settings read can hold one too."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

"""The one scrubber: what the coordinator writes or raises never holds a credential.

`scrub(text, secrets)` is applied to every event line, every report, every error message:

- each known secret value (the GitHub token) becomes `***`, also as JSON escapes it;
- URL userinfo becomes `***`: `https://user:token@host` -> `https://***@host`, whatever the scheme, even a
  mistyped one (`htps://`), and `user:token@host` without a scheme;
- a query string or a URL's fragment becomes `***`: `?access_token=...` -> `?***`.

`shown(value)` is how an error message quotes the value of a setting: scrubbed, cut to a readable
length, in quotes. For a URL setting (`url=True`) it also drops the query and fragment wholesale and any
userinfo before an '@', since a mistyped URL (no scheme, one slash) escapes the patterns above.

Pure and standard library only; the Pulumi side uses it for its own errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

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
        if secret:
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


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the known `secrets`, URL userinfo, query strings or URL fragments."""
    for secret in _secret_forms(secrets):
        text = text.replace(secret, REDACTED)
    return _TOKEN.sub(lambda match: _scrub_token(match.group(0)), text)


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

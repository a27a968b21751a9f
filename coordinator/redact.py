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
# A quoted value longer than this is cut: a 16 KiB brief in an error message helps nobody.
MAX_SHOWN_CHARS = 100

# The characters that end a URL inside text: whitespace, quotes, and the backslash of a JSON escape
# (eating it would break the JSON line around the URL).
_END = r"\s'\"\\<>"
# scheme://userinfo@ -> scheme://***@ ; any scheme, since a mistyped one ("htps") hides a token just as well.
_SCHEME_USERINFO = re.compile(rf"([A-Za-z][A-Za-z0-9+.-]*://)[^{_END}/?#]*@")
# user:password@host without a scheme.
_BARE_USERINFO = re.compile(rf"(?<![^{_END}(=,\[{{])[^{_END}/?#@:]+:[^{_END}/?#@]+@(?=[^{_END}@])")
# A URL's fragment: only after scheme://, since '#' elsewhere is a pull request number ("#12").
_FRAGMENT = re.compile(rf"([A-Za-z][A-Za-z0-9+.-]*://[^{_END}?#]*(?:\?[^{_END}#]*)?)#[^{_END}]+")
# A query string: a '?' glued to what precedes it and followed by something ("?token", "?a=b").
# A lone '?' (cron's "0 0 ? * MON", "is it set?") is left alone.
_QUERY = re.compile(rf"(?<=[^{_END}?])\?[^{_END}]+")


def _secret_forms(secrets: Iterable[str]) -> list[str]:
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms.add(secret)
            forms.add(json.dumps(secret)[1:-1])  # as it appears inside an event line
    # Longest first, so a secret that contains another is replaced whole.
    return sorted(forms, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the known `secrets`, URL userinfo, query strings or URL fragments."""
    for secret in _secret_forms(secrets):
        text = text.replace(secret, REDACTED)
    text = _SCHEME_USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _BARE_USERINFO.sub(f"{REDACTED}@", text)
    text = _FRAGMENT.sub(rf"\1#{REDACTED}", text)
    return _QUERY.sub(f"?{REDACTED}", text)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 1] + "…"


def shown(value: object, *, url: bool = False, secrets: Iterable[str] = ()) -> str:
    """How an error message quotes a setting's value: scrubbed, cut short, quoted like repr()."""
    if not isinstance(value, str):
        return _cut(scrub(repr(value), secrets))
    text = scrub(value, secrets)
    if url:
        # Whatever follows the first '?' or '#', and whatever precedes an '@' back to a '/', is never shown.
        text = re.sub(r"([?#]).*", rf"\1{REDACTED}", text, flags=re.DOTALL)
        text = re.sub(r"[^/@]*@", f"{REDACTED}@", text)
    return repr(_cut(text))

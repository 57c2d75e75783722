"""What a person may see of text that cacheport did not write itself (a build log, a server's error message, a
docker client's complaint): secret values masked, also in their base64 forms; control characters escaped; one
line of bounded length.

Pure functions, called at the output edges: the build log, error lines, doctor's checks, registry messages. A
leaf: it imports nothing of cacheport's, so every layer may use it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

MASK = "***"
#: Shorter values are not masked: they would hide ordinary words and say nothing about the secret.
MIN_SECRET = 4
_MIN_CORE = 6  # a base64 fragment shorter than this matches ordinary text


def secret_forms(values: Iterable[str]) -> frozenset[str]:
    """Every form in which these secret values may show up in text.

    The value itself, and its base64 encoding at each of the three byte offsets (standard and URL-safe
    alphabets), so a secret is also found inside a longer base64 text: an echoed ``Authorization: Basic``
    header holds ``base64(user:password)``, a docker config's ``auth`` the same.
    """
    forms: set[str] = set()
    for value in values:
        if len(value) < MIN_SECRET:
            continue
        forms.add(value)
        data = value.encode("utf-8", "surrogateescape")
        for shift in range(3):
            text = base64.b64encode(b"\0" * shift + data).decode("ascii")
            # Only the characters whose six bits all come from the value are the same wherever it sits.
            core = text[-(-8 * shift // 6): 8 * (shift + len(data)) // 6]
            if len(core) >= _MIN_CORE:
                forms.add(core)
                forms.add(core.translate(str.maketrans("+/", "-_")))
    return frozenset(forms)


def mask(text: str, forms: Iterable[str]) -> str:
    """``text`` with every occurrence of each form replaced by ``***`` (longest first)."""
    ordered = sorted(set(forms), key=len, reverse=True)
    if not ordered or not text:
        return text
    return re.sub("|".join(re.escape(f) for f in ordered), MASK, text)


def printable(value: object, limit: int = 400) -> str:
    """One line for a person: whitespace runs become one space, other control and format characters (terminal
    escape sequences, bidi overrides) are shown escaped, and the whole is cut to ``limit`` characters."""
    out = []
    for ch in " ".join(str(value).split()):
        out.append(ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# A colour (kept), a carriage return that does not end a line, and every other control or format character.
_CONTROL = re.compile(r"\x1b\[[0-9;]*m|\r(?!\n)|[^\S\n\t \r]"
                      r"|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(line: str) -> str:
    """A line of a log (a build's) as it may reach a terminal: colours (SGR sequences) kept, every other control
    character shown escaped, so no output can clear the screen, set a title, write the clipboard or hide text."""

    def one(match: re.Match[str]) -> str:
        text = match.group(0)
        return text if text.startswith("\x1b[") else text.encode("unicode_escape").decode("ascii")

    return _CONTROL.sub(one, line)


def shown_value(value: str, limit: int = 80) -> str:
    """A value a user gave, quoted for an error line: printable and at most ``limit`` characters."""
    text = repr(value[: limit + 1])
    return printable(text if len(value) <= limit else repr(value[:limit]) + f"… ({len(value)} characters)")

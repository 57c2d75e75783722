"""A person's view of buildx's ``--progress=rawjson`` stream, printed as it arrives, in the shape of
``--progress=plain``: each step's name, its output, and how it ended.

``cacheport build`` asks buildx for rawjson because it is the one record that says, per cache entry, what
BuildKit did (:mod:`cacheport.report` reads it, with the same decoder); this keeps the log readable while it
does. Pure: it gets text and hands back lines.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

from cacheport.ops.docker import said
from cacheport.report.rawjson import Decoder
from cacheport.timestamps import go_time


def _seconds(start: Any, end: Any) -> str:
    began, ended = go_time(start), go_time(end)
    if began is None or ended is None:
        return ""
    return f" {(ended - began).total_seconds():.1f}s"


class PlainPrinter:
    """Feed it the stream in pieces (``feed``), then ``close``; it calls ``write`` with whole lines."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.numbers: dict[str, int] = {}
        self.names: dict[str, str] = {}
        self.shown: set[str] = set()
        self.ended: set[str] = set()
        self.statuses: set[tuple[str, str]] = set()
        self.decoder = Decoder()

    def feed(self, text: str) -> None:
        self._show(self.decoder.feed(text))

    def close(self) -> None:
        self._show(self.decoder.close())

    def _show(self, items: list[dict[str, Any] | str]) -> None:
        for item in items:
            if isinstance(item, dict):
                self._status(item)
            else:
                self.write(item + "\n")  # buildx's own lines: warnings, ERROR: ...

    def _number(self, digest: str) -> int:
        """A step's number, given when it starts (as plain progress does); its name is printed then."""
        if digest not in self.shown:
            self.shown.add(digest)
            self.numbers.setdefault(digest, len(self.numbers) + 1)
            self.write(f"#{self.numbers[digest]} {self.names.get(digest, '')}\n")
        return self.numbers[digest]

    def _status(self, doc: dict[str, Any]) -> None:
        for v in doc.get("vertexes") or ():
            if not isinstance(v, dict):
                continue
            digest = str(v.get("digest", ""))
            self.names[digest] = str(v.get("name") or self.names.get(digest, ""))
            if not (v.get("started") or v.get("completed")):
                continue  # known, not begun: plain progress does not show it yet
            n = self._number(digest)
            if v.get("completed") and digest not in self.ended:
                self.ended.add(digest)
                if v.get("error"):
                    self.write(f"#{n} ERROR: {v['error']}\n")
                elif v.get("cached"):
                    self.write(f"#{n} CACHED\n")
                else:
                    self.write(f"#{n} DONE{_seconds(v.get('started'), v.get('completed'))}\n")
        for s in doc.get("statuses") or ():
            if not isinstance(s, dict) or not s.get("completed"):
                continue
            key = (str(s.get("vertex", "")), str(s.get("id", "")))
            if key not in self.statuses:
                self.statuses.add(key)
                self.write(f"#{self._number(key[0])} {key[1]} done\n")
        for log in doc.get("logs") or ():
            if not isinstance(log, dict):
                continue
            try:
                data = base64.b64decode(str(log.get("data", ""))).decode("utf-8", errors="replace")
            except ValueError:
                continue
            n = self._number(str(log.get("vertex", "")))
            for line in data.splitlines():
                if line.strip():
                    self.write(f"#{n} {line.rstrip()}\n")
        for warning in doc.get("warnings") or ():
            if isinstance(warning, dict):
                try:
                    short = base64.b64decode(str(warning.get("short", ""))).decode("utf-8", errors="replace")
                except ValueError:
                    short = ""
                if short:
                    self.write(f"WARNING: {short.strip()}\n")


#: ``--progress`` values buildx takes; cacheport keeps rawjson for itself and shows the user one of these.
PROGRESS_MODES = ("auto", "plain", "tty", "quiet", "rawjson")


def take_progress(extra: Sequence[str]) -> tuple[list[str], str | None]:
    """buildx's arguments without ``--progress`` (cacheport needs rawjson to read what happened to the cache),
    and the mode the user asked for there (the last one), or None."""
    rest: list[str] = []
    mode: str | None = None
    words = iter(extra)
    for word in words:
        if word == "--progress":
            mode = next(words, mode)
        elif word.startswith("--progress="):
            mode = word.split("=", 1)[1]
        else:
            rest.append(word)
    return rest, mode


class Prelude:
    """What buildx says before the build starts (before its first rawjson record), held back: a build that
    never starts is reported in one line, not with buildx's whole usage text."""

    def __init__(self, feed: Callable[[str], None]) -> None:
        self.feed = feed
        self.held: list[str] = []
        self.started = False

    def add(self, text: str) -> None:
        if not self.started and text.lstrip().startswith("{"):
            self.started = True
            for held in self.held:
                self.feed(held)
            self.held = []
        if self.started:
            self.feed(text)
        else:
            self.held.append(text)

    def failure(self) -> str:
        """The line that says why buildx did not start: its first ``ERROR``, else its last line."""
        lines = said(line.strip() for line in "".join(self.held).splitlines())
        return next((line for line in lines if line.startswith("ERROR")), lines[-1] if lines else "no output")

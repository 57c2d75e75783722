"""buildx's ``--progress=rawjson`` stream: one decoder for its status objects and the lines between them (shared
with the live progress printer, :mod:`cacheport.cli.build`), and ``parse_rawjson``, the only source that says
per entry whether an import hit, missed or failed and whether an export was written. Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from cacheport.entry import CacheEntry
from cacheport.refs import split_host
from cacheport.report import model
from cacheport.report.model import BuildReport, ExportReport, ImportReport, Steps, one_line
from cacheport.timestamps import go_time

_STEP = re.compile(r"\[(?:[^\]]* )?\d+/\d+\] ")
# A stage's base image: BuildKit resolves it (and pulls it only if a step needs its layers), never marks it cached
# however warm the build, and no cache export holds it. It is not a step the layer cache can save.
_BASE = re.compile(r"\[(?:[^\]]* )?\d+/\d+\] FROM ")
_IMPORT = "importing cache manifest from "
# The progress vertex each cache exporter opens, by cache type (BuildKit 0.13 to 0.25 name them alike).
_EXPORT_VERTEX = {
    "registry": "exporting cache to registry",
    "local": "exporting cache to client directory",
    "gha": "exporting to GitHub Actions Cache",
    "s3": "exporting cache to Amazon S3",
    "azblob": "exporting cache to Azure Blob Storage",
}
# buildx drops a local import whose directory holds no cache, before BuildKit sees it, with this warning.
_LOCAL_MISSING = re.compile(r"WARNING: local cache import at (.+?) not found due to err: (.*)")
_FETCH = re.compile(r"(?:extracting )?sha256:[0-9a-f]{64}\Z")
_MANIFEST_STATUS = re.compile(r"writing cache (image )?manifest (sha256:[0-9a-f]{64})")
_NEVER = datetime.max.replace(tzinfo=UTC)
# A status object larger than this is not one: what has arrived is read as text instead of waiting for more.
_LIMIT = 8 << 20


class Decoder:
    """The stream fed in pieces (``feed``, then ``close``): its JSON objects and the lines of text between them.

    buildx 0.13 pretty-prints each status over many lines, 0.29 writes one a line, and both end with buildx's own
    plain-text lines (warnings, ``ERROR: ...``). An object still arriving is held until the next piece.
    """

    def __init__(self) -> None:
        self.buffer = ""
        self._json = json.JSONDecoder()

    def feed(self, text: str) -> list[dict[str, Any] | str]:
        self.buffer += text
        return self._drain(final=False)

    def close(self) -> list[dict[str, Any] | str]:
        return self._drain(final=True)

    def _drain(self, final: bool) -> list[dict[str, Any] | str]:
        out: list[dict[str, Any] | str] = []
        text, i, n = self.buffer, 0, len(self.buffer)
        while True:
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                break
            if text[i] == "{":
                try:
                    value, end = self._json.raw_decode(text, i)
                except (ValueError, RecursionError):
                    if not final and n - i < _LIMIT:
                        break  # an object still arriving
                else:
                    i = end
                    if isinstance(value, dict):
                        out.append(value)
                    continue
            newline = text.find("\n", i)
            if newline < 0 and not final:
                break
            end = n if newline < 0 else newline
            out.append(text[i:end].rstrip())
            i = end
        self.buffer = text[i:]
        return out


def stream(text: str) -> list[dict[str, Any] | str]:
    """A whole stream's JSON objects and the lines of text between them."""
    decoder = Decoder()
    return [*decoder.feed(text), *decoder.close()]


@attrs.define
class _Vertex:
    name: str = ""
    started: datetime | None = None
    completed: datetime | None = None
    cached: bool = False
    error: str = ""
    statuses: dict[str, dict[str, Any]] = attrs.Factory(dict)
    logs: int = 0


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start and end else None


def _vertices(text: str) -> tuple[dict[str, _Vertex], list[str]]:
    vertices: dict[str, _Vertex] = {}
    lines: list[str] = []
    for item in stream(text):
        if isinstance(item, str):
            if item:
                lines.append(item)
            continue
        for v in item.get("vertexes") or ():
            vertex = vertices.setdefault(str(v.get("digest", "")), _Vertex())
            vertex.name = str(v.get("name") or vertex.name)
            vertex.started = vertex.started or go_time(v.get("started"))
            vertex.completed = go_time(v.get("completed")) or vertex.completed
            vertex.cached = vertex.cached or bool(v.get("cached"))
            vertex.error = str(v.get("error") or vertex.error)
        for s in item.get("statuses") or ():
            vertex = vertices.setdefault(str(s.get("vertex", "")), _Vertex())
            vertex.statuses[str(s.get("id", ""))] = s
        for log in item.get("logs") or ():
            vertex = vertices.setdefault(str(log.get("vertex", "")), _Vertex())
            vertex.logs += 1
    return vertices, lines


def _step_cached(v: _Vertex) -> bool:
    # A step satisfied from an imported cache may only show its layers being fetched, and print nothing.
    fetched = bool(v.statuses) and all(_FETCH.match(sid) for sid in v.statuses)
    return v.cached or (fetched and v.logs == 0)


def normalize_ref(ref: str) -> str:
    """An image reference as BuildKit canonicalizes it: with a registry host and a tag."""
    name, at, digest = ref.partition("@")
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif not split_host(name)[0]:
        name = f"docker.io/{name}"
    if not at and ":" not in name.rpartition("/")[2]:
        name += ":latest"
    return f"{name}{at}{digest}"


def _by_start(vertices: Iterable[_Vertex]) -> list[_Vertex]:
    # history logs merge a build's statuses into one object, so the order of appearance means nothing there
    return sorted(vertices, key=lambda v: v.started or _NEVER)


def _import_error(entry: CacheEntry, error: str) -> str:
    """BuildKit's words without what the report already says: which importer, which ref."""
    text = one_line(error).removeprefix(f"failed to configure {entry.type} cache importer: ")
    ref = entry.get("ref")
    return text.removeprefix(f"{ref}: ") if ref else text


def _import_from(entry: CacheEntry, v: _Vertex) -> ImportReport:
    if v.error:
        missing = entry.type in model.SAYS_MISSING and v.error.rstrip().endswith("not found")
        return ImportReport(entry, model.MISSED if missing else model.FAILED, _import_error(entry, v.error))
    if entry.type not in model.SAYS_MISSING:
        return ImportReport(entry, model.UNKNOWN, f"BuildKit does not report whether the {entry.type} cache existed")
    if v.completed:
        return ImportReport(entry, model.HIT, seconds=_seconds(v.started, v.completed))
    return ImportReport(entry, model.UNKNOWN, "the import never finished")


def _imports(entries: Sequence[CacheEntry], vertices: list[_Vertex], lines: list[str], build_failed: bool,
             any_seen: bool) -> list[ImportReport]:
    found = [v for v in _by_start(vertices) if v.name.startswith(_IMPORT)]
    dropped = {m.group(1) for line in lines if (m := _LOCAL_MISSING.search(line))}
    reports: list[ImportReport | None] = [None] * len(entries)
    # Registry imports name their ref; the others a hash, so they match their entries in order.
    for i, entry in enumerate(entries):
        if entry.type == "registry" and entry.get("ref"):
            wanted = {str(entry.get("ref")), normalize_ref(str(entry.get("ref")))}
            v = next((v for v in found if v.name[len(_IMPORT):] in wanted), None)
            if v is not None:
                found.remove(v)
                reports[i] = _import_from(entry, v)
        elif entry.type == "local" and entry.get("src") in dropped:
            reports[i] = ImportReport(entry, model.MISSED, model.LOCAL_DROPPED)
    for i, entry in enumerate(entries):
        if reports[i] is not None:
            continue
        v = next((v for v in found if v.name[len(_IMPORT):].startswith(f"{entry.type}:")), None)
        if v is not None:
            found.remove(v)
            reports[i] = _import_from(entry, v)
        elif build_failed and not found:
            reports[i] = ImportReport(entry, model.UNKNOWN, "the build failed before importing")
        elif any_seen and entry.type == "local":
            # buildx drops a local import for one reason only: no cache at src (its warning is not in history logs)
            reports[i] = ImportReport(entry, model.MISSED, model.LOCAL_DROPPED)
        elif any_seen:
            reports[i] = ImportReport(entry, model.FAILED, model.NOT_PASSED)
        else:
            reports[i] = ImportReport(entry, model.UNKNOWN, "the progress stream has no record of it")
    return [r for r in reports if r is not None]


def _export_from(entry: CacheEntry, v: _Vertex) -> ExportReport:
    layers = [s for sid, s in v.statuses.items() if sid.startswith("writing layer ")]
    sizes = [int(s.get("total") or 0) for s in layers]
    fmt = digest = ""
    for sid in v.statuses:
        if m := _MANIFEST_STATUS.match(sid):
            fmt, digest = ("image-manifest" if m.group(1) else "index"), m.group(2)
    seconds = _seconds(v.started, v.completed)
    size = sum(sizes) if any(sizes) else None
    if v.error:
        return ExportReport(entry, model.FAILED, one_line(v.error), seconds, size, len(layers) or None, fmt, digest)
    status, reason = (model.WRITTEN, "") if v.completed else (model.UNKNOWN, "the export never finished")
    return ExportReport(entry, status, reason, seconds, size, len(layers), fmt, digest)


def _exports(entries: Sequence[CacheEntry], vertices: list[_Vertex], build_failed: bool,
             any_seen: bool) -> list[ExportReport]:
    found = _by_start(vertices)
    reports = []
    for entry in entries:
        name = _EXPORT_VERTEX.get(entry.type)
        v = next((v for v in found if name and v.name == name), None)
        if v is not None:
            found.remove(v)  # several exports of one type: in the order BuildKit started them
            reports.append(_export_from(entry, v))
        elif entry.type == "inline":
            reports.append(ExportReport(entry, model.UNKNOWN, "an inline cache travels in the pushed image"))
        elif build_failed:
            reports.append(ExportReport(entry, model.SKIPPED, "the build failed before exporting"))
        elif any_seen and name:
            reports.append(ExportReport(entry, model.FAILED, "BuildKit never tried it: buildx did not pass it on"))
        else:
            reports.append(ExportReport(entry, model.UNKNOWN, "the progress stream has no record of it"))
    return reports


def parse_rawjson(stream: str | Iterable[str], imports: Sequence[CacheEntry] = (),
                  exports: Sequence[CacheEntry] = ()) -> BuildReport:
    """Read a ``--progress=rawjson`` stream: buildx's stderr as it is, or its lines."""
    text = stream if isinstance(stream, str) else "\n".join(line.rstrip("\n") for line in stream)
    by_digest, lines = _vertices(text)
    vertices = [v for v in by_digest.values() if v.name]
    steps = [v for v in vertices if _STEP.match(v.name) and not _BASE.match(v.name)]
    cached = sum(1 for v in steps if _step_cached(v))
    failed_step = next((v for v in _by_start(steps) if v.error), None)
    error_line = next((line for line in reversed(lines) if line.startswith("ERROR:")), "")
    if failed_step is not None:
        status, error = "failed", one_line(f"{failed_step.name}: {failed_step.error}")
    elif error_line:
        status, error = "failed", one_line(error_line.removeprefix("ERROR:").strip())
    else:
        status, error = (model.SUCCEEDED if vertices else model.UNKNOWN), ""
    starts = [v.started for v in vertices if v.started]
    ends = [v.completed for v in vertices if v.completed]
    return BuildReport(
        status=status,
        error=error,
        # A step that never started (after a failed one) did not run: it is neither cached nor executed.
        steps=Steps(len(steps), cached, sum(1 for v in steps if v.started and not _step_cached(v))) if steps else None,
        imports=_imports(imports, vertices, lines, status == "failed", bool(vertices)),
        exports=_exports(exports, vertices, status == "failed", bool(vertices)),
        wall_seconds=_seconds(min(starts), max(ends)) if starts and ends else None,
        sources=("rawjson",),
        first_run=next((v.name for v in _by_start(steps) if v.started and not _step_cached(v)), ""),
    )

"""What BuildKit itself says a build did with its cache, read from buildx's own records; never from the plan.

Three sources, each with a pure parser that answers for the plan's import and export entries:

- ``parse_rawjson``: the ``--progress=rawjson`` stream (from the build's stderr, or from
  ``docker buildx history logs --progress=rawjson REF``), the only source that says per entry whether an import hit,
  missed or failed and whether an export was written;
- ``parse_history``: ``docker buildx history inspect REF --format json`` (buildx >= 0.21): status, error, step
  counts, duration, and the imports BuildKit actually received;
- ``parse_metadata``: the ``--metadata-file`` document: the build's ref, and the cache manifest an export wrote.

``merge`` combines reports of one build from several sources; ``as_text``, ``as_dict`` and ``as_markdown`` render
one. Nothing here runs buildx, reads a file or the environment: callers hand over text or parsed JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs

from cacheport.entry import CacheEntry
from cacheport.errors import ReportError

HIT, MISSED, FAILED, UNKNOWN = "hit", "missed", "failed", "unknown"
WRITTEN, SKIPPED = "written", "skipped"
SUCCEEDED = "succeeded"
SOURCES = ("rawjson", "history", "metadata")  # most detailed first: merge prefers them in this order

_STEP = re.compile(r"\[(?:[^\]]* )?\d+/\d+\] ")
_IMPORT = "importing cache manifest from "
# The progress vertex each cache exporter opens, by cache type (BuildKit 0.13 to 0.25 name them alike).
_EXPORT_VERTEX = {
    "registry": "exporting cache to registry",
    "local": "exporting cache to client directory",
    "gha": "exporting to GitHub Actions Cache",
    "s3": "exporting cache to Amazon S3",
    "azblob": "exporting cache to Azure Blob Storage",
}
# Types whose importer reports a missing cache as an error; gha, s3 and azblob import nothing without one.
_SAYS_MISSING = ("registry", "local")
# buildx drops a local import whose directory holds no cache, before BuildKit sees it, with this warning.
_LOCAL_MISSING = re.compile(r"WARNING: local cache import at (.+?) not found due to err: (.*)")
_LOCAL_DROPPED = "not found (no cache at src: buildx dropped it before the build)"
_NOT_PASSED = "BuildKit never tried it: buildx did not pass it on"
_FETCH = re.compile(r"(?:extracting )?sha256:[0-9a-f]{64}\Z")
_MANIFEST_STATUS = re.compile(r"writing cache (image )?manifest (sha256:[0-9a-f]{64})")
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_REASON_MAX = 240
_NEVER = datetime.max.replace(tzinfo=UTC)


@attrs.frozen
class Steps:
    """How much of the build came from cache.

    Attributes:
        total: steps seen.
        cached: steps BuildKit did not run (cached locally or satisfied from an imported cache).
        executed: steps that ran (after a failed step, some may have run neither from cache nor at all).
        counts: ``steps`` (the Dockerfile's ``[n/m]`` steps, from a progress stream) or ``vertices`` (BuildKit's
            own count in build history, which includes its internal steps: loading the definition and the
            context, importing and exporting cache).
    """

    total: int
    cached: int
    executed: int
    counts: str = "steps"


@attrs.frozen
class ImportReport:
    """What became of one ``--cache-from`` entry.

    Attributes:
        entry: the plan's entry.
        status: ``hit`` (the cache was found and read), ``missed`` (there is no cache there), ``failed`` (it could
            not be read, e.g. the registry is down or refused the credentials) or ``unknown`` (the source does not
            say; gha, s3 and azblob never report a miss).
        reason: BuildKit's or buildx's own words, in one line; empty for a hit.
    """

    entry: CacheEntry
    status: str
    reason: str = ""


@attrs.frozen
class ExportReport:
    """What became of one ``--cache-to`` entry.

    Attributes:
        entry: the plan's entry.
        status: ``written``, ``failed`` (even when ``ignore-error`` let the build pass), ``skipped`` (the build
            failed before exporting) or ``unknown``.
        reason: BuildKit's or buildx's own words, in one line; empty when written.
        seconds: how long the export took, when BuildKit reported it.
        size: bytes written, when BuildKit reported them (BuildKit 0.13 to 0.25 report none for cache exports).
        layers: how many layer blobs it wrote (or found already there), when reported.
        format: ``image-manifest`` or ``index``, when reported.
        digest: the cache manifest's digest, when reported.
    """

    entry: CacheEntry
    status: str
    reason: str = ""
    seconds: float | None = None
    size: int | None = None
    layers: int | None = None
    format: str = ""
    digest: str = ""


def _import_tuple(values: Iterable[ImportReport]) -> tuple[ImportReport, ...]:
    return tuple(values)


def _export_tuple(values: Iterable[ExportReport]) -> tuple[ExportReport, ...]:
    return tuple(values)


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@attrs.frozen
class BuildReport:
    """One build's cache, as BuildKit recorded it.

    Attributes:
        status: ``succeeded``, ``failed`` or ``unknown``.
        error: why the build failed, in one line; empty otherwise.
        steps: step counts, when the source has them.
        imports: one report per planned import, in the plan's order.
        exports: one report per planned export, in the plan's order.
        wall_seconds: the build's duration in BuildKit, when known.
        ref: the build's record in ``docker buildx history`` (the last part of ``buildx.build.ref``), when known.
        sources: which sources this was read from (see SOURCES).
    """

    status: str
    error: str = ""
    steps: Steps | None = None
    imports: tuple[ImportReport, ...] = attrs.field(default=(), converter=_import_tuple)
    exports: tuple[ExportReport, ...] = attrs.field(default=(), converter=_export_tuple)
    wall_seconds: float | None = None
    ref: str = ""
    sources: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)


# --- the rawjson stream ------------------------------------------------------------------------------------------


@attrs.define
class _Vertex:
    name: str = ""
    started: datetime | None = None
    completed: datetime | None = None
    cached: bool = False
    error: str = ""
    statuses: dict[str, dict[str, Any]] = attrs.Factory(dict)
    logs: int = 0


def _stream(text: str) -> Iterator[dict[str, Any] | str]:
    """JSON objects and the lines of text between them: buildx 0.13 pretty-prints each status over many lines,
    0.29 writes one a line, and both end with buildx's own plain-text lines (warnings, ``ERROR: ...``)."""
    decoder = json.JSONDecoder()
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return
        if text[i] == "{":
            try:
                value, i = decoder.raw_decode(text, i)
            except ValueError:
                pass
            else:
                if isinstance(value, dict):
                    yield value
                continue
        end = text.find("\n", i)
        end = n if end < 0 else end
        yield text[i:end].rstrip()
        i = end


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    # Go writes nanoseconds, Python reads microseconds at most.
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start and end else None


def one_line(text: str) -> str:
    """A message squeezed onto one line of reasonable length."""
    line = " ".join(text.split())
    return line if len(line) <= _REASON_MAX else line[: _REASON_MAX - 1] + "…"


def _vertices(text: str) -> tuple[dict[str, _Vertex], list[str]]:
    vertices: dict[str, _Vertex] = {}
    lines: list[str] = []
    for item in _stream(text):
        if isinstance(item, str):
            if item:
                lines.append(item)
            continue
        for v in item.get("vertexes") or ():
            vertex = vertices.setdefault(str(v.get("digest", "")), _Vertex())
            vertex.name = str(v.get("name") or vertex.name)
            vertex.started = vertex.started or _time(v.get("started"))
            vertex.completed = _time(v.get("completed")) or vertex.completed
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
    first, slash, _rest = name.partition("/")
    if not slash:
        name = f"docker.io/library/{name}"
    elif not ("." in first or ":" in first or first == "localhost"):
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
        missing = entry.type in _SAYS_MISSING and v.error.rstrip().endswith("not found")
        return ImportReport(entry, MISSED if missing else FAILED, _import_error(entry, v.error))
    if entry.type not in _SAYS_MISSING:
        return ImportReport(entry, UNKNOWN, f"BuildKit does not report whether the {entry.type} cache existed")
    return ImportReport(entry, HIT if v.completed else UNKNOWN, "" if v.completed else "the import never finished")


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
            reports[i] = ImportReport(entry, MISSED, _LOCAL_DROPPED)
    for i, entry in enumerate(entries):
        if reports[i] is not None:
            continue
        v = next((v for v in found if v.name[len(_IMPORT):].startswith(f"{entry.type}:")), None)
        if v is not None:
            found.remove(v)
            reports[i] = _import_from(entry, v)
        elif build_failed and not found:
            reports[i] = ImportReport(entry, UNKNOWN, "the build failed before importing")
        elif any_seen and entry.type == "local":
            # buildx drops a local import for one reason only: no cache at src (its warning is not in history logs)
            reports[i] = ImportReport(entry, MISSED, _LOCAL_DROPPED)
        elif any_seen:
            reports[i] = ImportReport(entry, FAILED, _NOT_PASSED)
        else:
            reports[i] = ImportReport(entry, UNKNOWN, "the progress stream has no record of it")
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
        return ExportReport(entry, FAILED, one_line(v.error), seconds, size, len(layers) or None, fmt, digest)
    status, reason = (WRITTEN, "") if v.completed else (UNKNOWN, "the export never finished")
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
            reports.append(ExportReport(entry, UNKNOWN, "an inline cache travels in the pushed image"))
        elif build_failed:
            reports.append(ExportReport(entry, SKIPPED, "the build failed before exporting"))
        elif any_seen and name:
            reports.append(ExportReport(entry, FAILED, "BuildKit never tried it: buildx did not pass it on"))
        else:
            reports.append(ExportReport(entry, UNKNOWN, "the progress stream has no record of it"))
    return reports


def parse_rawjson(stream: str | Iterable[str], imports: Sequence[CacheEntry] = (),
                  exports: Sequence[CacheEntry] = ()) -> BuildReport:
    """Read a ``--progress=rawjson`` stream: buildx's stderr as it is, or its lines."""
    text = stream if isinstance(stream, str) else "\n".join(line.rstrip("\n") for line in stream)
    by_digest, lines = _vertices(text)
    vertices = [v for v in by_digest.values() if v.name]
    steps = [v for v in vertices if _STEP.match(v.name)]
    cached = sum(1 for v in steps if _step_cached(v))
    failed_step = next((v for v in _by_start(steps) if v.error), None)
    error_line = next((line for line in reversed(lines) if line.startswith("ERROR:")), "")
    if failed_step is not None:
        status, error = "failed", one_line(f"{failed_step.name}: {failed_step.error}")
    elif error_line:
        status, error = "failed", one_line(error_line.removeprefix("ERROR:").strip())
    else:
        status, error = (SUCCEEDED if vertices else UNKNOWN), ""
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
    )


# --- build history -----------------------------------------------------------------------------------------------


def _received(doc: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The cache imports BuildKit received (the frontend attribute ``cache-imports``), or None if unrecorded."""
    config = doc.get("Config") or {}
    for item in config.get("RestRaw") or ():
        if isinstance(item, Mapping) and item.get("Name") == "cache-imports":
            try:
                value = json.loads(str(item.get("Value") or "[]"))
            except ValueError:
                return None
            return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else None
    return []


def _same_import(entry: CacheEntry, received: Mapping[str, Any]) -> bool:
    if str(received.get("Type", "")).lower() != entry.type:
        return False
    attrs_ = received.get("Attrs") or {}
    keys = [k for k in ("ref", "src", "scope", "name", "bucket", "prefix") if entry.get(k) is not None]
    return all(str(attrs_.get(k)) == entry.get(k) for k in keys)


def parse_history(doc: Mapping[str, Any], imports: Sequence[CacheEntry] = (),
                  exports: Sequence[CacheEntry] = ()) -> BuildReport:
    """Read ``docker buildx history inspect --format json`` (buildx >= 0.21) for one build."""
    if not isinstance(doc, Mapping) or "Ref" not in doc:
        raise ReportError("not a `docker buildx history inspect --format json` document (it has no Ref)")
    state = str(doc.get("Status", "")).lower()
    status = {"completed": SUCCEEDED, "failed": "failed", "canceled": "failed"}.get(state, UNKNOWN)
    err = doc.get("Error") or {}
    error = ""
    if status == "failed":
        message = str(err.get("Message") or ("canceled" if state == "canceled" else "failed"))
        error = one_line(f"{err['Name']}: {message}" if err.get("Name") else message)
    total, cached = int(doc.get("NumTotalSteps") or 0), int(doc.get("NumCachedSteps") or 0)
    completed = int(doc.get("NumCompletedSteps") or 0)
    duration = doc.get("Duration")
    received = _received(doc)
    import_reports = []
    for entry in imports:
        if received is None:
            import_reports.append(ImportReport(entry, UNKNOWN, "the build record's cache imports are unreadable"))
        elif any(_same_import(entry, r) for r in received):
            import_reports.append(ImportReport(entry, UNKNOWN, "build history records no hit or miss"))
        elif entry.type == "local":
            import_reports.append(ImportReport(entry, MISSED, _LOCAL_DROPPED))
        else:
            import_reports.append(ImportReport(entry, FAILED, _NOT_PASSED))
    return BuildReport(
        status=status,
        error=error,
        steps=Steps(total, cached, max(completed - cached, 0), counts="vertices") if total else None,
        imports=import_reports,
        exports=[ExportReport(e, UNKNOWN, "build history records no cache exports") for e in exports],
        wall_seconds=round(int(duration) / 1e9, 3) if isinstance(duration, int) else None,
        ref=str(doc.get("Ref") or ""),
        sources=("history",),
    )


# --- the metadata file -------------------------------------------------------------------------------------------


def history_ref(doc: Mapping[str, Any]) -> str:
    """The ref ``docker buildx history inspect`` takes: the last part of ``buildx.build.ref`` (builder/node/ref)."""
    return str(doc.get("buildx.build.ref") or "").rpartition("/")[2]


def history_builder(doc: Mapping[str, Any]) -> str:
    """The builder the build ran on: the first part of ``buildx.build.ref`` (builder/node/ref), when it has one."""
    parts = str(doc.get("buildx.build.ref") or "").split("/")
    return parts[0] if len(parts) == 3 else ""


def history_refs(text: str) -> list[str]:
    """The refs in ``docker buildx history ls --format json`` output (one JSON object a line), newest first."""
    refs = []
    for item in _stream(text):
        if isinstance(item, Mapping) and item.get("ref"):
            refs.append(str(item["ref"]).rpartition("/")[2])
    return refs


def parse_metadata(doc: Mapping[str, Any], imports: Sequence[CacheEntry] = (),
                   exports: Sequence[CacheEntry] = ()) -> BuildReport:
    """Read buildx's ``--metadata-file``. buildx writes it only for a build that succeeded (0.13 and 0.29 alike)."""
    if not isinstance(doc, Mapping):
        raise ReportError("not a buildx --metadata-file document (a JSON object)")
    manifest: Mapping[str, Any] = {}
    if doc.get("cache.manifest"):
        try:
            found = json.loads(str(doc["cache.manifest"]))
        except ValueError as exc:
            raise ReportError(f"the metadata's cache.manifest is not JSON: {exc}") from None
        manifest = found if isinstance(found, Mapping) else {}
    # registry and local exports end with a cache manifest; BuildKit returns the last one's descriptor.
    content = [e for e in exports if e.type in _SAYS_MISSING]
    reports = []
    for entry in exports:
        if entry.type not in _SAYS_MISSING:
            reports.append(ExportReport(entry, UNKNOWN, f"the metadata file says nothing about {entry.type} exports"))
        elif len(content) > 1:
            reports.append(ExportReport(entry, UNKNOWN, "the metadata file names one cache manifest for several "
                                                        "exports"))
        elif manifest:
            fmt = "image-manifest" if manifest.get("mediaType") == _OCI_MANIFEST else "index"
            reports.append(ExportReport(entry, WRITTEN, format=fmt, digest=str(manifest.get("digest") or "")))
        else:
            reports.append(ExportReport(entry, FAILED, "BuildKit returned no cache manifest (with ignore-error the "
                                                       "build passes anyway)"))
    return BuildReport(
        status=SUCCEEDED,
        imports=[ImportReport(e, UNKNOWN, "the metadata file says nothing about imports") for e in imports],
        exports=reports,
        ref=history_ref(doc),
        sources=("metadata",),
    )


# --- combining ---------------------------------------------------------------------------------------------------


def _rank(report: BuildReport) -> int:
    return min((SOURCES.index(s) for s in report.sources if s in SOURCES), default=len(SOURCES))


_R = TypeVar("_R", ImportReport, ExportReport)


def _pick(candidates: Sequence[_R]) -> _R:
    """The first definite answer (sources are in order of detail); an unknown only if nothing else is known."""
    return next((c for c in candidates if c.status != UNKNOWN), candidates[0])


def merge(*reports: BuildReport) -> BuildReport:
    """One report of a build from reports of it read from different sources (for the same plan entries)."""
    if not reports:
        raise ReportError("nothing to merge")
    ordered = sorted(reports, key=_rank)
    first = ordered[0]
    for r in ordered[1:]:
        if [i.entry for i in r.imports] != [i.entry for i in first.imports] or \
                [e.entry for e in r.exports] != [e.entry for e in first.exports]:
            raise ReportError("these reports are about different cache entries")
    imports = [_pick([r.imports[i] for r in ordered]) for i in range(len(first.imports))]
    exports = []
    for i in range(len(first.exports)):
        chosen = _pick([r.exports[i] for r in ordered])
        # Fill what the chosen source lacks from the others (the metadata's digest, the stream's duration).
        for other in ordered:
            e = other.exports[i]
            if e.status == chosen.status:
                chosen = attrs.evolve(chosen, seconds=chosen.seconds if chosen.seconds is not None else e.seconds,
                                      size=chosen.size if chosen.size is not None else e.size,
                                      layers=chosen.layers if chosen.layers is not None else e.layers,
                                      format=chosen.format or e.format, digest=chosen.digest or e.digest)
        exports.append(chosen)
    statuses = [r.status for r in ordered]
    status = "failed" if "failed" in statuses else SUCCEEDED if SUCCEEDED in statuses else UNKNOWN
    steps = [r.steps for r in ordered if r.steps is not None]
    history = [r for r in ordered if "history" in r.sources and r.wall_seconds is not None]
    walls = [r.wall_seconds for r in (*history, *ordered) if r.wall_seconds is not None]
    return BuildReport(
        status=status,
        error=next((r.error for r in ordered if r.error), ""),
        # the Dockerfile's own steps (a stream) say more than BuildKit's vertex count (history)
        steps=next((s for s in steps if s.counts == "steps"), steps[0] if steps else None),
        imports=imports,
        exports=exports,
        wall_seconds=walls[0] if walls else None,  # BuildKit's own record of start and end first
        ref=next((r.ref for r in ordered if r.ref), ""),
        sources=tuple(s for s in SOURCES if any(s in r.sources for r in ordered)),
    )


# --- rendering ---------------------------------------------------------------------------------------------------


def describe(entry: CacheEntry) -> str:
    """Where an entry's cache lives, for a person; never a credential (only these attributes are shown)."""
    if entry.type == "registry":
        return f"registry {entry.get('ref', '?')}"
    if entry.type == "local":
        return f"local {entry.get('src') or entry.get('dest') or '?'}"
    if entry.type in ("s3", "azblob"):
        place = entry.get("bucket") or entry.get("container") or entry.get("account_url") or "?"
        prefix = entry.get("prefix") or ""
        return f"{entry.type} {place}/{prefix}{entry.get('name') or ''}".rstrip("/")
    if entry.type == "gha":
        return f"gha scope={entry.get('scope') or 'buildkit'}"
    return entry.type


def _export_details(e: ExportReport) -> str:
    parts = [e.format] if e.format else []
    if e.layers is not None:
        parts.append(f"{e.layers} layer{'s' if e.layers != 1 else ''}")
    if e.size is not None:
        parts.append(f"{e.size} bytes")
    if e.seconds is not None:
        parts.append(f"{e.seconds:.1f} s")
    return ", ".join(parts)


def _headline(report: BuildReport) -> str:
    words = [f"build {report.status}"]
    if report.wall_seconds is not None:
        words.append(f"in {report.wall_seconds:.1f} s")
    line = " ".join(words)
    if report.steps:
        s = report.steps
        line += f": {s.cached}/{s.total} {s.counts} cached, {s.executed} executed"
        if s.cached + s.executed < s.total:
            line += f", {s.total - s.cached - s.executed} not run"
    return line


def as_text(report: BuildReport) -> str:
    """Lines for a terminal or a CI log."""
    lines = [_headline(report)]
    if report.error:
        lines.append(f"  error: {report.error}")
    for i in report.imports:
        lines.append(f"  import {i.status:<7} {describe(i.entry)}" + (f": {i.reason}" if i.reason else ""))
    if not report.imports:
        lines.append("  import none")
    if not report.exports:
        lines.append("  export none")
    for e in report.exports:
        details = _export_details(e)
        lines.append(f"  export {e.status:<7} {describe(e.entry)}" + (f" ({details})" if details else "")
                     + (f": {e.reason}" if e.reason else ""))
    return "\n".join(lines) + "\n"


def as_dict(report: BuildReport) -> dict[str, Any]:
    """Plain data for JSON; entries appear as where they live, never with their attributes' values."""
    return {
        "status": report.status,
        "error": report.error or None,
        "steps": attrs.asdict(report.steps) if report.steps else None,
        "imports": [{"cache": describe(i.entry), "type": i.entry.type, "status": i.status, "reason": i.reason or None}
                    for i in report.imports],
        "exports": [{"cache": describe(e.entry), "type": e.entry.type, "status": e.status, "reason": e.reason or None,
                     "seconds": e.seconds, "size": e.size, "layers": e.layers, "format": e.format or None,
                     "digest": e.digest or None} for e in report.exports],
        "wall_seconds": report.wall_seconds,
        "ref": report.ref or None,
        "sources": list(report.sources),
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def as_markdown(report: BuildReport) -> str:
    """A short summary and one table, for ``$GITHUB_STEP_SUMMARY`` or a merge request note."""
    out = [f"**{_cell(_headline(report))}**", ""]
    if report.error:
        out += [f"Error: `{_cell(report.error)}`", ""]
    if report.imports or report.exports:
        out += ["| cache | | status | details |", "|---|---|---|---|"]
        for i in report.imports:
            out.append(f"| `{_cell(describe(i.entry))}` | import | {i.status} | {_cell(i.reason)} |")
        for e in report.exports:
            details = "; ".join(p for p in (_export_details(e), e.reason) if p)
            out.append(f"| `{_cell(describe(e.entry))}` | export | {e.status} | {_cell(details)} |")
    return "\n".join(out) + "\n"


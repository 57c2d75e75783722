"""``docker buildx history`` (buildx >= 0.21): ``parse_history`` reads ``history inspect --format json`` (status,
error, step counts, duration, and the imports BuildKit actually received); ``history_refs`` reads ``history ls``.
Pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cacheport.entry import CacheEntry
from cacheport.errors import ReportError
from cacheport.report import model
from cacheport.report.model import BuildReport, ExportReport, ImportReport, Steps, one_line
from cacheport.report.rawjson import stream


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
    status = {"completed": model.SUCCEEDED, "failed": "failed", "canceled": "failed"}.get(state, model.UNKNOWN)
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
            import_reports.append(ImportReport(entry, model.UNKNOWN, "the build record's cache imports are unreadable"))
        elif any(_same_import(entry, r) for r in received):
            import_reports.append(ImportReport(entry, model.UNKNOWN, "build history records no hit or miss"))
        elif entry.type == "local":
            import_reports.append(ImportReport(entry, model.MISSED, model.LOCAL_DROPPED))
        else:
            import_reports.append(ImportReport(entry, model.FAILED, model.NOT_PASSED))
    return BuildReport(
        status=status,
        error=error,
        steps=Steps(total, cached, max(completed - cached, 0), counts="vertices") if total else None,
        imports=import_reports,
        exports=[ExportReport(e, model.UNKNOWN, "build history records no cache exports") for e in exports],
        wall_seconds=round(int(duration) / 1e9, 3) if isinstance(duration, int) else None,
        ref=str(doc.get("Ref") or ""),
        sources=("history",),
    )


def history_refs(text: str) -> list[str]:
    """The refs in ``docker buildx history ls --format json`` output (one JSON object a line), newest first."""
    refs = []
    for item in stream(text):
        if isinstance(item, Mapping) and item.get("ref"):
            refs.append(str(item["ref"]).rpartition("/")[2])
    return refs

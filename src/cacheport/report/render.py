"""A build report for people and programs: text for a log, plain data for JSON, Markdown for a job summary. Pure;
an entry is shown as where its cache lives, never with its attributes' values. A report without cache mount
outcomes has no mounts section in any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from cacheport.entry import CacheEntry
from cacheport.masking import printable
from cacheport.mounts import MountOutcome
from cacheport.render import human_size
from cacheport.report.model import BuildReport, ExportReport, one_line


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


def _mount_place(m: MountOutcome) -> str:
    """Where a mount's contents came from or went, for a person."""
    if not m.name:
        return ""
    return {"restored": "from ", "saved": "to "}.get(m.action, "at ") + m.name


def _mount_measures(m: MountOutcome) -> str:
    """Size and time, when something was (or would have been) moved."""
    parts = [human_size(m.size)] if m.size else []
    if m.seconds:
        parts.append(f"{m.seconds:.1f} s")
    return ", ".join(parts)


def _mount_details(mounts: Sequence[MountOutcome]) -> list[str]:
    """Each mount's detail for a person: a failure said already for an earlier mount (one helper build or store
    serves them all, so its long line would come once per mount) is ``as for <that mount>``."""
    first: dict[str, str] = {}
    out = []
    for m in mounts:
        detail = one_line(m.detail)
        if m.action == "failed" and detail:
            said = first.setdefault(detail, m.id)
            if said != m.id:
                detail = f"as for {printable(said, 200)}"
        out.append(detail)
    return out


def _mount_line(m: MountOutcome, detail: str) -> str:
    place, measures = _mount_place(m), _mount_measures(m)
    return (f"  mount  {m.action:<9} {printable(m.id, 200)}" + (f" {place}" if place else "")  # the Dockerfile's text
            + (f" ({measures})" if measures else "") + (f": {detail}" if detail else ""))


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
    lines += [_mount_line(m, d) for m, d in zip(report.mounts, _mount_details(report.mounts), strict=True)]
    return "\n".join(lines) + "\n"


def as_dict(report: BuildReport) -> dict[str, Any]:
    """Plain data for JSON; entries appear as where they live, never with their attributes' values. ``mounts``
    is there only when the report has cache mount outcomes."""
    out = {
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
    if report.mounts:
        out["mounts"] = [{"id": m.id, "action": m.action, "name": m.name or None, "size": m.size,
                          "seconds": m.seconds, "detail": one_line(m.detail) or None} for m in report.mounts]
    return out


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
    if report.mounts:
        if report.imports or report.exports:
            out.append("")
        out += ["| cache mount | | name | size, time | details |", "|---|---|---|---|---|"]
        for m, detail in zip(report.mounts, _mount_details(report.mounts), strict=True):
            name = f"`{_cell(m.name)}`" if m.name else ""
            out.append(f"| `{_cell(m.id)}` | {m.action} | {name} | {_mount_measures(m)} | {_cell(detail)} |")
    return "\n".join(out) + "\n"

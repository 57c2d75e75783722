"""One report of a build from reports of it read from several sources. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import attrs

from cacheport.errors import ReportError
from cacheport.report.model import SOURCES, SUCCEEDED, UNKNOWN, BuildReport, ExportReport, ImportReport


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
        mounts=next((r.mounts for r in ordered if r.mounts), ()),
        first_run=next((r.first_run for r in ordered if r.first_run), ""),
    )

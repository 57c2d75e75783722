"""The cache's value across builds, from their records (:mod:`.record`): hit rate per branch, cold against warm
build time, the time the hits saved, what exports cost, and the builds where the hit rate fell with what changed.
Pure; :mod:`.chart` draws it, :func:`as_dict` is ``cacheport history --format json`` (documented in
docs/history.md; a field is only ever added).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from typing import Any

import attrs

from cacheport.report.model import HIT
from cacheport.report.record import BuildRecord

#: The version of ``cacheport history --format json``.
JSON_SCHEMA = 1
#: A fall in the share of cached steps smaller than this is noise, not news.
_FALL = 0.1


@attrs.frozen
class BranchTrend:
    """One branch's builds.

    Attributes:
        branch: the branch (``(none)`` when the build knew none).
        builds: how many records.
        hits: how many of them read some imported cache.
        cached_share: the mean share of steps that came from the cache, over builds whose steps are known.
        shares: each build's share of cached steps, oldest first (None where unknown).
    """

    branch: str
    builds: int
    hits: int
    cached_share: float | None
    shares: tuple[float | None, ...]

    @property
    def hit_rate(self) -> float:
        return self.hits / self.builds if self.builds else 0.0


@attrs.frozen
class Fall:
    """A build whose share of cached steps fell by a tenth or more against the build before it on the same branch,
    and that says why: an import that hit before and not now, or a step that ran.

    Attributes:
        record: the build.
        before: the share of cached steps in the build before.
        after: the share in this one.
        missed: the imports that hit before and did not now, each as ``cache: status (reason)``.
        first_run: the first step that ran.
    """

    record: BuildRecord
    before: float
    after: float
    missed: tuple[str, ...]
    first_run: str


@attrs.frozen
class Trend:
    """What the records say together.

    Attributes:
        records: the records, oldest first.
        branches: per branch, in order of each branch's first record.
        cold: build times of the builds that succeeded with no step from a cache.
        warm: build times of those with some (:func:`warm_build`).
        saved_seconds: the sum, over warm builds, of the median cold build time less the build's own; None without
            a cold build to compare against.
        export_seconds: time spent on exports, summed.
        export_bytes: bytes exports wrote where BuildKit said; None when it never said.
        exports: how many exports.
        falls: the builds where the hit rate fell.
    """

    records: tuple[BuildRecord, ...]
    branches: tuple[BranchTrend, ...]
    cold: tuple[float, ...]
    warm: tuple[float, ...]
    saved_seconds: float | None
    export_seconds: float
    export_bytes: int | None
    exports: int
    falls: tuple[Fall, ...]

    @property
    def cold_median(self) -> float | None:
        return statistics.median(self.cold) if self.cold else None

    @property
    def warm_median(self) -> float | None:
        return statistics.median(self.warm) if self.warm else None


def branch_of(record: BuildRecord) -> str:
    return record.branch or "(none)"


def warm_build(record: BuildRecord) -> bool:
    """Some step came from a cache (an imported one, or the builder's own); without step counts, an import hit."""
    share = record.cached_share
    return share > 0 if share is not None else record.hit


def _fall(before: BuildRecord, after: BuildRecord) -> Fall | None:
    was, now = before.cached_share, after.cached_share
    if was is None or now is None or was - now < _FALL:
        return None
    hit_before = {u.cache for u in before.of("import") if u.status == HIT}
    missed = tuple(f"{u.cache}: {u.status}" + (f" ({u.reason})" if u.reason else "")
                   for u in after.of("import") if u.cache in hit_before and u.status != HIT)
    if not missed and not after.first_run:
        return None  # nothing missed and nothing ran (steps shared with a build running at the same time)
    return Fall(after, was, now, missed, after.first_run)


def trend(records: Sequence[BuildRecord]) -> Trend:
    """The trend of these records (any order; they are sorted by time)."""
    ordered = tuple(sorted(records, key=lambda r: (r.time, r.id)))
    by_branch: dict[str, list[BuildRecord]] = {}
    for r in ordered:
        by_branch.setdefault(branch_of(r), []).append(r)
    branches = []
    falls = []
    for name, items in by_branch.items():
        shares = tuple(r.cached_share for r in items)
        known = [s for s in shares if s is not None]
        branches.append(BranchTrend(name, len(items), sum(1 for r in items if r.hit),
                                    statistics.fmean(known) if known else None, shares))
        falls += [f for a, b in itertools.pairwise(items) if (f := _fall(a, b)) is not None]
    timed = [r for r in ordered if r.wall_seconds is not None and r.status == "succeeded"]
    cold = tuple(r.wall_seconds for r in timed if not warm_build(r) and r.wall_seconds is not None)
    warm = tuple(r.wall_seconds for r in timed if warm_build(r) and r.wall_seconds is not None)
    saved = round(sum(statistics.median(cold) - w for w in warm), 3) if cold and warm else None
    exports = [u for r in ordered for u in r.of("export")]
    sizes = [u.size for u in exports if u.size is not None]
    return Trend(ordered, tuple(branches), cold, warm, saved, round(sum(u.seconds or 0.0 for u in exports), 3),
                 sum(sizes) if sizes else None, len(exports), tuple(sorted(falls, key=lambda f: f.record.time)))


def _when(record: BuildRecord) -> str:
    return record.time.strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"


def as_dict(t: Trend, where: str = "") -> dict[str, Any]:
    """``cacheport history --format json``: stable; fields are added, never renamed or removed."""
    def share(value: float | None) -> float | None:
        return round(value, 4) if value is not None else None

    return {
        "schema": JSON_SCHEMA,
        "where": where or None,
        "builds": [{
            "name": r.name, "time": _when(r), "branch": r.branch, "key": r.key, "project": r.project,
            "backend": r.backend, "source": r.source, "job": r.job, "job_url": r.job_url, "status": r.status,
            "wall_seconds": r.wall_seconds, "hit": r.hit,
            "steps": dict(zip(("total", "cached", "executed"), r.steps, strict=True)) if r.steps else None,
            "cached_share": share(r.cached_share), "first_run": r.first_run or None,
            "export_seconds": round(r.export_seconds, 3), "export_bytes": r.export_bytes,
            "imports": [{"cache": u.cache, "status": u.status, "seconds": u.seconds, "reason": u.reason or None}
                        for u in r.of("import")],
            "exports": [{"cache": u.cache, "status": u.status, "seconds": u.seconds, "size": u.size,
                         "reason": u.reason or None} for u in r.of("export")],
            "mounts": [{"mount": u.cache.removeprefix("mount "), "action": u.status, "seconds": u.seconds,
                        "size": u.size} for u in r.of("mount")],
        } for r in t.records],
        "branches": [{"branch": b.branch, "builds": b.builds, "hits": b.hits, "hit_rate": share(b.hit_rate),
                      "cached_share": share(b.cached_share)} for b in t.branches],
        "cold": {"builds": len(t.cold), "median_seconds": t.cold_median},
        "warm": {"builds": len(t.warm), "median_seconds": t.warm_median},
        "saved_seconds": t.saved_seconds,
        "exports": {"count": t.exports, "seconds": t.export_seconds, "bytes": t.export_bytes},
        "falls": [{"name": f.record.name, "time": _when(f.record), "branch": f.record.branch,
                   "before": share(f.before), "after": share(f.after), "missed": list(f.missed),
                   "first_run": f.first_run or None} for f in t.falls],
    }

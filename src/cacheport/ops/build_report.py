"""The report after ``cacheport build``: what BuildKit did with the cache (from buildx's rawjson stream and its
metadata file), with the imports cacheport left out or refused before the build; the loud warnings; and where
the CI shows it. Side effects only in :func:`show` and :func:`publish`, which never fail a build.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from cacheport import report
from cacheport.entry import CacheEntry
from cacheport.errors import CacheportError
from cacheport.plan import Plan

if TYPE_CHECKING:
    from cacheport.ops.preflight import LayoutProblem
    from cacheport.ops.signatures import Verdict


def build_report(stream: str, metadata: Any, imports: Sequence[CacheEntry], exports: Sequence[CacheEntry],
                 plan: Plan, wall: float) -> report.BuildReport:
    """What BuildKit did, from the rawjson stream and the metadata file; local exports named where the cache
    lives after the swap."""
    found = [report.parse_rawjson(stream, imports, exports)]
    if isinstance(metadata, dict):
        with contextlib.suppress(CacheportError):  # a metadata file we can't read: the stream still speaks
            found.append(report.parse_metadata(metadata, imports, exports))
    merged = report.merge(*found)
    moved = {s.new: s.current for s in plan.swaps}
    exports_ = [attrs.evolve(e, entry=e.entry.with_attrs(dest=moved[str(e.entry.get("dest"))]))
                if e.entry.type == "local" and e.entry.get("dest") in moved and e.status == report.WRITTEN else e
                for e in merged.exports]
    return attrs.evolve(merged, exports=exports_, wall_seconds=merged.wall_seconds or round(wall, 3))


def surprises(found: report.BuildReport, plan: Plan) -> list[str]:
    """Loud warnings for what should not happen: an export that failed (ignore-error hid it), an import that
    failed for another reason than not existing, and the default branch's cache missing on another branch."""
    out = [f"the cache export to {report.describe(e.entry)} FAILED ({e.reason or 'no reason given'}); the build "
           "passed anyway because of ignore-error, and nothing was stored" for e in found.exports
           if e.status == report.FAILED and found.status == report.SUCCEEDED]
    out += [f"the cache import from {report.describe(i.entry)} FAILED: {i.reason}" for i in found.imports
            if i.status == report.FAILED]
    ctx = plan.context
    if found.imports and ctx.branch and ctx.default_branch and ctx.branch != ctx.default_branch:
        last = found.imports[-1]
        if last.status == report.MISSED and not any(i.status == report.HIT for i in found.imports):
            out.append(f"no cache at {report.describe(last.entry)}: the default branch ({ctx.default_branch}) has "
                       "no cache to start this branch from; its next build exports one")
    return out


def show(found: report.BuildReport, environ: Mapping[str, str], say: Callable[[str], None]) -> None:
    """The report in the log, once, a ``cache: …`` line each through ``say`` (which writes to stderr). In GitLab CI
    the lines sit in a section of their own, ``cacheport: cache report``, open as the lines were before it, which
    a reader can fold (its markers go straight to stderr, between ``say``'s lines: they hold no secret)."""
    section = environ.get("GITLAB_CI") == "true"
    stamp = int(time.time())
    if section:
        sys.stderr.flush()
        sys.stderr.write(f"\x1b[0Ksection_start:{stamp}:cacheport_report\r\x1b[0Kcacheport: cache report\n")
    for line in report.as_text(found).splitlines():
        say(f"cache: {line.strip()}" if not line.startswith(" ") else f"cache:   {line.strip()}")
    if section:
        sys.stderr.flush()
        sys.stderr.write(f"\x1b[0Ksection_end:{stamp}:cacheport_report\r\x1b[0K\n")
        sys.stderr.flush()


def publish(found: report.BuildReport, environ: Mapping[str, str], say: Callable[[str], None],
            report_file: str | None) -> None:
    """The report where the CI shows it besides the log (:func:`show`): a job summary (GitHub), a JSON file.

    Never fails the build: a file that can't be written is a warning.
    """
    if environ.get("GITHUB_STEP_SUMMARY"):
        try:
            with open(environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
                fh.write("### cacheport\n\n" + report.as_markdown(found) + "\n")
        except OSError as exc:
            say(f"warning: could not write the job summary: {exc.strerror}")
    if report_file:
        try:
            Path(report_file).write_text(json.dumps(report.as_dict(found), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            say(f"warning: could not write the report to {report_file}: {exc.strerror}")




def with_unpassed(found: report.BuildReport, left_out: Sequence[tuple[CacheEntry, LayoutProblem]],
                  verdicts: Sequence[Verdict]) -> report.BuildReport:
    """The report with the imports never passed to buildx: left out (no cache there yet, or one BuildKit can't
    read) or refused (a signature that did not pass)."""
    if not left_out and not verdicts:
        return found
    return attrs.evolve(found, imports=[*found.imports, *(
        report.ImportReport(e, report.MISSED, "not passed to buildx: " + p.reason if p.broken else
                            "no cache there yet") for e, p in left_out), *(
        report.ImportReport(v.entry, report.MISSED if v.missing else report.FAILED, v.reason if v.missing else
                            f"refused: {v.reason}") for v in verdicts if not v.ok)])

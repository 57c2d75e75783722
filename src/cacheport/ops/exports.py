"""Exports that pay for themselves (#22): the ``exports`` setting, and when a build's export is skipped.

BuildKit writes a ``mode=max`` cache again after a build that executed no step (moby/buildkit#6308): the same
cache, uploaded again (every layer asked for, the manifest written). Under ``exports = "when-changed"`` an export
whose name one of the build's own imports reads is held back from the build; when the build executed no step and
that import hit, the cache there is what the export would write, and the export is skipped. Otherwise an
export-only pass (the same build, every step cached in the builder, ``--output type=cacheonly``) writes it.
The default is ``always`` (today's single pass); bench/exports.py measures what ``when-changed`` gains.
Only registry exports are held back (gitlab, pulp and registry backends): their name is a ref an import can name.
"""

from __future__ import annotations

from collections.abc import Sequence

from cacheport import report
from cacheport.entry import CacheEntry
from cacheport.plan import Plan

ALWAYS, WHEN_CHANGED = "always", "when-changed"
#: buildx arguments that send the image somewhere (or write files about it): not for the export-only pass.
_OUTPUT_WORDS = ("--load", "--push")
_OUTPUT_VALUES = ("--output", "-o", "--iidfile", "--metadata-file")


def rule_of(plan: Plan) -> str:
    """The ``exports`` setting in force for a plan."""
    return next((str(s.setting.value) for s in plan.settings if s.name == "exports" and s.setting.value), ALWAYS)


def _name(entry: CacheEntry) -> tuple[str, str] | None:
    ref = entry.get("ref")
    return (entry.type, str(ref)) if entry.type == "registry" and ref else None


def held_back(plan: Plan, imports: Sequence[CacheEntry], exports: Sequence[CacheEntry]) -> list[CacheEntry]:
    """The exports to hold back from the build: under ``when-changed``, those whose name an import reads."""
    if rule_of(plan) != WHEN_CHANGED:
        return []
    read = {_name(i) for i in imports} - {None}
    return [e for e in exports if _name(e) in read]


def why_rule(plan: Plan) -> str:
    """One line for ``explain``: which rule applies to this plan's exports, and why."""
    if not plan.exports:
        return ""
    held = held_back(plan, plan.imports, plan.exports)
    if rule_of(plan) == ALWAYS:
        return "always written (exports = \"always\"), even after a build that executed no step"
    if not held:
        return ("always written: no export is a registry name this build also imports, so there is nothing to "
                "compare it with (exports = \"when-changed\")")
    names = ", ".join(report.describe(e) for e in held)
    return (f"{names}: skipped after a build that executed no step while its import of the same name hit (the cache "
            "is already there); else written by an export-only pass after the build (exports = \"when-changed\")")


def unchanged(found: report.BuildReport, export: CacheEntry) -> bool:
    """Whether the build executed no step and an import of ``export``'s own name hit: the cache the export would
    write is already there."""
    steps = found.steps
    if found.status != report.SUCCEEDED or steps is None or steps.total == 0 or steps.executed != 0:
        return False
    return any(i.status == report.HIT and _name(i.entry) == _name(export) for i in found.imports)


def skipped(export: CacheEntry) -> report.ExportReport:
    """The report of an export skipped because nothing changed."""
    return report.ExportReport(export, report.SKIPPED, f"nothing changed since {report.describe(export)} "
                               "was written (the build executed no step, and its import of that name hit)")


def export_only(extra: Sequence[str]) -> list[str]:
    """buildx's arguments for the export-only pass: the user's, without what sends the image anywhere, and
    ``--output type=cacheonly``."""
    kept: list[str] = []
    skip = False
    for arg in extra:
        if skip:
            skip = False
            continue
        if arg in _OUTPUT_WORDS or arg.startswith(tuple(f"{f}=" for f in _OUTPUT_VALUES)) or (
                arg.startswith("-o") and not arg.startswith("--") and arg != "-o"):
            continue
        if arg in _OUTPUT_VALUES:
            skip = True
            continue
        kept.append(arg)
    return [*kept, "--output", "type=cacheonly"]

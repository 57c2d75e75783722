"""Exports that pay for themselves (#22): the ``exports`` setting, and what becomes of a build's exports.

BuildKit writes a ``mode=max`` cache again after a build that executed no step (moby/buildkit#6308): the same
cache, uploaded again (every layer asked for, the manifest written). An export can be *held back* from the build:
when the build executed no step and the import of the export's own name hit, the cache there is what the export
would write, and the export is skipped; otherwise an export-only pass (the same build, every step cached in the
builder, ``--output type=cacheonly``) writes it. That pass costs a changed build a second solve, so:

- ``auto`` (the default) decides from the branch's last :data:`RECENT` build records (:mod:`cacheport.ops.history`):
  an export of an own name is held back only when at least half of them were unchanged rebuilds (no step
  executed, an import hit), else written with the build in one pass; and a ``mode=max`` export to a name the
  branch never reads (its import of that name missed, or no step came from any cache, in each of its last
  :data:`NARROW_AFTER` builds while that export was written) is narrowed to ``mode=min``, except on the default
  branch, whose cache every other branch falls back to. No records (history off, a first build, a store that
  can't be read) means one pass, as planned.
- ``when-changed`` holds back every export of an own name, whatever the history says; it never narrows.
- ``always`` writes every export with the build, as planned.

Only registry exports are held back or narrowed (gitlab, pulp and registry backends): their name is a ref an
import can name. Pure, but for :func:`in_background`, which runs the caller's reader on a thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from cacheport import report
from cacheport.entry import CacheEntry
from cacheport.plan import Plan
from cacheport.report.record import BuildRecord

ALWAYS, WHEN_CHANGED, AUTO = "always", "when-changed", "auto"
#: Records ``auto`` reads: the branch's last builds (of the plan's key).
RECENT = 5
#: Builds in a row that must not have read an own name before ``auto`` narrows its export.
NARROW_AFTER = 3
#: buildx arguments that send the image somewhere (or write files about it): not for the export-only pass.
_OUTPUT_WORDS = ("--load", "--push")
_OUTPUT_VALUES = ("--output", "-o", "--iidfile", "--metadata-file")


def rule_of(plan: Plan) -> str:
    """The ``exports`` setting in force for a plan."""
    return next((str(s.setting.value) for s in plan.settings if s.name == "exports" and s.setting.value), AUTO)


def _name(entry: CacheEntry) -> tuple[str, str] | None:
    ref = entry.get("ref")
    return (entry.type, str(ref)) if entry.type == "registry" and ref else None


@attrs.frozen
class Decision:
    """What the rule does with a build's exports, decided before it runs.

    Attributes:
        inline: the exports written with the build (a narrowed one as ``mode=min``), in the plan's order.
        held: the exports held back until after the build: skipped when nothing changed, else written by an
            export-only pass.
        notes: ``(export as passed, why)`` for each export narrowed: the report and the record say it.
        why: one line per export (in the plan's order) on why it is kept, held back or narrowed, for ``explain``.
    """

    inline: tuple[CacheEntry, ...]
    held: tuple[CacheEntry, ...] = ()
    notes: tuple[tuple[CacheEntry, str], ...] = ()
    why: tuple[str, ...] = ()


def recent(plan: Plan, records: Sequence[BuildRecord]) -> list[BuildRecord]:
    """The records ``auto`` goes by: the plan's branch and key, the last :data:`RECENT`, oldest first."""
    key = plan.request.key if plan.request else None
    mine = [r for r in records if r.branch == plan.context.branch and r.key == key]
    return sorted(mine, key=lambda r: r.time)[-RECENT:]


def was_unchanged(record: BuildRecord) -> bool:
    """A rebuild that executed no step while an import hit: the kind of build a held-back export is skipped after."""
    steps = record.steps
    return (record.status == report.SUCCEEDED and steps is not None and steps[0] > 0 and steps[2] == 0
            and record.hit)


def mostly_unchanged(records: Sequence[BuildRecord]) -> bool:
    """Whether at least half of ``records`` (and one at least) were unchanged rebuilds: then the next build
    likely is one too, and holding its export back pays."""
    return bool(records) and 2 * sum(was_unchanged(r) for r in records) >= len(records)


def _not_read(record: BuildRecord, cache: str) -> bool:
    """In ``record``, the export to ``cache`` was written, yet the build got nothing from that name: its import
    missed or failed, or no step came from any cache."""
    if not any(u.cache == cache and u.status == report.WRITTEN for u in record.of("export")):
        return False
    read = [u for u in record.of("import") if u.cache == cache]
    if not read:
        return False
    if read[0].status != report.HIT:
        return True
    return record.steps is not None and record.steps[1] == 0 and record.steps[2] > 0


def never_read(plan: Plan, export: CacheEntry, records: Sequence[BuildRecord]) -> bool:
    """Whether ``export`` (a ``mode=max`` registry export) goes to a name the branch's last :data:`NARROW_AFTER`
    builds never read while they wrote it; never on the default branch (every branch falls back to its cache),
    nor when the job does not know which branch that is, nor on a merge request's target branch."""
    ctx = plan.context
    if (_name(export) is None or export.get("mode") != "max" or not ctx.branch or not ctx.default_branch
            or ctx.branch in (ctx.default_branch, ctx.target_branch)):
        return False
    last = list(records)[-NARROW_AFTER:]
    cache = report.describe(export)
    return len(last) == NARROW_AFTER and all(_not_read(r, cache) for r in last)


def narrowed_why(export: CacheEntry) -> str:
    """What the report, the record and ``explain`` say of a narrowed export."""
    return (f"narrowed to mode=min: the last {NARROW_AFTER} builds of this branch wrote "
            f"{report.describe(export)} but never read it (its import missed, or no step came from a cache; "
            "exports = \"always\" keeps mode=max)")


def decide(plan: Plan, imports: Sequence[CacheEntry], exports: Sequence[CacheEntry],
           records: Sequence[BuildRecord] = (), unread: str | None = None) -> Decision:
    """What becomes of ``exports`` under the plan's rule, given the imports the build reads and, for ``auto``, the
    branch's records (any; :func:`recent` picks the ones that count); ``unread``: why there are none, when they
    could not be read."""
    rule = rule_of(plan)
    read = {_name(i) for i in imports} - {None}
    own = [e for e in exports if _name(e) in read]
    if rule == ALWAYS:
        return Decision(tuple(exports), why=tuple(
            f"{report.describe(e)}: written with the build (exports = \"always\"), even after a build that "
            "executed no step" for e in exports))
    if rule == WHEN_CHANGED:
        return Decision(tuple(e for e in exports if e not in own), tuple(own), why=tuple(
            _held_why(e, "exports = \"when-changed\"") if e in own else _inline_why(e) for e in exports))
    mine = recent(plan, records)
    unchanged_share = f"{sum(was_unchanged(r) for r in mine)} of this branch's last {len(mine)} builds"
    hold = mostly_unchanged(mine)
    inline, held, notes, why = [], [], [], []
    for e in exports:
        if never_read(plan, e, mine):
            narrow = e.with_attrs(mode="min")
            inline.append(narrow)
            notes.append((narrow, narrowed_why(e)))
            why.append(f"{report.describe(e)}: {narrowed_why(e)}")
        elif e in own and hold:
            held.append(e)
            why.append(_held_why(e, f"exports = \"auto\": {unchanged_share} executed no step"))
        elif e in own:
            inline.append(e)
            why.append(f"{report.describe(e)}: written with the build in one pass (exports = \"auto\": "
                       + (f"only {unchanged_share} executed no step" if mine else unread or "no build records of "
                          "this branch to go by") + ")")
        else:
            inline.append(e)
            why.append(_inline_why(e))
    return Decision(tuple(inline), tuple(held), tuple(notes), tuple(why))


def _held_why(export: CacheEntry, because: str) -> str:
    return (f"{report.describe(export)}: held back ({because}): skipped after a build that executed no step "
            "while its import of the same name hit (the cache is already there), else written by an export-only "
            "pass after the build")


def _inline_why(export: CacheEntry) -> str:
    return (f"{report.describe(export)}: written with the build: no import reads its name, so there is nothing to "
            "compare it with")


def held_back(plan: Plan, imports: Sequence[CacheEntry], exports: Sequence[CacheEntry],
              records: Sequence[BuildRecord] = ()) -> list[CacheEntry]:
    """The exports to hold back from the build (:func:`decide`)."""
    return list(decide(plan, imports, exports, records).held)


def why_rule(plan: Plan, records: Sequence[BuildRecord] | None = None, unread: str | None = None) -> str:
    """Lines for ``explain``: which rule applies to this plan's exports, and why each is kept, held back or
    narrowed; under ``auto`` without ``records`` (not read), what the records decide; ``unread``: why the records
    could not be gone by."""
    if not plan.exports:
        return ""
    if rule_of(plan) != ALWAYS and not any(_name(e) for e in plan.exports):
        return (f"written with the build: exports = \"{rule_of(plan)}\" holds back or narrows registry exports "
                "only")
    if rule_of(plan) == AUTO and records is None:
        return ("exports = \"auto\": from this branch's last build records (cacheport explain --history reads "
                f"them): an export the build also imports is held back when at least half of the last {RECENT} "
                "executed no step (skipped when nothing changed, else an export-only pass), else written with the "
                f"build; a mode=max export the last {NARROW_AFTER} builds wrote but never read is narrowed to "
                "mode=min (not on the default branch)")
    return "\n  ".join(decide(plan, plan.imports, plan.exports, records or (), unread).why)


def noted(found: report.BuildReport, decision: Decision) -> report.BuildReport:
    """The report with each narrowed export's reason (it was written, as ``mode=min``, and says why)."""
    notes = dict(decision.notes)
    return attrs.evolve(found, exports=[
        attrs.evolve(e, reason="; ".join(p for p in (notes[e.entry], e.reason) if p)) if e.entry in notes else e
        for e in found.exports])


#: Seconds the build waits, once it is ready to start, for the branch's records: a slow store never holds it up
#: longer (the exports then go as planned).
READ_BUDGET = 10.0
#: What reads the branch's records: given where its lines go, it never raises (its trouble is a line and none).
Reader = Callable[[Callable[[str], None]], Sequence[BuildRecord]]


def in_background(plan: Plan, read: Reader | None, say: Callable[[str], None] = lambda _line: None,
                  budget: float = READ_BUDGET) -> Callable[[], Sequence[BuildRecord]]:
    """``read`` (the branch's records) started now on a thread, so its round trips overlap the build's logins and
    its look at the builder; call the result for its answer, which waits at most ``budget`` seconds more (then
    none, and one line: the exports go as planned). What the reader says goes through ``say`` when the answer is
    taken, from the caller's thread, and never after: a reader still running when the budget is spent is left
    to finish unheard. No thread unless the plan's rule is ``auto`` and it exports."""
    if read is None or rule_of(plan) != AUTO or not plan.exports:
        return lambda: ()
    import threading

    answer: list[Sequence[BuildRecord]] = []
    lines: list[str] = []

    def work() -> None:
        try:
            answer.append(read(lines.append))
        except Exception:  # the reader says what went wrong; the history never fails a build
            answer.append(())

    thread = threading.Thread(target=work, name="cacheport-history", daemon=True)
    thread.start()

    def result() -> Sequence[BuildRecord]:
        thread.join(budget)
        if thread.is_alive():
            say(f"warning: history: this branch's build records were not read within {budget:g} s; its exports "
                "go as planned")
            return ()
        for line in lines:
            say(line)
        return answer[0] if answer else ()

    return result


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


def rule_doc(plan: Plan, records: Sequence[BuildRecord] | None = None, unread: str | None = None) -> dict[str, Any]:
    """``explain --format json``'s ``export_rule``: the rule in force, whether the branch's records were read
    (``--history``), and per export (in the plan's order) its ``outcome`` (``written`` with the build, ``held
    back``, ``narrowed``; None under ``auto`` when the records, not read, decide) and the line ``explain`` says."""
    rule = rule_of(plan)
    doc: dict[str, Any] = {"rule": rule, "history": records is not None, "exports": []}
    if not plan.exports:
        return doc
    outcomes: list[str | None]
    if rule != ALWAYS and not any(_name(e) for e in plan.exports):
        outcomes, why = ["written"] * len(plan.exports), [why_rule(plan, records, unread)] * len(plan.exports)
    elif rule == AUTO and records is None:
        outcomes, why = [None] * len(plan.exports), [why_rule(plan)] * len(plan.exports)
    else:
        decision = decide(plan, plan.imports, plan.exports, records or (), unread)
        outcomes = ["held back" if e in decision.held else "written" if e in decision.inline else "narrowed"
                    for e in plan.exports]
        why = list(decision.why)
    doc["exports"] = [{"cache": report.describe(e), "outcome": outcome, "why": line}
                      for e, outcome, line in zip(plan.exports, outcomes, why, strict=True)]
    return doc

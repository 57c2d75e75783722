"""The ``exports`` rule (#22): which exports wait for the build's outcome, when one is skipped, and the
export-only pass's arguments; through a stand-in docker, what reaches buildx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cacheport import report
from cacheport.entry import CacheEntry
from cacheport.ops.exports import (
    Decision,
    decide,
    export_only,
    held_back,
    in_background,
    noted,
    skipped,
    unchanged,
    why_rule,
)
from cacheport.report.record import BuildRecord, Use
from tests.fakes.docker import stand_in_docker

OWN = CacheEntry.parse("type=registry,ref=127.0.0.1:5000/app/cache:main")
OWN_MAX = CacheEntry.parse("type=registry,ref=127.0.0.1:5000/app/cache:main,mode=max,ignore-error=true")
MAIN = CacheEntry.parse("type=registry,ref=127.0.0.1:5000/app/cache:trunk")
LOCAL = CacheEntry.parse("type=local,dest=/tmp/c")


class _Settings:
    def __init__(self, rule: str) -> None:
        from cacheport.records.job import Setting, Source
        from cacheport.records.plan import ShownSetting

        self.settings = (ShownSetting("exports", Setting(rule, Source("default", "default"))),)


def _found(executed: int, *imports: tuple[CacheEntry, str], status: str = report.SUCCEEDED) -> report.BuildReport:
    return report.BuildReport(status, steps=report.Steps(5, 5 - executed, executed),
                              imports=[report.ImportReport(e, s) for e, s in imports])


def test_only_registry_exports_an_import_reads_are_held_back() -> None:
    plan: object = _Settings("when-changed")
    assert held_back(plan, [OWN, MAIN], [OWN_MAX, LOCAL]) == [OWN_MAX]  # type: ignore[arg-type]
    assert held_back(plan, [MAIN], [OWN_MAX]) == []  # type: ignore[arg-type]
    assert held_back(_Settings("always"), [OWN], [OWN_MAX]) == []  # type: ignore[arg-type]


def test_an_export_is_skipped_only_when_nothing_ran_and_its_own_name_hit() -> None:
    assert unchanged(_found(0, (OWN, report.HIT), (MAIN, report.MISSED)), OWN_MAX)
    assert not unchanged(_found(1, (OWN, report.HIT)), OWN_MAX)  # a step ran: the cache changed
    assert not unchanged(_found(0, (OWN, report.MISSED), (MAIN, report.HIT)), OWN_MAX)  # its name holds nothing
    assert not unchanged(_found(0, (OWN, report.HIT), status=report.FAILED), OWN_MAX)
    assert not unchanged(report.BuildReport(report.SUCCEEDED, imports=[report.ImportReport(OWN, report.HIT)]),
                         OWN_MAX)  # no step counts: unknown is not unchanged
    said = skipped(OWN_MAX)
    assert said.status == report.SKIPPED and "nothing changed since" in said.reason and "cache:main" in said.reason


@pytest.mark.parametrize("extra", [["--push"], ["--load"], ["--output", "type=image,push=true"],
                                   ["--output=type=docker"], ["-o", "out"], ["-oout"], ["--iidfile", "id"],
                                   ["--metadata-file=m.json"]])
def test_the_export_only_pass_sends_no_image_anywhere(extra: list[str]) -> None:
    assert export_only(["--network=host", *extra, "--build-arg", "A=1"]) == [
        "--network=host", "--build-arg", "A=1", "--output", "type=cacheonly"]


def _build(tmp_path: Path, rule: str) -> list[list[str]]:
    log = tmp_path / "argv"
    docker = stand_in_docker(tmp_path, log, every=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CACHEPORT_DOCKER": str(docker),
           "CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": "127.0.0.1:5000/app/cache",
           "CACHEPORT_EXPORTS": rule, "CI": "true", "GITHUB_ACTIONS": "", "GITLAB_CI": ""}
    done = subprocess.run([sys.executable, "-m", "cacheport", "build", ".", "-t", "app:dev", "--", "--push"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_when_changed_builds_without_the_export_then_exports_in_a_pass_of_its_own(tmp_path: Path) -> None:
    # The stand-in reports no steps: not known to be unchanged, so the export-only pass runs.
    first, second = _build(tmp_path, "when-changed")
    assert not any(a.startswith("--cache-to") for a in first) and "--push" in first
    assert any(a.startswith("--cache-to=type=registry,ref=127.0.0.1:5000/app/cache") for a in second)
    assert second[-3:] == ["--output", "type=cacheonly", "."] and "--push" not in second and "app:dev" not in second


def test_always_exports_with_the_build(tmp_path: Path) -> None:
    (only,) = _build(tmp_path, "always")
    assert any(a.startswith("--cache-to=type=registry") for a in only) and "--push" in only


class _Plan:
    """What the ``auto`` rule reads of a plan: its setting, the branch and the key."""

    def __init__(self, rule: str = "auto", branch: str = "feature", default: str = "trunk") -> None:
        from cacheport.records.job import Context

        self.settings = _Settings(rule).settings
        self.context = Context(provider="gitlab", project="app", branch=branch, default_branch=default)
        self.request = None
        self.exports = (FEATURE_MAX,)
        self.imports = (FEATURE, MAIN)


FEATURE = CacheEntry.parse("type=registry,ref=127.0.0.1:5000/app/cache:feature")
FEATURE_MAX = CacheEntry.parse("type=registry,ref=127.0.0.1:5000/app/cache:feature,mode=max")


def _record(n: int, executed: int, own: str = report.HIT, exported: str = report.WRITTEN, cached: int | None = None,
            branch: str = "feature") -> BuildRecord:
    from datetime import UTC, datetime, timedelta

    name = report.describe(FEATURE)
    cached = 5 - executed if cached is None else cached
    return BuildRecord(id=f"{n:08x}", time=datetime(2026, 12, 1, tzinfo=UTC) + timedelta(minutes=n),
                       source="build", project="app", branch=branch, backend="registry", status=report.SUCCEEDED,
                       steps=(5, cached, executed),
                       uses=(Use(name, "import", own), Use(report.describe(MAIN), "import", report.HIT),
                             Use(name, "export", exported)))


def _decide(plan: _Plan, records: list[BuildRecord]) -> Decision:
    return decide(plan, plan.imports, plan.exports, records)  # type: ignore[arg-type]


def test_auto_holds_an_export_back_only_when_most_recent_builds_were_unchanged() -> None:
    plan = _Plan()
    assert _decide(plan, []).inline == (FEATURE_MAX,)  # no records: one pass, as planned
    assert _decide(plan, [_record(0, 5)]).held == ()  # a cold build: the next likely changes too
    assert _decide(plan, [_record(0, 5), _record(1, 0)]).held == (FEATURE_MAX,)
    changed_heavy = [_record(n, 2 if n % 3 else 0) for n in range(6)]  # 2 of the last 5 unchanged
    assert _decide(plan, changed_heavy).held == () and _decide(plan, changed_heavy).inline == (FEATURE_MAX,)
    other_branch = [_record(n, 0, branch="other") for n in range(5)]
    assert _decide(plan, other_branch).held == ()
    assert _decide(_Plan("when-changed"), []).held == (FEATURE_MAX,)  # whatever the records say
    assert _decide(_Plan("always"), [_record(n, 0) for n in range(5)]).inline == (FEATURE_MAX,)


def test_auto_narrows_an_export_the_branch_wrote_but_never_read_three_times_in_a_row() -> None:
    plan = _Plan()
    unread = [_record(0, 5, own=report.MISSED), _record(1, 5, cached=0), _record(2, 3, own=report.MISSED)]
    decision = _decide(plan, unread)
    narrowed = FEATURE_MAX.with_attrs(mode="min")
    assert decision.inline == (narrowed,) and decision.held == ()
    assert "narrowed to mode=min" in dict(decision.notes)[narrowed] and "narrowed" in decision.why[0]
    assert _decide(plan, unread[1:]).inline == (FEATURE_MAX,)  # two builds are not enough to tell
    assert _decide(plan, [*unread, _record(3, 1)]).inline == (FEATURE_MAX,)  # read again: mode=max again
    assert _decide(plan, [*unread[:2], _record(2, 3, exported=report.FAILED)]).inline == (FEATURE_MAX,)
    assert _decide(_Plan(branch="trunk"), unread).inline == (FEATURE_MAX,)  # every branch falls back to it
    # A job that doesn't know its default branch might be on it: main's mode=max cache is never narrowed by a guess.
    assert _decide(_Plan(default=None), unread).inline == (FEATURE_MAX,)  # type: ignore[arg-type]
    assert _decide(_Plan("always"), unread).inline == (FEATURE_MAX,)  # the setting turns it off
    assert _decide(_Plan("when-changed"), unread).held == (FEATURE_MAX,)


def test_a_narrowed_export_says_so_in_the_report() -> None:
    plan = _Plan()
    decision = _decide(plan, [_record(n, 5, own=report.MISSED) for n in range(3)])
    (narrowed,) = decision.inline
    found = noted(report.BuildReport(report.SUCCEEDED, exports=[report.ExportReport(narrowed, report.WRITTEN)]),
                  decision)
    assert found.exports[0].reason.startswith("narrowed to mode=min: the last 3 builds of this branch wrote")
    assert "narrowed to mode=min" in report.as_text(found) and "narrowed to mode=min" in report.as_markdown(found)


def test_explain_names_the_rule_and_with_records_why_each_export() -> None:
    plan = _Plan()
    assert "exports = \"auto\"" in why_rule(plan)  # type: ignore[arg-type]
    said = why_rule(plan, [_record(0, 5), _record(1, 0)])  # type: ignore[arg-type]
    assert "held back" in said and "1 of this branch's last 2 builds executed no step" in said
    assert "no build records of this branch to go by" in why_rule(plan, [])  # type: ignore[arg-type]
    # records that could not be read: the reason the build gives, not "none"
    unread = "1 of this branch's build records could not be read (first: x: not JSON)"
    said = why_rule(plan, [], unread=unread)  # type: ignore[arg-type]
    assert unread in said and "no build records" not in said


def test_explain_json_has_the_rule_and_each_export_s_outcome() -> None:
    from cacheport.ops.exports import rule_doc

    plan = _Plan()
    unread = rule_doc(plan)  # type: ignore[arg-type]  # without --history: the records decide, not read
    assert unread["rule"] == "auto" and unread["history"] is False
    assert [(e["cache"], e["outcome"]) for e in unread["exports"]] == [(report.describe(FEATURE_MAX), None)]
    held = rule_doc(plan, [_record(0, 0), _record(1, 0)])  # type: ignore[arg-type]
    assert held["history"] is True and held["exports"][0]["outcome"] == "held back"
    assert "2 of this branch's last 2 builds executed no step" in held["exports"][0]["why"]
    narrowed = rule_doc(plan, [_record(i, 5, own=report.MISSED) for i in range(3)])  # type: ignore[arg-type]
    assert narrowed["exports"][0]["outcome"] == "narrowed"
    none = rule_doc(plan, [], "the store is down")  # type: ignore[arg-type]
    assert none["exports"][0]["outcome"] == "written" and "the store is down" in none["exports"][0]["why"]
    assert rule_doc(_Plan("always"))["exports"][0]["outcome"] == "written"  # type: ignore[arg-type]


def test_reading_the_history_never_fails_the_build() -> None:
    def broken(tell: Callable[[str], None]) -> list[BuildRecord]:
        raise RuntimeError("a bug")

    assert in_background(_Plan(), broken)() == ()  # type: ignore[arg-type]
    assert in_background(_Plan("always"), broken)() == ()  # type: ignore[arg-type]


def test_a_store_slower_than_the_budget_never_holds_the_build_up() -> None:
    import threading

    release, done = threading.Event(), threading.Event()

    def slow(tell: Callable[[str], None]) -> list[BuildRecord]:
        release.wait(30)
        tell("warning: history: could not read this branch's build records (late); its exports go as planned")
        done.set()
        return [_record(0, 0)]

    said: list[str] = []
    answer = in_background(_Plan(), slow, said.append, budget=0.05)  # type: ignore[arg-type]
    try:
        assert answer() == ()
    finally:
        release.set()
    assert done.wait(30)
    # The reader left behind says nothing once the build has gone on: only the budget's line is heard.
    assert said == ["warning: history: this branch's build records were not read within 0.05 s; its exports go as "
                    "planned"]

    def fast(tell: Callable[[str], None]) -> list[BuildRecord]:
        tell("warning: history: one line")
        return [_record(0, 0)]

    assert len(in_background(_Plan(), fast, said.append, budget=30)()) == 1  # type: ignore[arg-type]
    assert said[1:] == ["warning: history: one line"]  # said from the caller's thread, when the answer is taken


def test_auto_without_records_exports_with_the_build(tmp_path: Path) -> None:
    # The stand-in's registry can't be read: no records, one line, one pass.
    (only,) = _build(tmp_path, "auto")
    assert any(a.startswith("--cache-to=type=registry") for a in only) and "--push" in only

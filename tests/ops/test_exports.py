"""The ``exports`` rule (#22): which exports wait for the build's outcome, when one is skipped, and the
export-only pass's arguments; through a stand-in docker, what reaches buildx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cacheport import report
from cacheport.entry import CacheEntry
from cacheport.ops.exports import export_only, held_back, skipped, unchanged
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

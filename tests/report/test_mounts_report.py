"""The build report's cache mounts section: text (the log and GitLab's collapsed section), JSON, Markdown."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cacheport.entry import CacheEntry
from cacheport.mounts import ACTIONS, MountOutcome
from cacheport.ops.build import publish
from cacheport.ops.build_report import show
from cacheport.report import (
    HIT,
    SUCCEEDED,
    WRITTEN,
    BuildReport,
    ExportReport,
    ImportReport,
    as_dict,
    as_markdown,
    as_text,
    merge,
)

CACHE = CacheEntry.parse("type=registry,ref=127.0.0.1:5000/app/cache:main")
OUTCOMES = (
    MountOutcome("/root/.cache/pip", "restored", name="127.0.0.1:5000/app/cache:main.mounts", size=12_345_678,
                 seconds=1.234),
    MountOutcome("npm", "missed", detail="no archive for feature-x, main"),
    MountOutcome("/root/.cache/pip", "saved", name="127.0.0.1:5000/app/cache:feature-x.mounts", size=13_000_000,
                 seconds=2.5),
    MountOutcome("npm", "unchanged", name="127.0.0.1:5000/app/cache:feature-x.mounts", size=800,
                 detail="same digest as stored"),
    MountOutcome("go", "refused", detail="this job may not write the cache (a fork's merge request)"),
    MountOutcome("cargo", "too-large", size=3 << 30, detail="3.2 GB is over the limit of\n2.1 GB per mount"),
    MountOutcome("apt", "failed", seconds=0.4, detail="registry said 503 | Service Unavailable"),
    MountOutcome("${HOME}/.cache", "skipped", detail="Dockerfile:4: $HOME has no value"),
)


def a_report(mounts: tuple[MountOutcome, ...] = OUTCOMES) -> BuildReport:
    return BuildReport(SUCCEEDED, imports=[ImportReport(CACHE, HIT)], exports=[ExportReport(CACHE, WRITTEN)],
                       wall_seconds=12.0, mounts=mounts)


def test_text_has_a_line_per_outcome_after_the_cache() -> None:
    assert as_text(a_report()) == """\
build succeeded in 12.0 s
  import hit     registry 127.0.0.1:5000/app/cache:main
  export written registry 127.0.0.1:5000/app/cache:main
  mount  restored  /root/.cache/pip from 127.0.0.1:5000/app/cache:main.mounts (12.3 MB, 1.2 s)
  mount  missed    npm: no archive for feature-x, main
  mount  saved     /root/.cache/pip to 127.0.0.1:5000/app/cache:feature-x.mounts (13.0 MB, 2.5 s)
  mount  unchanged npm at 127.0.0.1:5000/app/cache:feature-x.mounts (800 B): same digest as stored
  mount  refused   go: this job may not write the cache (a fork's merge request)
  mount  too-large cargo (3.2 GB): 3.2 GB is over the limit of 2.1 GB per mount
  mount  failed    apt (0.4 s): registry said 503 | Service Unavailable
  mount  skipped   ${HOME}/.cache: Dockerfile:4: $HOME has no value
"""


def test_json_lists_the_outcomes() -> None:
    data = json.loads(json.dumps(as_dict(a_report())))
    assert data["mounts"][0] == {"id": "/root/.cache/pip", "action": "restored",
                                 "name": "127.0.0.1:5000/app/cache:main.mounts", "size": 12_345_678,
                                 "seconds": 1.234, "detail": None}
    assert data["mounts"][1] == {"id": "npm", "action": "missed", "name": None, "size": 0, "seconds": 0.0,
                                 "detail": "no archive for feature-x, main"}
    assert [m["action"] for m in data["mounts"]] == [o.action for o in OUTCOMES]
    assert data["mounts"][5]["detail"] == "3.2 GB is over the limit of 2.1 GB per mount"


def test_markdown_has_a_table_of_its_own() -> None:
    text = as_markdown(a_report())
    table = text.split("\n\n")[-1].splitlines()
    assert table[:4] == [
        "| cache mount | | name | size, time | details |",
        "|---|---|---|---|---|",
        "| `/root/.cache/pip` | restored | `127.0.0.1:5000/app/cache:main.mounts` | 12.3 MB, 1.2 s |  |",
        "| `npm` | missed |  |  | no archive for feature-x, main |",
    ]
    assert table[8] == "| `apt` | failed |  | 0.4 s | registry said 503 \\| Service Unavailable |"
    assert len(table) == 2 + len(OUTCOMES)
    # mounts alone: the table follows the headline
    assert as_markdown(BuildReport(SUCCEEDED, mounts=OUTCOMES[:1])).splitlines()[1:4] == [
        "", "| cache mount | | name | size, time | details |", "|---|---|---|---|---|"]


def test_no_outcomes_no_section() -> None:
    plain = a_report(())
    assert "mount" not in as_text(plain)
    assert "mounts" not in as_dict(plain)
    assert "cache mount" not in as_markdown(plain)
    assert as_text(plain) == as_text(BuildReport(SUCCEEDED, imports=plain.imports, exports=plain.exports,
                                                 wall_seconds=12.0))


def test_merge_keeps_the_outcomes() -> None:
    stream = attrs.evolve(a_report(), sources=("rawjson",))
    metadata = attrs.evolve(a_report(()), sources=("metadata",))
    assert merge(metadata, stream).mounts == OUTCOMES
    assert merge(metadata).mounts == ()


def test_every_place_the_ci_shows_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary, report_file = tmp_path / "summary.md", tmp_path / "report.json"
    said: list[str] = []
    publish(a_report(), {"GITHUB_STEP_SUMMARY": str(summary), "GITLAB_CI": "true"}, said.append, str(report_file))
    assert said == [] and capsys.readouterr().err == ""  # the log's copy is show()'s alone
    assert "| `go` | refused |  |  | this job may not write the cache (a fork's merge request) |" in \
           summary.read_text()
    assert [m["id"] for m in json.loads(report_file.read_text())["mounts"]] == [o.id for o in OUTCOMES]


LINE = st.text(st.characters(exclude_categories=("Cc", "Zl", "Zp")))  # ids and names hold no line break
outcomes = st.builds(MountOutcome, id=LINE.filter(bool), action=st.sampled_from(ACTIONS), name=LINE,
                     size=st.integers(0, 1 << 50), seconds=st.floats(0, 1e6), detail=st.text())


@given(st.lists(outcomes, max_size=6))
def test_one_line_and_one_row_per_outcome_whatever_the_detail(mounts: list[MountOutcome]) -> None:
    report = BuildReport(SUCCEEDED, mounts=mounts)
    lines = as_text(report).splitlines()
    assert [line.split()[1] for line in lines if line.startswith("  mount  ")] == [m.action for m in mounts]
    rows = as_markdown(report).split("\n\n")[-1].splitlines()[2:] if mounts else []
    assert [row.split(" | ")[1] for row in rows] == [m.action for m in mounts]
    assert [m["action"] for m in as_dict(report).get("mounts", [])] == [m.action for m in mounts]


def test_a_mount_id_holding_terminal_escapes_reaches_the_text_report_escaped() -> None:
    # The id is the Dockerfile's text: in a fork's merge request, a stranger's. It must not set a title or hide lines.
    report = BuildReport(SUCCEEDED, mounts=(MountOutcome("x\x1b]0;owned\x07y", "skipped", detail="its id holds …"),))
    line = next(line for line in as_text(report).splitlines() if line.startswith("  mount "))
    assert "\x1b" not in line and "\x07" not in line
    assert "x\\x1b]0;owned\\x07y" in line


def test_in_gitlab_the_log_has_the_report_once_in_a_section(capsys: pytest.CaptureFixture[str]) -> None:
    """Each line of the report once, as in any other log, inside one section (open: the lines are what a reader
    looks for), with a header of its own."""
    def say(line: str) -> None:
        print(f"cacheport: {line}", file=sys.stderr)

    show(a_report(), {"GITLAB_CI": "true"}, say)
    gitlab = capsys.readouterr().err
    show(a_report(), {}, say)
    plain = capsys.readouterr().err
    lines = as_text(a_report()).splitlines()
    assert len(lines) > 2
    for line in lines:
        assert plain.count(line.strip()) == gitlab.count(line.strip()) == 1, line
    [stamp] = re.findall(r"^\x1b\[0Ksection_start:(\d+):cacheport_report\r\x1b\[0Kcacheport: cache report\n", gitlab)
    start = f"\x1b[0Ksection_start:{stamp}:cacheport_report\r\x1b[0Kcacheport: cache report\n"
    assert gitlab == start + plain + f"\x1b[0Ksection_end:{stamp}:cacheport_report\r\x1b[0K\n"

"""The cache's value across builds (cacheport.report.trend) and how it is shown (cacheport.report.chart): counts,
cold against warm, time saved, the falls with what changed, the JSON other tools read, and a chart that is a
well-formed SVG whatever the records hold."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from cacheport.report.chart import as_html, as_markdown, as_text, mermaid, spark, svg
from cacheport.report.record import BuildRecord, Use
from cacheport.report.trend import JSON_SCHEMA, as_dict, trend

T0 = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
CACHE = "registry 127.0.0.1:5000/app/cache:main"


def build(i: int, branch: str | None = "main", cached: int = 4, hit: bool = True, wall: float = 1.0,
          status: str = "succeeded", first_run: str = "", export: float = 2.0, size: int | None = 1000,
          **extra: object) -> BuildRecord:
    uses = (Use(CACHE, "import", "hit" if hit else "missed", 0.1, None, "" if hit else "not found"),
            Use(CACHE, "export", "written", export, size))
    return BuildRecord(id=f"{i:08x}", time=T0 + timedelta(minutes=i), source="build", project="app", branch=branch,
                       backend="registry", status=status, wall_seconds=wall, steps=(4, cached, 4 - cached),
                       first_run=first_run, uses=uses, **extra)  # type: ignore[arg-type]


def sequence() -> list[BuildRecord]:
    return [
        build(0, cached=0, hit=False, wall=10.0, first_run="[2/4] RUN make"),  # cold
        build(1, wall=2.0), build(2, wall=1.0),                                # warm
        build(3, cached=1, hit=False, wall=8.0, first_run="[3/4] RUN make"),   # a change: the import missed
        build(4, wall=1.0),
        build(5, branch="feature", wall=3.0),                                  # a new branch, warm from main
        build(6, status="failed", hit=False, cached=0, wall=0.5, size=None),   # a failed build
    ]


def test_counts_per_branch_in_order_of_their_first_build() -> None:
    t = trend(list(reversed(sequence())))  # any order in, time order out
    assert [r.id for r in t.records] == [f"{i:08x}" for i in range(7)]
    assert [(b.branch, b.builds, b.hits) for b in t.branches] == [("main", 6, 3), ("feature", 1, 1)]
    assert t.branches[0].shares == (0.0, 1.0, 1.0, 0.25, 1.0, 0.0)


def test_cold_against_warm_and_the_time_the_hits_saved() -> None:
    t = trend(sequence())
    assert sorted(t.cold) == [10.0]  # no step cached; the failed build is neither
    assert sorted(t.warm) == [1.0, 1.0, 2.0, 3.0, 8.0]  # a step or more cached, imported or not
    assert t.cold_median == 10.0 and t.warm_median == 2.0
    assert t.saved_seconds == (10 - 2) + (10 - 1) + (10 - 8) + (10 - 1) + (10 - 3)


def test_no_time_saved_is_claimed_without_a_cold_build() -> None:
    t = trend([build(1), build(2)])
    assert t.saved_seconds is None
    assert "unknown until a cold build" in as_text(t, "here")


def test_export_cost_adds_up_where_buildkit_said() -> None:
    t = trend(sequence())
    assert t.exports == 7 and t.export_seconds == 14.0 and t.export_bytes == 6000


def test_a_fall_names_the_import_that_missed_and_the_first_step_that_ran() -> None:
    t = trend(sequence())
    assert [(f.record.id, f.before, f.after) for f in t.falls] == [("00000003", 1.0, 0.25), ("00000006", 1.0, 0.0)]
    assert t.falls[0].missed == (f"{CACHE}: missed (not found)",) and t.falls[0].first_run == "[3/4] RUN make"
    text = as_text(t, "here")
    assert f"main: steps cached 100% → 25%: import {CACHE}: missed (not found); first step run: [3/4] RUN make" \
        in text


def test_the_json_is_stable() -> None:
    doc = as_dict(trend(sequence()), "127.0.0.1:5000/app/cache")
    assert doc["schema"] == JSON_SCHEMA
    assert list(doc) == ["schema", "where", "builds", "branches", "cold", "warm", "saved_seconds", "exports", "falls"]
    assert list(doc["builds"][0]) == ["name", "time", "branch", "key", "project", "backend", "source", "job",
                                      "job_url", "status", "wall_seconds", "hit", "steps", "cached_share",
                                      "first_run", "export_seconds", "export_bytes", "imports", "exports", "mounts"]
    assert doc["branches"][0] == {"branch": "main", "builds": 6, "hits": 3, "hit_rate": 0.5,
                                  "cached_share": 0.5417}
    assert doc["falls"][0]["missed"] == [f"{CACHE}: missed (not found)"]
    json.dumps(doc)


def test_the_terminal_chart_is_one_character_per_build() -> None:
    assert spark([0.0, 0.5, 1.0, None]) == "▁▅█·"
    text = as_text(trend(sequence()), "here")
    assert re.search(r"main +6 +3 \(50%\) +54% +▁██▃█▁", text), text


def test_no_records_says_so() -> None:
    empty = trend([])
    assert "no build records" in as_text(empty, "here")
    assert "No build records" in as_markdown(empty, "here") and "<svg" not in as_html(empty, "here")


HOSTILE = '<script>alert(1)</script>&"\''


def test_the_svg_is_well_formed_and_escapes_what_records_hold() -> None:
    records = [*sequence(), build(7, branch=HOSTILE, first_run=HOSTILE)]
    image = svg(trend(records))
    root = ET.fromstring(image)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    bars = [e for e in root.iter("{http://www.w3.org/2000/svg}rect") if e.find("{http://www.w3.org/2000/svg}title")
            is not None]
    assert len(bars) == 8
    assert "<script" not in image


def test_html_and_markdown_embed_the_chart() -> None:
    t = trend([*sequence(), build(7, branch=HOSTILE, job="j", job_url="javascript:alert(1)")])
    page = as_html(t, "here")
    assert page.count("<svg") == 1 and "<script" not in page and "javascript:" not in page
    ET.fromstring(page[page.index("<svg"):page.index("</svg>") + 6])
    md = as_markdown(t, "here")
    uri = re.search(r"\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", md)
    assert uri and base64.b64decode(uri.group(1)).decode() == svg(t)
    assert "| main | 6 | 3 (50%) | 54% |" in md


def _xychart(block: str) -> tuple[list[str], list[list[float]], list[str]]:
    labels = re.findall(r'"([^"]*)"', re.search(r"^  x-axis .*\[(.*)\]$", block, re.M).group(1))  # type: ignore[union-attr]
    values = [[float(v) for v in m.split(",")] for m in re.findall(r"^  (?:bar|line) \[(.*)\]$", block, re.M)]
    palette = re.search(r'plotColorPalette: "(.*)"', block).group(1)  # type: ignore[union-attr]
    return labels, values, [c.strip() for c in palette.split(",")]


def test_the_mermaid_chart_for_github_has_a_bar_per_build_in_the_series_of_its_kind() -> None:
    records = sequence()
    t = trend(records)
    text = mermaid(t)
    blocks = re.findall(r"^```mermaid\n(.*?)^```$", text, re.M | re.S)
    assert len(blocks) == 2 and all("\nxychart-beta\n" in b for b in blocks)
    labels, bars, colors = _xychart(blocks[0])
    assert labels == [str(i) for i in range(1, len(records) + 1)]
    kinds = {"#2e9d57": [r.hit and r.status != "failed" for r in t.records],
             "#d64541": [r.status == "failed" for r in t.records],
             "#b8bec6": [not r.hit and r.status != "failed" for r in t.records]}
    assert colors == [c for c in kinds if any(kinds[c])] and colors[-1] == "#b8bec6"  # no hit drawn last
    for color, values in zip(colors, bars, strict=True):
        assert values == [round((r.cached_share or 0) * 100) if kind else 0
                          for r, kind in zip(t.records, kinds[color], strict=True)]
    _labels, (times,), (blue,) = _xychart(blocks[1])
    assert times == [r.wall_seconds for r in t.records] and blue == "#1f5fbf"
    assert "green: an import hit; red: the build failed; grey: no hit" in text


def test_the_mermaid_chart_holds_numbers_only_whatever_the_records_hold() -> None:
    t = trend([build(1, branch="x\n```\n" + HOSTILE, first_run="```"), build(2, branch='"]\n  bar [1')])
    text = mermaid(t)
    assert text.count("```") == 4 and HOSTILE not in text and "bar [1\n" not in text
    md = as_markdown(t, "here", chart="mermaid")
    assert md.count("```mermaid") == 2 and "data:image" not in md
    one = mermaid(trend([build(1, wall=None)]))  # one build, no time: the bars alone
    assert one.count("```mermaid") == 1 and "  bar [100]" in one


def test_a_branch_name_from_the_store_stays_text_in_the_job_summary() -> None:
    hostile = "x](https://evil.invalid) <img src=\"https://evil.invalid/p.png\"> [y_`z`|*w*"
    md = as_markdown(trend([*sequence(), build(7, branch=hostile)]), "a`b")
    row = next(line for line in md.splitlines() if "evil" in line and line.startswith("|"))
    assert not re.search(r"(?<!\\)\]\(", row) and not re.search(r"(?<!\\)<img", row)  # no link, no HTML
    assert "x\\](https://evil.invalid) \\<img" in row
    assert row.count(" | ") == 4  # still five cells: the name's | is escaped
    assert "in `a'b`" in md  # the where, in its code span, can't end it early

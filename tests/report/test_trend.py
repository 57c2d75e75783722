"""The cache's value across builds (cacheport.report.trend) and how it is shown (cacheport.report.chart): counts,
cold against warm, time saved, the falls with what changed, the JSON other tools read, and a chart that is a
well-formed SVG whatever the records hold."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from cacheport.report.chart import as_html, as_markdown, as_text, spark, svg
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

"""Build records (cacheport.report.record): what a build leaves for the cache's history, and how a record read
back from a shared store is checked: a corrupt, hostile or newer record is one line, never a crash."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cacheport.entry import CacheEntry
from cacheport.errors import RecordError
from cacheport.mounts import MountOutcome
from cacheport.records import Context
from cacheport.refs import TAG_PATTERN
from cacheport.report import BuildReport, ExportReport, ImportReport, Steps
from cacheport.report.record import (
    PREFIX,
    SCHEMA,
    BuildRecord,
    job_url,
    parse_name,
    parse_record,
    record_name,
    record_of,
    to_json,
)

NOW = datetime(2026, 12, 6, 7, 30, 15, 123456, tzinfo=UTC)
IMPORT = CacheEntry("registry", {"ref": "127.0.0.1:5000/app/cache:main"})
EXPORT = CacheEntry("registry", {"ref": "127.0.0.1:5000/app/cache:main", "mode": "max"})


def report(cached: int = 3, hit: bool = True) -> BuildReport:
    return BuildReport("succeeded", steps=Steps(4, cached, 4 - cached),
                       imports=[ImportReport(IMPORT, "hit" if hit else "missed", "" if hit else "not found", 0.25)],
                       exports=[ExportReport(EXPORT, "written", seconds=1.5, size=2048)], wall_seconds=3.5,
                       first_run="[4/4] RUN make")


def test_a_record_says_what_the_build_did_and_reads_back_the_same() -> None:
    import attrs

    mounts = [MountOutcome("pip", "restored", name="cacheport-mount-pip", size=100, seconds=0.5)]
    env = {"GITHUB_SERVER_URL": "https://github.example", "GITHUB_REPOSITORY": "o/app", "GITHUB_RUN_ID": "7"}
    record = record_of(attrs.evolve(report(), mounts=mounts), Context("github", "o/app", branch="main", job="build"),
                       "registry", env, now=NOW, key="arm64", version="9.9")
    assert record.hit and record.steps == (4, 3, 1) and record.cached_share == 0.75
    assert record.job_url == "https://github.example/o/app/actions/runs/7"
    assert [(u.kind, u.status) for u in record.uses] == [("import", "hit"), ("export", "written"),
                                                         ("mount", "restored")]
    assert record.export_seconds == 1.5 and record.export_bytes == 2048
    data = to_json(record)
    assert b"\n" not in data and json.loads(data)["schema"] == SCHEMA
    back = parse_record(data)
    assert back == attrs_evolve_time(record, back.time)  # the time is kept to the millisecond
    assert abs(back.time - record.time) < timedelta(milliseconds=1)


def attrs_evolve_time(record: BuildRecord, when: datetime) -> BuildRecord:
    import attrs

    return attrs.evolve(record, time=when)


def test_gitlab_s_job_url_is_the_job_s_own() -> None:
    assert job_url({"CI_JOB_URL": "https://gitlab.example/g/a/-/jobs/1"}) == "https://gitlab.example/g/a/-/jobs/1"
    assert job_url({}) is None


@pytest.mark.parametrize("branch", ["main", "feature/Login Form", "x" * 300, "日本語", None])
def test_a_record_s_name_is_a_tag_that_sorts_by_time_and_names_its_branch(branch: str | None) -> None:
    name = record_name(branch, NOW, "0123abcd")
    assert TAG_PATTERN.match(name) and len(name) <= 128 and name.startswith(PREFIX)
    parsed = parse_name(name)
    assert parsed is not None
    later = parse_name(record_name(branch, NOW + timedelta(milliseconds=1), "00000000"))
    assert later is not None and later[0] == parsed[0] and later[1] > parsed[1]


def test_other_names_are_not_records() -> None:
    assert parse_name("main") is None
    assert parse_name(f"{PREFIX}main-2026") is None
    assert parse_name(f"{PREFIX}main-20261206073015123-0123abcd-x") is None


def test_two_records_of_one_millisecond_have_different_names() -> None:
    ctx = Context("local", "app", branch="main")
    names = {record_of(report(), ctx, "registry", {}, now=NOW).name for _ in range(50)}
    assert len(names) == 50


def good() -> dict[str, object]:
    return json.loads(to_json(record_of(report(), Context("local", "app", branch="main"), "registry", {}, now=NOW)))


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d.update(schema=SCHEMA + 1, cacheport="7.0"), "newer cacheport (7.0"),
    (lambda d: d.pop("schema"), "no schema version"),
    (lambda d: d.update(id="../../etc"), "'id'"),
    (lambda d: d.update(time="yesterday"), "'time'"),
    (lambda d: d.update(steps={"total": 1, "cached": 5, "executed": 0}), "does not add up"),
    (lambda d: d.update(wall_seconds=-1), "'wall_seconds'"),
    (lambda d: d.update(wall_seconds=True), "'wall_seconds'"),
    (lambda d: d.update(wall_seconds=float("nan")), "'wall_seconds'"),  # json.dumps writes NaN, json.loads reads it
    (lambda d: d.update(uses=[{"kind": "exec", "cache": "x", "status": "hit"}]), "kind 'exec'"),
    (lambda d: d.update(uses="everything"), "'uses'"),
    (lambda d: d.update(project=""), "'project'"),
])
def test_a_bad_record_is_one_line_saying_what_is_wrong(change, words: str) -> None:  # type: ignore[no-untyped-def]
    doc = good()
    change(doc)
    with pytest.raises(RecordError, match=re.escape(words)) as caught:
        parse_record(json.dumps(doc).encode())
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[1]", b"null", b"[" * 100_000, b"{" + b" " * (70 << 10) + b"}"])
def test_what_is_not_a_record_is_refused(data: bytes) -> None:
    with pytest.raises(RecordError):
        parse_record(data)


def test_text_from_a_record_is_one_line_of_bounded_length() -> None:
    doc = good()
    doc["first_run"] = "RUN a\n\x1b[31mred" + "x" * 5000
    record = parse_record(json.dumps(doc).encode())
    assert "\n" not in record.first_run and len(record.first_run) <= 300


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=20)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from([*good(), "x"]), json_values, max_size=12))
def test_any_json_is_a_record_or_a_record_error(doc: dict[str, object]) -> None:
    merged = {**good(), **doc}
    try:
        record = parse_record(json.dumps(merged).encode())
    except RecordError as exc:
        assert "\n" not in str(exc)
    else:
        assert parse_record(to_json(record)).id == record.id

"""cacheport.report on what real builds recorded (tests/data/buildkit, made by scripts/record-buildkit-data).

Each scenario was built on both BuildKit generations of the harness: buildx 0.13 (BuildKit 0.13, no build history)
and buildx 0.29 (BuildKit 0.25, with `docker buildx history`). The assertions are what each build really did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cacheport.entry import CacheEntry
from cacheport.errors import ReportError
from cacheport.report import (
    FAILED,
    HIT,
    MISSED,
    SKIPPED,
    UNKNOWN,
    WRITTEN,
    BuildReport,
    as_dict,
    as_markdown,
    as_text,
    describe,
    history_builder,
    history_ref,
    history_refs,
    merge,
    parse_history,
    parse_metadata,
    parse_rawjson,
)

DATA = Path(__file__).parent.parent / "data" / "buildkit"
GENERATIONS = ("old", "current")


@attrs.frozen
class Recorded:
    """One recorded build: what was run, and each record buildx kept of it."""

    build: dict[str, Any]
    imports: tuple[CacheEntry, ...]
    exports: tuple[CacheEntry, ...]
    rawjson: str
    metadata: dict[str, Any] | None
    history: dict[str, Any] | None
    history_logs: str | None

    def stream(self) -> BuildReport:
        return parse_rawjson(self.rawjson, self.imports, self.exports)

    def all_sources(self) -> BuildReport:
        reports = [self.stream()]
        if self.metadata is not None:
            reports.append(parse_metadata(self.metadata, self.imports, self.exports))
        if self.history is not None:
            reports.append(parse_history(self.history, self.imports, self.exports))
        return merge(*reports)


def recorded(generation: str, scenario: str) -> Recorded:
    base = DATA / generation / scenario

    def text(suffix: str) -> str | None:
        path = base.with_name(f"{scenario}.{suffix}")
        return path.read_text() if path.is_file() else None

    build = json.loads(text("build.json") or "{}")
    metadata, history = text("metadata.json"), text("history.json")
    return Recorded(build, tuple(CacheEntry.parse(e) for e in build["imports"]),
                    tuple(CacheEntry.parse(e) for e in build["exports"]), text("rawjson") or "",
                    json.loads(metadata) if metadata else None, json.loads(history) if history else None,
                    text("history-logs.rawjson"))


def statuses(report: BuildReport) -> tuple[list[str], list[str]]:
    return [i.status for i in report.imports], [e.status for e in report.exports]


generations = pytest.mark.parametrize("generation", GENERATIONS)


# --- what each scenario shows ------------------------------------------------------------------------------------


@generations
def test_a_cold_build_executes_every_step_and_writes_its_export(generation: str) -> None:
    rec = recorded(generation, "cold")
    report = rec.stream()
    assert report.status == "succeeded" and rec.build["exit"] == 0
    assert report.steps is not None and (report.steps.total, report.steps.cached, report.steps.executed) == (4, 0, 4)
    (export,) = report.exports
    assert export.status == WRITTEN and export.format == "image-manifest" and export.layers == 4
    assert export.seconds is not None and export.seconds > 0
    assert rec.metadata is not None
    # The stream's manifest digest is the one buildx's metadata file names.
    assert export.digest == json.loads(rec.metadata["cache.manifest"])["digest"]


@generations
def test_a_warm_build_hits_its_import_and_runs_nothing(generation: str) -> None:
    report = recorded(generation, "warm").stream()
    assert statuses(report) == ([HIT], [WRITTEN])
    assert report.steps is not None and (report.steps.cached, report.steps.executed) == (4, 0)


@generations
def test_an_import_whose_tag_does_not_exist_is_missed_and_the_build_runs_cold(generation: str) -> None:
    report = recorded(generation, "missing-import").stream()
    assert statuses(report) == ([MISSED], [WRITTEN])
    assert report.imports[0].reason == "not found"
    assert report.steps is not None and report.steps.executed == 4


@generations
def test_the_fallback_chain_misses_the_branch_and_hits_the_default_branch(generation: str) -> None:
    report = recorded(generation, "fallback").stream()
    assert statuses(report) == ([MISSED, HIT], [WRITTEN])
    assert report.steps is not None and report.steps.cached == 4


@generations
def test_an_export_to_a_stopped_registry_is_failed_though_the_build_exited_0(generation: str) -> None:
    rec = recorded(generation, "failed-export")
    assert rec.build["exit"] == 0  # ignore-error=true hid it from buildx's exit status
    report = rec.stream()
    assert report.status == "succeeded"
    assert statuses(report) == ([FAILED], [FAILED])
    assert "connection refused" in report.imports[0].reason and "connection refused" in report.exports[0].reason
    assert "\n" not in report.exports[0].reason
    # The metadata file alone tells it too: no cache manifest came back.
    assert rec.metadata is not None and "cache.manifest" not in rec.metadata
    assert statuses(parse_metadata(rec.metadata, rec.imports, rec.exports))[1] == [FAILED]
    assert statuses(rec.all_sources()) == ([FAILED], [FAILED])


@generations
def test_a_failed_build_names_its_step_and_skips_the_export(generation: str) -> None:
    rec = recorded(generation, "failed-build")
    assert rec.build["exit"] == 1 and rec.metadata is None  # buildx writes no metadata file for a failed build
    report = rec.stream()
    assert report.status == "failed"
    assert report.error.startswith("[5/5] RUN echo cacheport-ran: fails") and "exit code: 3" in report.error
    assert statuses(report) == ([HIT], [SKIPPED])
    assert report.steps is not None and (report.steps.total, report.steps.cached, report.steps.executed) == (5, 4, 1)


@generations
def test_a_dockerfile_that_does_not_parse_fails_before_any_cache_is_touched(generation: str) -> None:
    rec = recorded(generation, "bad-dockerfile")
    assert rec.build["exit"] == 1
    report = rec.stream()
    assert report.status == "failed" and report.steps is None
    assert report.error.endswith("dockerfile parse error on line 6: unknown instruction: NOSUCHINSTRUCTION")
    assert statuses(report) == ([UNKNOWN], [SKIPPED])
    assert report.imports[0].reason == "the build failed before importing"


@generations
def test_local_imports_hit_or_miss_by_directory(generation: str) -> None:
    report = recorded(generation, "local").stream()
    assert statuses(report) == ([HIT, MISSED], [WRITTEN])
    assert report.imports[1].reason.startswith("not found")


@generations
def test_a_gha_import_is_unknown_because_buildkit_never_reports_a_miss(generation: str) -> None:
    report = recorded(generation, "gha").stream()
    assert statuses(report) == ([UNKNOWN], [WRITTEN])
    assert report.steps is not None and report.steps.executed == 4  # the scope was new: nothing to hit


def test_the_old_generation_leaves_no_build_history() -> None:
    assert not list((DATA / "old").glob("*.history*"))


# --- build history (buildx 0.29) ---------------------------------------------------------------------------------


def test_the_metadata_names_the_builder_its_history_is_on() -> None:
    assert history_builder(recorded("current", "cold").metadata or {}) == "default"
    assert history_builder({"buildx.build.ref": "builder-1f2e/builder-1f2e0/qk2x0yi1axls7jh7d7elbs0yq"}) == "builder-1f2e"
    assert history_builder({"buildx.build.ref": "qk2x0yi1axls7jh7d7elbs0yq"}) == history_builder({}) == ""


@pytest.mark.parametrize("scenario", ["cold", "warm", "missing-import", "fallback", "failed-export", "local", "gha"])
def test_history_agrees_with_the_stream_and_knows_the_metadata_ref(scenario: str) -> None:
    rec = recorded("current", scenario)
    assert rec.history is not None and rec.metadata is not None
    report = parse_history(rec.history, rec.imports, rec.exports)
    assert report.status == "succeeded" and report.ref == history_ref(rec.metadata) == rec.build["history_ref"]
    stream = rec.stream()
    assert report.steps is not None and stream.steps is not None
    assert report.steps.counts == "vertices" and report.steps.cached == stream.steps.cached
    assert report.steps.total > stream.steps.total  # it counts BuildKit's internal steps as well
    assert report.wall_seconds is not None and report.wall_seconds > 0
    assert all(e.status == UNKNOWN for e in report.exports)  # history records no cache exports


def test_history_knows_which_imports_buildkit_received() -> None:
    rec = recorded("current", "local")
    assert rec.history is not None
    report = parse_history(rec.history, rec.imports, rec.exports)
    assert statuses(report)[0] == [UNKNOWN, MISSED]  # the missing directory never reached BuildKit


def test_history_of_a_failed_build() -> None:
    rec = recorded("current", "failed-build")
    assert rec.history is not None
    report = parse_history(rec.history, rec.imports, rec.exports)
    assert report.status == "failed" and "exit code: 3" in report.error and report.error.startswith("[5/5] RUN")
    broken = recorded("current", "bad-dockerfile")
    assert broken.history is not None
    report = parse_history(broken.history, broken.imports, broken.exports)
    assert report.status == "failed" and report.error == "dockerfile parse error on line 6: unknown instruction: " \
        "NOSUCHINSTRUCTION"


@pytest.mark.parametrize("scenario", ["cold", "warm", "missing-import", "fallback", "failed-export", "failed-build",
                                      "local", "gha"])  # not bad-dockerfile: its error is only buildx's own text
def test_history_logs_give_the_same_answers_as_the_build_s_own_stream(scenario: str) -> None:
    """`docker buildx history logs --progress=rawjson` serves a build run by hand, after the fact."""
    rec = recorded("current", scenario)
    assert rec.history_logs is not None
    later = parse_rawjson(rec.history_logs, rec.imports, rec.exports)
    now = rec.stream()
    assert (later.status, later.error, later.steps) == (now.status, now.error, now.steps)
    assert statuses(later) == statuses(now)
    assert [e.digest for e in later.exports] == [e.digest for e in now.exports]


def test_history_ls_lists_the_recorded_builds_newest_first() -> None:
    refs = history_refs((DATA / "current" / "history-ls.json").read_text())
    order = ["cold", "warm", "missing-import", "fallback", "failed-export", "failed-build", "bad-dockerfile", "local",
             "gha"]
    mine = [recorded("current", s).build["history_ref"] for s in order]
    assert [r for r in refs if r in mine] == mine[::-1]


# --- merging -----------------------------------------------------------------------------------------------------


def test_merge_takes_each_answer_from_the_source_that_has_it() -> None:
    rec = recorded("current", "fallback")
    assert rec.metadata is not None and rec.history is not None
    merged = rec.all_sources()
    assert merged.sources == ("rawjson", "history", "metadata")
    assert statuses(merged) == ([MISSED, HIT], [WRITTEN])
    assert merged.steps is not None and merged.steps.counts == "steps"  # the Dockerfile's steps, not vertices
    assert merged.wall_seconds == parse_history(rec.history).wall_seconds
    assert merged.ref == rec.build["history_ref"]
    assert merged.exports[0].layers == 4 and merged.exports[0].digest


def test_merge_without_a_stream_still_says_what_history_and_metadata_know() -> None:
    rec = recorded("current", "failed-export")
    assert rec.metadata is not None and rec.history is not None
    merged = merge(parse_metadata(rec.metadata, rec.imports, rec.exports),
                   parse_history(rec.history, rec.imports, rec.exports))
    assert statuses(merged) == ([UNKNOWN], [FAILED])
    assert merged.steps is not None and merged.steps.counts == "vertices"


def test_merge_refuses_reports_about_different_entries() -> None:
    a = recorded("current", "warm")
    b = recorded("current", "fallback")
    with pytest.raises(ReportError, match="different cache entries"):
        merge(a.stream(), b.stream())


# --- inputs that are not what buildx writes ----------------------------------------------------------------------


def test_a_stream_given_as_lines_reads_the_same() -> None:
    rec = recorded("old", "fallback")  # buildx 0.13 pretty-prints each status over many lines
    assert parse_rawjson(rec.rawjson.splitlines(), rec.imports, rec.exports) == rec.stream()


def test_an_empty_stream_knows_nothing() -> None:
    entry = CacheEntry.parse("type=registry,ref=r.example/app/cache:main")
    report = parse_rawjson("", [entry], [entry])
    assert report.status == UNKNOWN and statuses(report) == ([UNKNOWN], [UNKNOWN]) and report.steps is None


@given(st.text())
def test_any_text_parses_without_raising(text: str) -> None:
    parse_rawjson(text, [CacheEntry.parse("type=local,src=/c")], [CacheEntry.parse("type=local,dest=/c")])


def test_documents_that_are_not_records_are_refused() -> None:
    with pytest.raises(ReportError, match="history inspect"):
        parse_history({"Name": "x"})
    with pytest.raises(ReportError, match=r"cache\.manifest is not JSON"):
        parse_metadata({"cache.manifest": "{nope"})


# --- rendering ---------------------------------------------------------------------------------------------------


def test_text_names_each_cache_and_what_became_of_it() -> None:
    rec = recorded("current", "failed-export")
    text = as_text(rec.all_sources())
    lines = text.splitlines()
    assert lines[0].startswith("build succeeded in ") and "0/4 steps cached, 4 executed" in lines[0]
    ref = rec.imports[0].get("ref")
    assert lines[1].startswith(f"  import failed  registry {ref}: ") and "connection refused" in lines[1]
    assert lines[2].startswith(f"  export failed  registry {ref} (1 layer, ") and "connection refused" in lines[2]


def test_markdown_has_one_row_per_cache() -> None:
    md = as_markdown(recorded("old", "fallback").stream())
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert [r.split(" | ")[1:3] for r in rows] == [["import", "missed"], ["import", "hit"], ["export", "written"]]
    assert md.startswith("**build succeeded in ")


def test_json_is_plain_data() -> None:
    doc = as_dict(recorded("current", "failed-build").all_sources())
    assert json.loads(json.dumps(doc)) == doc
    assert doc["status"] == "failed" and doc["exports"][0]["status"] == SKIPPED
    assert doc["steps"] == {"total": 5, "cached": 4, "executed": 1, "counts": "steps"}


def test_no_rendering_shows_a_credential() -> None:
    rec = recorded("current", "gha")
    secret = "s3cr3t-t0ken"
    entries = [e.with_attrs(token=secret) for e in rec.imports]
    report = parse_rawjson(rec.rawjson, entries, [e.with_attrs(token=secret) for e in rec.exports])
    for out in (as_text(report), as_markdown(report), json.dumps(as_dict(report))):
        assert secret not in out and "scope=record-current-" in out
    assert describe(CacheEntry.parse("type=s3,bucket=b,prefix=app/,name=main,secret_access_key=k")) == "s3 b/app/main"


def test_steps_after_the_failed_one_are_not_run_not_executed() -> None:
    def vertex(n: int, name: str, **times: Any) -> str:
        return json.dumps({"vertexes": [{"digest": f"sha256:{n:064x}", "name": name, **times}]})

    at = {"started": "2026-12-06T06:15:28.1Z", "completed": "2026-12-06T06:15:28.2Z"}
    stream = "\n".join([  # as buildx 0.29 wrote it: step 2 fails, so 3 and 4 are announced but never start
        vertex(1, "[1/4] COPY busybox /bin/busybox", cached=True, **at),
        vertex(2, "[2/4] RUN busybox --install -s /bin", **at, error="network bridge not found"),
        vertex(3, "[3/4] RUN sleep 3"),
        vertex(4, "[4/4] RUN sleep 3"),
    ])
    report = parse_rawjson(stream)
    assert report.status == "failed" and report.steps is not None
    assert (report.steps.total, report.steps.cached, report.steps.executed) == (4, 1, 1)
    headline = as_text(report).splitlines()[0]
    assert headline.startswith("build failed") and headline.endswith(": 1/4 steps cached, 1 executed, 2 not run")


def test_a_stage_s_base_image_is_not_a_step_the_cache_saves() -> None:
    def vertex(n: int, name: str, **more: Any) -> str:
        return json.dumps({"vertexes": [{"digest": f"sha256:{n:064x}", "name": name, **more}]})

    at = {"started": "2026-12-06T06:15:28.1Z", "completed": "2026-12-06T06:15:28.2Z"}
    base = "[1/3] FROM 127.0.0.1:5000/base/busybox:1@sha256:" + "a" * 64
    # As BuildKit reports an unchanged rebuild on a real base image: the FROM only resolves, never "cached".
    warm = "\n".join([vertex(1, base, **at), vertex(2, "[2/3] RUN make", cached=True, **at),
                      vertex(3, "[3/3] COPY out /out", cached=True, **at)])
    report = parse_rawjson(warm)
    assert report.steps is not None and (report.steps.total, report.steps.cached, report.steps.executed) == (2, 2, 0)
    assert report.first_run == ""
    # And a cold one: the base counts neither as cached nor as run; the first step run is the first RUN.
    cold = "\n".join([vertex(1, base, cached=True, **at), vertex(2, "[2/3] RUN make", **at),
                      vertex(3, "[3/3] COPY out /out", **at)])
    report = parse_rawjson(cold)
    assert report.steps is not None and (report.steps.cached, report.steps.executed) == (0, 2)
    assert report.first_run == "[2/3] RUN make"
    staged = parse_rawjson(vertex(1, "[build 1/2] FROM 127.0.0.1:5000/base/busybox:1", **at))
    assert staged.steps is None

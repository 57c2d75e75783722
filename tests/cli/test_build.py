"""``cacheport build``'s own display: the build's log as a person sees it while cacheport reads BuildKit's record."""

from __future__ import annotations

from pathlib import Path

from cacheport.cli.build import PlainPrinter, reporter_for


def test_the_rawjson_stream_reads_like_plain_progress_for_both_generations() -> None:
    """The log a person sees while cacheport reads BuildKit's record, from recorded streams of both generations."""

    for generation in ("old", "current"):
        stream = (Path(__file__).parent.parent / "data" / "buildkit" / generation / "cold.rawjson").read_text()
        lines: list[str] = []
        printer = PlainPrinter(lines.append)
        for i in range(0, len(stream), 97):  # in pieces that cut objects and lines apart, as a pipe does
            printer.feed(stream[i:i + 97])
        printer.close()
        text = "".join(lines)
        assert "cacheport-ran: slow" in text and "cacheport-ran: random" in text, generation
        assert any(line.startswith("#") and "DONE" in line for line in lines), generation
        assert "exporting cache to registry" in text, generation
        assert all(line.endswith("\n") for line in lines) and '{"vertexes"' not in text, generation


def test_the_user_s_progress_flag_chooses_what_the_log_shows() -> None:
    stream = (Path(__file__).parent.parent / "data" / "buildkit" / "current" / "cold.rawjson").read_text()
    shown: dict[str | None, list[str]] = {}
    for mode in (None, "auto", "plain", "tty", "quiet", "rawjson"):
        lines = shown[mode] = []
        reporter = reporter_for(mode)(lines.append)
        reporter.feed(stream)
        reporter.close()
        reporter.write("Usage:  docker buildx build [OPTIONS] PATH\n")  # what buildx printed instead of a build
    assert shown["quiet"] == []
    assert "".join(shown["rawjson"]) == stream + "Usage:  docker buildx build [OPTIONS] PATH\n"
    plain = shown[None]
    assert plain[-1] == "Usage:  docker buildx build [OPTIONS] PATH\n" and '{"vertexes"' not in "".join(plain)
    assert shown["auto"] == shown["plain"] == shown["tty"] == plain

"""``cacheport report``: what BuildKit did with the cache in a build you ran yourself."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cacheport.cli.common import format_option, plan_options
from cacheport.cli.output import warn
from cacheport.errors import NoHistoryError, ReportError

if TYPE_CHECKING:
    from cacheport.cli.session import Session
    from cacheport.entry import CacheEntry
    from cacheport.ops.docker import Docker
    from cacheport.report import BuildReport


def _buildx(docker: Docker, *args: str, stderr: bool = False) -> str:
    """What ``docker buildx ARGS`` printed (on stderr: ``history logs`` writes its stream there)."""
    import subprocess

    try:
        done = docker.run("buildx", *docker.builder_args(), *args)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ReportError(f"could not run {docker.client} buildx: {exc}") from None
    if done.returncode != 0:
        from cacheport.ops.docker import last_line

        said = last_line(done.stderr or done.stdout)
        if args[0] == "history" and ("unknown" in (done.stderr or "").lower() or "COMMAND --help" in said):
            raise NoHistoryError("this buildx keeps no build history (0.21 added it): save the build's "
                              "--progress=rawjson output or --metadata-file, and give --progress-file or "
                              "--metadata-file")
        raise ReportError(f"docker buildx {' '.join(args[:2])}: {said}")
    return done.stderr if stderr else done.stdout


def _from_history(ref: str | None, docker: Docker, imports: Sequence[CacheEntry],
                  exports: Sequence[CacheEntry]) -> list[BuildReport]:
    """The build's record in buildx's history and its progress stream (``ref``, else the builder's last build)."""
    from cacheport import report

    try:
        doc = json.loads(_buildx(docker, "history", "inspect", *([ref] if ref else []), "--format", "json"))
    except ValueError:
        raise ReportError("docker buildx history inspect printed no JSON (buildx 0.23 or newer has it)") from None
    logs = _buildx(docker, "history", "logs", report.history_ref({"buildx.build.ref": doc["Ref"]}),
                   "--progress=rawjson", stderr=True)
    return [report.parse_history(doc, imports, exports), report.parse_rawjson(logs, imports, exports)]


@click.command("report", epilog="""\b
Examples:
  docker buildx build $(cacheport args) . && cacheport report            # the last build on this builder
  cacheport report ^1                                                     # the build before it, by history ref
  docker buildx build --progress=rawjson $(cacheport args) . 2> build.json; cacheport report --progress-file build.json
  docker buildx build --metadata-file meta.json $(cacheport args) .     # in a GitHub job:
  cacheport report --metadata-file meta.json --format markdown >> "$GITHUB_STEP_SUMMARY"
""")
@click.argument("ref", required=False)
@click.option("--builder", metavar="NAME", help="The builder whose history to read (default: the one the "
              "metadata file names, else $BUILDX_BUILDER, else the current one).")
@click.option("--progress-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A saved --progress=rawjson stream of the build (works with any buildx).")
@click.option("--metadata-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The build's --metadata-file (names its history ref, and the cache manifest written).")
@click.option("--record/--no-record", default=True, help="Keep the report as a record for `cacheport history` "
              "(once per build: --no-record when reporting a build again).")
@format_option(["text", "json", "markdown"], "text")
@plan_options
def command(ref: str | None, builder: str | None, progress_file: Path | None, metadata_file: Path | None,
            record: bool, fmt: str, session: Session) -> None:
    """Report what BuildKit did with the cache in a build run by hand: steps cached and executed, each import of
    this plan hit, missed or failed, each export written or failed.

    Reads BuildKit's own records, never the plan: a saved progress stream or metadata file, else buildx's build
    history (buildx 0.21 or newer): REF, the ref in the metadata file, or the builder's last build.
    """
    from cacheport import report

    asked = ref is not None  # a ref given by hand must be readable; one from the metadata file may not be
    plan = session.plan
    if os.environ.get("GITHUB_ACTIONS") == "true":
        from cacheport.render import secret_values

        # stdout may be the job summary; the runner reads commands on stderr too, and hides each value from then on.
        for value in secret_values(plan):
            click.echo(f"::add-mask::{value}", err=True)
    imports, exports = plan.imports, plan.exports
    found = []
    if progress_file is not None:
        found.append(report.parse_rawjson(progress_file.read_text(encoding="utf-8", errors="replace"), imports,
                                          exports))
    if metadata_file is not None:
        try:
            meta = json.loads(metadata_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ReportError(f"{metadata_file}: not a buildx metadata file: {exc}") from None
        found.append(report.parse_metadata(meta, imports, exports))
        ref = ref or report.history_ref(meta) or None
        builder = builder or report.history_builder(meta) or None
    if ref or not found:
        try:
            from cacheport.ops.docker import docker_for

            found += _from_history(ref, docker_for(session.environ, builder), imports, exports)
        except ReportError as exc:
            if not found or asked:
                raise
            # The metadata still says what was exported; a cache problem is never worth failing over.
            why = "this buildx keeps no build history (0.21 added it)" if isinstance(exc, NoHistoryError) else str(exc)
            warn(f"{why}: reporting from the given files alone (a metadata file knows exports, not imports or steps)")
    merged = report.merge(*found)
    if record and merged.status != report.UNKNOWN:
        from cacheport.cli.history import keep_record

        keep_record(session, "report")(merged)
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(merged), indent=2))
    elif fmt == "markdown":
        click.echo(report.as_markdown(merged), nl=False)
    else:
        click.echo(report.as_text(merged), nl=False)

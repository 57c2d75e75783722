"""``cacheport history``: the cache's value across builds, from the records builds leave beside the cache; and
what keeps a build's record (``cacheport build`` and ``cacheport report`` call it)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cacheport.cli.common import format_option, plan_options
from cacheport.cli.output import say, warn

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from cacheport.cli.session import Session
    from cacheport.errors import CacheportError
    from cacheport.ops.history import Shelf, Shelved
    from cacheport.ops.recorder import Recorder
    from cacheport.report import BuildReport
    from cacheport.report.record import BuildRecord


#: Records read for the trend a CI job shows after its build: each is a request or two (Pulp: about a second each).
TREND_AFTER_BUILD = 10


def keep_record(session: Session, source: str) -> Callable[[BuildReport], None]:
    """What keeps a build's record for ``cacheport history`` (:func:`cacheport.ops.history.leave_record`), at once
    (``cacheport report``); ``cacheport build`` keeps its own off its critical path (:class:`BuildHistory`)."""

    def keep(found: BuildReport) -> None:
        history = BuildHistory(session, source)
        history.begin(None)
        history.keep(found)
        history.finish()

    return keep


class BuildHistory:
    """A build's record (:class:`cacheport.ops.recorder.Recorder`), kept while the build ends, then, in CI, the
    branch's trend read through the same open shelf. :meth:`finish` waits for it; nothing here ever fails the
    build: a problem, a bug included, is one warning line."""

    def __init__(self, session: Session, source: str = "build") -> None:
        self.session, self.source = session, source
        self.recorder: Recorder | None = None

    def begin(self, key: object | None) -> None:
        """Open the shelf while the build runs; ``key`` is the one the build signs with (None: loaded if needed).
        When the trend will be shown from the shelf the record goes to, its records are read then too."""
        from cacheport.ops.history import signing_of, writes_store
        from cacheport.ops.recorder import Recorder

        session = self.session
        with self._guarded():
            backend = session.plugins.backend(session.plan.backend)
            plan = session.plan
            signing = signing_of(plan, session.environ, writing=True, key=key)
            # A job that may not write the store keeps its record in its directory but shows the store's trend.
            same = writes_store(plan) or not backend.store or backend.cache_type == "local"
            trend = TREND_AFTER_BUILD if self.source == "build" and same and shows_trend(session.environ) else 0
            self.recorder = Recorder(plan, lambda: session.store() if backend.store else None,
                                     backend.cache_type, session.environ, session.cwd, say, source=self.source,
                                     signing=signing, trend=trend)
            self.recorder.begin()

    def keep(self, found: BuildReport) -> None:
        """Write ``found``'s record on a thread."""
        if self.recorder is not None:
            with self._guarded():
                self.recorder.keep(found)

    def finish(self) -> None:
        """Wait for the record, and say what became of it."""
        if self.recorder is not None:
            recorder, self.recorder = self.recorder, None
            with self._guarded():
                kept = recorder.finish()
                if kept is not None and self.source == "build":
                    show_trend(self.session, kept.branch, recorder.read)

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        try:
            yield
        except Exception as exc:  # the history is never worth a failed build, not even its bug
            say(f"warning: history: the build record was not kept ({type(exc).__name__}: {exc}); the build is "
                "unaffected")


def shows_trend(environ: Mapping[str, str]) -> bool:
    """Whether a build shows its branch's trend after it: in GitHub's job summary, or GitLab's log."""
    return bool(environ.get("GITHUB_STEP_SUMMARY")) or environ.get("GITLAB_CI") == "true"


def recent_records(session: Session, unread: list[str] | None = None) -> Callable[..., list[BuildRecord]]:
    """What reads the branch's last build records for ``exports = "auto"`` (:mod:`cacheport.ops.exports`), given
    where its line goes (else stderr): never raises; a store that can't be read is one line and no records (the
    exports go as planned), and that line's reason is added to ``unread`` (for ``explain``)."""

    def read(tell: Callable[[str], None] = say) -> list[BuildRecord]:
        def failed(why: str) -> list[BuildRecord]:
            tell(f"warning: history: {why}; its exports go as planned")
            if unread is not None:
                unread.append(why)
            return []

        from cacheport.errors import CacheportError
        from cacheport.ops.exports import RECENT
        from cacheport.ops.history import open_shelf, read_records, settings_of, shown, signing_of

        plan = session.plan
        if not settings_of(plan).on:
            return []
        try:
            backend = session.plugins.backend(plan.backend)
            store = session.store() if backend.store else None
            # where this job's own records go (writing=True): the records of builds like this one
            with open_shelf(plan, store, backend.cache_type, session.environ, session.cwd, writing=True,
                            signing=signing_of(plan, session.environ)) as shelf:
                # a few more than the rule needs: other keys' builds on the branch share its shelf
                shelved = read_records(shelf, branch=plan.context.branch or "none", last=3 * RECENT, skip_bad=True)
        except CacheportError as exc:
            return failed(f"could not read this branch's build records ({exc})")
        except Exception as exc:  # the history is never worth a failed build, not even its bug
            return failed(f"could not read this branch's build records (a bug: {type(exc).__name__}: {exc})")
        if shelved.bad:  # a corrupt record could be the build that broke a run: no guessing around it
            return failed(f"{len(shelved.bad)} of this branch's build records could not be read (first: "
                          f"{shown(shelf, shelved.bad[0][0])}: {shelved.bad[0][1]}; cacheport history --prune-bad "
                          "deletes such records)")
        return [r for _name, r in shelved.records]

    return read


def show_trend(session: Session, branch: str | None, read: Shelved | CacheportError | None = None) -> None:
    """After a build in CI, the branch's trend where the report went: under it in GitHub's job summary, in a
    collapsed section of GitLab's log. Never fails the build: a problem is one warning. ``read``: the records
    the build's :class:`~cacheport.ops.recorder.Recorder` read while it ran (or why it could not), else they are
    read now."""
    import sys
    import time

    from cacheport.errors import CacheportError
    from cacheport.ops.history import open_shelf, read_records, signing_of
    from cacheport.report import chart, trend

    environ = session.environ
    if not shows_trend(environ):
        return
    summary, gitlab = environ.get("GITHUB_STEP_SUMMARY"), environ.get("GITLAB_CI") == "true"
    plan = session.plan
    try:
        if isinstance(read, CacheportError):
            raise read
        if read is not None:
            shelved = read
        else:
            backend = session.plugins.backend(plan.backend)
            store = session.store() if backend.store else None
            with open_shelf(plan, store, backend.cache_type, environ, session.cwd,
                            signing=signing_of(plan, environ)) as shelf:
                shelved = read_records(shelf, branch=branch, last=TREND_AFTER_BUILD, skip_bad=True)
    except CacheportError as exc:
        say(f"warning: history: could not read the cache's history ({exc}); the build is unaffected")
        return
    if (left_out := shelved.unsigned_line()) is not None:
        say(f"history: {left_out}")
    found = trend.trend([r for _name, r in shelved.records])
    where = f"{shelved.where} ({branch or 'no branch'})"
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write("#### cacheport: cache history\n\n" + chart.as_markdown(found, where, chart="mermaid") + "\n")
        except OSError as exc:
            say(f"warning: could not write the job summary: {exc.strerror}")
    if gitlab:
        stamp = int(time.time())
        text = chart.as_text(found, where).rstrip("\n").replace("\n", "\r\n")
        sys.stderr.write(f"\x1b[0Ksection_start:{stamp}:cacheport_history[collapsed=true]\r\x1b[0Kcacheport: cache "
                         f"history\r\n{text}\r\n\x1b[0Ksection_end:{stamp}:cacheport_history\r\x1b[0K\n")


@click.command("history", epilog="""\b
Examples:
  cacheport history                                  # hit rate per branch, cold vs warm, time saved
  cacheport history --branch main --last 10          # one branch's last 10 builds
  cacheport history --format json > history.json     # for other tools (docs/history.md)
  cacheport history --format html -o history.html    # a page with the chart
  cacheport history --format markdown -o history.md  # the chart as an SVG image
  cacheport history --format github >> "$GITHUB_STEP_SUMMARY"  # the chart in Mermaid
  cacheport history --chart history.svg              # the text, and the chart as an SVG file
  cacheport history --records cacheport-history/     # records a job kept as an artifact
  cacheport history --prune-bad                      # delete the records that can't be read
  cacheport history --prune-bad --branch main        # ... only main's
""")
@click.option("--branch", metavar="NAME", help="Only this branch's builds.")
@click.option("--last", type=click.IntRange(1, 1000), default=30, show_default=True, metavar="N",
              help="The last N builds of each branch.")
@click.option("--records", "records_dir", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="Read the records in this directory (a CI artifact) instead of the backend's store.")
@click.option("--chart", "chart_file", type=click.Path(path_type=Path, dir_okay=False), metavar="PATH",
              help="Also write the chart as SVG to PATH (the output goes where it would).")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), metavar="PATH",
              help="Write the output to a file instead of stdout.")
@click.option("--skip-bad", is_flag=True, help="Leave out records that can't be read (one warning each) instead "
              "of stopping at the first.")
@click.option("--prune-bad", is_flag=True, help="Delete the records that can't be read (corrupt, too large), "
              "naming each, and show nothing else: in --records DIR, else where this job's own records go (the "
              "store only for a job that may write it); with --branch, only that branch's. Records from a newer "
              "cacheport, and ones this job can't read, are kept.")
@format_option(["text", "json", "markdown", "github", "html"], "text")
@plan_options
def command(branch: str | None, last: int, records_dir: Path | None, chart_file: Path | None, output: Path | None,
            skip_bad: bool, prune_bad: bool, fmt: str, session: Session) -> None:
    """Show the cache's value across builds: the share of builds with an import hit and of steps cached per
    branch, build time cold (no hit) against warm, the time the hits saved, what exports cost, and the builds
    where the hit rate fell, with the import that missed and the first step that ran.

    Every cacheport build (and cacheport report) leaves a record beside the cache: in the backend's registry
    repository as a small OCI artifact, or in a directory for backends without one (see history-dir). A
    record that can't be read, or one from a newer cacheport, stops the command with one line (exit 2)
    unless --skip-bad. Under trust = "signed", records in a store count only when signed by an allowed key for
    their current digest; the others are left out and counted in one line.

    --format markdown embeds the SVG chart as a data: image; --format github is the same Markdown with the chart
    as a Mermaid xychart instead, which GitHub draws in a job summary (it drops data: images).
    """
    import json

    from cacheport.cli.output import write_file
    from cacheport.ops.history import DirectoryShelf, open_shelf, read_records, settings_of, shown, signing_of
    from cacheport.report import chart, trend

    if prune_bad:
        refuse_with_prune_bad(chart=chart_file, output=output, skip_bad=skip_bad)
    if records_dir is not None:
        if not records_dir.is_dir():  # a typo, or an artifact not downloaded: never "no records yet"
            from cacheport.errors import ConfigError

            raise ConfigError(f"--records {records_dir}: " + ("not a directory" if records_dir.exists() else
                              "no such directory") + "; name the directory a job kept its records in")
        shelf_seen: Shelf = DirectoryShelf(records_dir, "--records")
        if prune_bad:
            return pruned(shelf_seen, branch)
        shelved = read_records(shelf_seen, branch=branch, last=last, skip_bad=skip_bad)
    else:
        plan = session.plan
        if not settings_of(plan).on:
            warn('history = "off": builds keep no records, and none are shown (--records DIR reads a directory)')
            return
        backend = session.plugins.backend(plan.backend)
        store = session.store() if backend.store else None
        with open_shelf(plan, store, backend.cache_type, session.environ, session.cwd, writing=prune_bad,
                        signing=signing_of(plan, session.environ)) as shelf:
            if prune_bad:
                return pruned(shelf, branch)
            shelved = read_records(shelf, branch=branch, last=last, skip_bad=skip_bad)
            shelf_seen = shelf
    for name, why in shelved.bad:
        warn(f"history record {shown(shelf_seen, name)} left out: {why}")
    if (left_out := shelved.unsigned_line()) is not None:
        warn(left_out)
    found = trend.trend([r for _name, r in shelved.records])
    where = shelved.where if branch is None else f"{shelved.where} for branch {branch}"
    if fmt == "json":
        doc = trend.as_dict(found, shelved.where)
        doc["left_out"] = {"count": len(shelved.unsigned) + len(shelved.bad), "records": [
            *({"name": n, "reason": why, "kind": "unsigned"} for n, why in shelved.unsigned),
            *({"name": n, "reason": why, "kind": "unreadable"} for n, why in shelved.bad)]}
        text = json.dumps(doc, indent=2) + "\n"
    elif fmt in ("markdown", "github"):
        text = chart.as_markdown(found, where, chart="mermaid" if fmt == "github" else "svg")
    elif fmt == "html":
        text = chart.as_html(found, where)
    else:
        text = chart.as_text(found, where)
    if chart_file is not None:
        write_file(chart_file, chart.svg(found), mode=0o644)
    if output is not None:
        write_file(output, text, mode=0o644)
    else:
        click.echo(text, nl=False)


def refuse_with_prune_bad(**given: object) -> None:
    """``--prune-bad`` shows nothing but what it deletes: an option about what is shown is one line, exit 2."""
    ctx = click.get_current_context()
    named = {"fmt": "--format", "last": "--last", "chart": "--chart", "output": "-o/--output",
             "skip_bad": "--skip-bad"}
    for key in ("fmt", "last"):
        if ctx.get_parameter_source(key) not in (None, click.core.ParameterSource.DEFAULT):
            given[key] = True
    wrong = [named[key] for key, value in given.items() if value]
    if wrong:
        raise click.UsageError(f"--prune-bad does not go with {', '.join(wrong)}: it deletes the records that "
                               "can't be read and shows nothing else (--branch NAME prunes one branch's)")


def pruned(shelf: Shelf, branch: str | None = None) -> None:
    """``--prune-bad``: delete ``shelf``'s records (``branch``'s) that can't be read, one line each as it goes,
    then one line in all; a record that could not be deleted is one line too, and the run goes on to fail at its
    end (exit 1)."""
    from cacheport.errors import RegistryError
    from cacheport.ops.history import prune_bad, shown

    gone, failed = 0, 0
    for name, why, error in prune_bad(shelf, branch=branch):
        if error is None:
            gone += 1
            click.echo(f"deleted build record {shown(shelf, name)}: {why}")
        else:
            failed += 1
            warn(f"could not delete build record {shown(shelf, name)} ({why}): {error}")
    of = f" of branch {branch}" if branch is not None else ""
    click.echo(f"{gone} build record{'' if gone == 1 else 's'}{of} that could not be read deleted from "
               f"{shelf.where}" if gone else f"no build records{of} that can't be read in {shelf.where}")
    if failed:
        raise RegistryError(f"{failed} build record{'' if failed == 1 else 's'} that can't be read could not be "
                            "deleted (named above)")

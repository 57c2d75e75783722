"""``cacheport build``: docker buildx build with the plan's cache, run through :mod:`cacheport.ops.build`, and
the build's log as a person sees it.

cacheport asks buildx for ``--progress=rawjson`` because it is the one record that says, per cache entry, what
BuildKit did (:mod:`cacheport.report` reads it, with the same decoder); the reporters here keep the log readable
while it does, in the mode the user's own ``--progress`` asked for.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from cacheport.cli.common import BuildxFlagsCommand, plan_options
from cacheport.cli.output import say
from cacheport.report.rawjson import Decoder
from cacheport.timestamps import go_time

if TYPE_CHECKING:
    from cacheport.cli.session import Session
    from cacheport.ops.mounts import Around

def _seconds(start: Any, end: Any) -> str:
    began, ended = go_time(start), go_time(end)
    if began is None or ended is None:
        return ""
    return f" {(ended - began).total_seconds():.1f}s"


class PlainPrinter:
    """Feed it the stream in pieces (``feed``), then ``close``; it calls ``write`` with whole lines."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.numbers: dict[str, int] = {}
        self.names: dict[str, str] = {}
        self.shown: set[str] = set()
        self.ended: set[str] = set()
        self.statuses: set[tuple[str, str]] = set()
        self.decoder = Decoder()

    def feed(self, text: str) -> None:
        self._show(self.decoder.feed(text))

    def close(self) -> None:
        self._show(self.decoder.close())

    def _show(self, items: list[dict[str, Any] | str]) -> None:
        for item in items:
            if isinstance(item, dict):
                self._status(item)
            else:
                self.write(item + "\n")  # buildx's own lines: warnings, ERROR: ...

    def _number(self, digest: str) -> int:
        """A step's number, given when it starts (as plain progress does); its name is printed then."""
        if digest not in self.shown:
            self.shown.add(digest)
            self.numbers.setdefault(digest, len(self.numbers) + 1)
            self.write(f"#{self.numbers[digest]} {self.names.get(digest, '')}\n")
        return self.numbers[digest]

    def _status(self, doc: dict[str, Any]) -> None:
        for v in doc.get("vertexes") or ():
            if not isinstance(v, dict):
                continue
            digest = str(v.get("digest", ""))
            self.names[digest] = str(v.get("name") or self.names.get(digest, ""))
            if not (v.get("started") or v.get("completed")):
                continue  # known, not begun: plain progress does not show it yet
            n = self._number(digest)
            if v.get("completed") and digest not in self.ended:
                self.ended.add(digest)
                if v.get("error"):
                    self.write(f"#{n} ERROR: {v['error']}\n")
                elif v.get("cached"):
                    self.write(f"#{n} CACHED\n")
                else:
                    self.write(f"#{n} DONE{_seconds(v.get('started'), v.get('completed'))}\n")
        for s in doc.get("statuses") or ():
            if not isinstance(s, dict) or not s.get("completed"):
                continue
            key = (str(s.get("vertex", "")), str(s.get("id", "")))
            if key not in self.statuses:
                self.statuses.add(key)
                self.write(f"#{self._number(key[0])} {key[1]} done\n")
        for log in doc.get("logs") or ():
            if not isinstance(log, dict):
                continue
            try:
                data = base64.b64decode(str(log.get("data", ""))).decode("utf-8", errors="replace")
            except ValueError:
                continue
            n = self._number(str(log.get("vertex", "")))
            for line in data.splitlines():
                if line.strip():
                    self.write(f"#{n} {line.rstrip()}\n")
        for warning in doc.get("warnings") or ():
            if isinstance(warning, dict):
                try:
                    short = base64.b64decode(str(warning.get("short", ""))).decode("utf-8", errors="replace")
                except ValueError:
                    short = ""
                if short:
                    self.write(f"WARNING: {short.strip()}\n")


class Passthrough:
    """``--progress=rawjson``: the stream as buildx writes it."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.feed = write

    def close(self) -> None:
        pass


def _nothing(_text: str) -> None:
    pass


def reporter_for(mode: str | None) -> Callable[[Callable[[str], None]], PlainPrinter | Passthrough]:
    """The display of the build's log for the user's ``--progress``: plain text (``auto``, ``plain``, and
    ``tty``, which a pipe of rawjson can't drive), the stream itself (``rawjson``), or nothing (``quiet``)."""
    if mode == "rawjson":
        return Passthrough
    if mode == "quiet":
        return lambda _write: PlainPrinter(_nothing)
    return PlainPrinter


def take_progress(extra: Sequence[str]) -> tuple[list[str], str | None]:
    """buildx's arguments without ``--progress`` (cacheport needs rawjson to read what happened to the cache),
    and the mode the user asked for there (the last one), or None."""
    rest: list[str] = []
    mode: str | None = None
    words = iter(extra)
    for word in words:
        if word == "--progress":
            mode = next(words, mode)
        elif word.startswith("--progress="):
            mode = word.split("=", 1)[1]
        else:
            rest.append(word)
    return rest, mode


class _BuildCommand(BuildxFlagsCommand):
    """``cacheport build``, whose unknown options are most often buildx's, given before ``--``."""

    def misplaced(self, ctx: click.Context, args: list[str], at: int, flags: list[str],
                  exc: click.NoSuchOption) -> click.UsageError:
        import shlex

        extra = (ctx.obj or {}).get("extra", [])
        fixed = [*ctx.command_path.split(), *args[:at], *args[at + len(flags):], "--", *flags, *extra]
        return click.UsageError(f"no such option {exc.option_name!r}: buildx's own flags go after --: "
                                f"{shlex.join(fixed)}", ctx)


@click.command("build", cls=_BuildCommand, epilog="""\b
Examples:
  cacheport build . -t registry.example.com/app:dev
  cacheport build . -t registry.example.com/app:dev -- --push --platform linux/amd64,linux/arm64
  cacheport build --backend registry --set ref=registry.example.com/app/cache -- --network=host
  cacheport build . --report-file cache-report.json --require-hit
  cacheport build . --mounts off -- --target test     # without restoring or saving cache mounts
""")
@click.argument("context", default=".", required=False)
@click.option("-t", "--tag", "tags", multiple=True, metavar="TAG", help="Image tag (repeatable).")
@click.option("-f", "--file", "dockerfile", metavar="PATH", help="Dockerfile (default: CONTEXT/Dockerfile).")
@click.option("--report-file", metavar="PATH", help="Also write the cache report as JSON (a CI artifact).")
@click.option("--require-hit", is_flag=True, help="Fail (exit 1) when no cache import hit; by default a miss only "
              "warns, because the cache never fails a build.")
@click.option("--mounts", "mounts", type=click.Choice(["on", "off"]), default=None,
              help="Restore the Dockerfile's cache mounts (RUN --mount=type=cache) before the build and save them "
              "after a successful one (default: on; config: mounts = \"off\").")
@plan_options
@click.pass_context
def command(ctx: click.Context, /, context: str, tags: tuple[str, ...], dockerfile: str | None,
            report_file: str | None, require_hit: bool, mounts: str | None, session: Session) -> None:
    """Run docker buildx build with the plan's cache imports and exports.

    Logs in with the backend's credentials (password on stdin, never in arguments or logs), checks what the
    builder the build will use can do (--builder among buildx's arguments, else $BUILDX_BUILDER, else the
    current one) and drops what it can't (never failing the build for the cache's sake), streams the build log,
    swaps a local cache into place after success, and ends with what BuildKit did with the cache: steps cached
    and executed, each import hit, missed or failed, each export written or failed (even when ignore-error hid
    it; under the default exports = "auto" a registry export the build's own import already holds is skipped when
    no step executed and most of the branch's last builds executed none, and a mode=max export the branch's last
    builds never read is narrowed to mode=min; the report says which). In GitHub Actions the report also goes
    to the job summary, in GitLab CI into a log section (once). The cache mounts of the Dockerfile
    (RUN --mount=type=cache, in the stages the build reaches) are
    restored into the builder before the build, from the branch's name or its fallbacks' in the backend's store,
    and saved under the branch's own name after a successful build when the job may write the cache; a backend
    without a store, or any trouble, is one line and the build goes on. Everything after -- goes to buildx as it
    is, except that a tag with no --load/--push/--output on a builder that keeps results to itself
    (docker-container, remote) gets --load for one platform, or a line saying how to get a multi-platform image.
    The exit status is the build's.
    """
    from cacheport.cli.history import BuildHistory, recent_records
    from cacheport.ops.build import run
    from cacheport.ops.buildx_args import builder_in
    from cacheport.ops.docker import docker_for
    from cacheport.ops.logins import build_environment

    if mounts is not None:
        import attrs

        session = attrs.evolve(session, options=attrs.evolve(session.options, mounts=mounts))
    plan = session.plan
    extra, mode = take_progress((ctx.obj or {}).get("extra", []))
    if mode not in (None, "auto", "plain", "quiet", "rawjson"):
        say(f"note: --progress={mode} is not passed to buildx: cacheport reads its rawjson progress to report "
            "what happened to the cache, and shows the log as plain text")
    around = mounts_around(session, context, dockerfile, extra)
    record = BuildHistory(session)  # the build's record, written while the build ends (never a failed build)
    with build_environment(plan.logins, session.environ) as environ:  # its logins go to a private docker config
        try:
            code = run(plan, context, tags, dockerfile, extra, docker_for(environ, builder_in(extra)), say,
                       progress=reporter_for(mode), report_file=report_file, require_hit=require_hit,
                       mounts=around, keep=record, history=recent_records(session))
        finally:
            record.finish()
    sys.exit(code)


def mounts_around(session: Session, context: str, dockerfile: str | None, extra: list[str]) -> Around | None:
    """The cache mounts to restore and save around a build of ``context`` (None when its Dockerfile is not a local
    file, or mounts are off); a bad ``[mounts]`` setting is a ``ConfigError``."""
    from pathlib import Path

    from cacheport.ops.buildx_args import build_options
    from cacheport.ops.mounts import around, settings_of

    settings = settings_of(session.config)
    if not settings.enabled or context == "-" or "://" in context or dockerfile == "-":
        return None
    target, build_args = build_options(extra, session.environ)
    path = Path(dockerfile) if dockerfile else Path(context) / "Dockerfile"
    return around(session.plan, session.store, path, settings, target=target, build_args=build_args)

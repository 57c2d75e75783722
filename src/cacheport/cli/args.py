"""``cacheport args``: the plan rendered for whatever runs the build, in any installed output format."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cacheport.cli.common import BuildxFlagsCommand, FilePath, plan_options
from cacheport.cli.output import is_terminal, say, warn, write_file
from cacheport.cli.session import load_plugins

if TYPE_CHECKING:
    from cacheport.cli.session import Session
    from cacheport.plan import Plan
    from cacheport.records import Swap


class RendererChoice(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """``--format``: the names of the installed renderers, looked up only when needed (help, a value)."""

    name = "format"

    def _names(self) -> list[str]:
        try:
            return list(load_plugins().renderers())
        except Exception:  # a broken plugin must not break --help; using it reports the error
            return []

    def get_metavar(self, *args: Any, **kwargs: Any) -> str:
        return "[" + "|".join(self._names()) + "]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        return str(value).strip().lower()

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(n) for n in self._names() if n.startswith(incomplete)]


class _ArgsCommand(BuildxFlagsCommand):
    """``cacheport args``, to which a newcomer sometimes gives buildx's flags: they belong on buildx's line."""

    def misplaced(self, ctx: click.Context, args: list[str], at: int, flags: list[str],
                  exc: click.NoSuchOption) -> click.UsageError:
        return self._misplaced(ctx, flags, f"no such option {exc.option_name!r}")

    def usage_error(self, ctx: click.Context, args: list[str]) -> click.UsageError | None:
        if "--" not in args:
            return None
        return self._misplaced(ctx, args[args.index("--") + 1:], "nothing goes after --")

    @staticmethod
    def _misplaced(ctx: click.Context, flags: list[str], what: str) -> click.UsageError:
        import shlex

        return click.UsageError(f"{what}: `cacheport args` only prints the cache flags, so buildx's own go on "
                                f"buildx's command line: docker buildx build $(cacheport args) {shlex.join(flags)} .",
                                ctx)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        try:
            renderers = load_plugins().renderers()
        except Exception:
            return
        with formatter.section("Formats"):
            formatter.write_dl([(r.name, r.description) for r in renderers.values()])


@click.command("args", cls=_ArgsCommand, epilog="""\b
Examples:
  docker buildx build $(cacheport args) -t app .
  mapfile -t flags < <(cacheport args --lines); docker buildx build "${flags[@]}" .
  cacheport args --format bake --target app -o cache.json &&
    docker buildx bake --allow=fs="${XDG_CACHE_HOME:-$HOME/.cache}/cacheport" -f docker-bake.hcl -f cache.json
  cacheport args --format buildctl          # --import-cache/--export-cache, one per line
  cacheport args --backend registry --set ref=registry.example.com/app/cache
""")
@click.option("--format", "fmt", type=RendererChoice(), default="args", show_default=True,
              help="Output format (listed below; plugins can add more).")
@click.option("--lines", "as_lines", is_flag=True, help="Same as --format lines: one flag per line.")
@click.option("--target", "targets", multiple=True, metavar="NAME",
              help="Bake targets to configure (default: default).")
@click.option("-o", "--output", type=FilePath(),
              help="Write to this file (atomically, mode 0600) instead of stdout; github appends.")
@plan_options
def command(fmt: str, as_lines: bool, targets: tuple[str, ...], output: Path | None, session: Session) -> None:
    """Print cache flags for the build that runs next.

    Before printing, a local cache exported by the previous build is swapped into place, and a local cache
    import BuildKit could not use is left out: one there is no cache in yet, silently; a directory BuildKit
    would fail the build on (an empty or unreadable index.json), with a warning.
    """
    from cacheport.records import RenderOptions
    from cacheport.render import redacted, secret_values

    renderer = session.plugins.renderer("lines" if as_lines else fmt)
    plan = session.plan
    promote_all(plan.swaps)
    plan = usable_imports(plan)
    if plan.context.trust is not None and plan.context.trust.signed:
        plan = verified_imports(plan, session.environ)
    if plan.logins:  # what runs these flags logs in with docker's own login only
        from cacheport.ops.logins import args_warnings, registry_logins

        # Rendering asks no credential helper: one may take a minute, and the build asks it anyway.
        for warning in args_warnings(registry_logins(plan.logins, session.environ, ask_helpers=False)):
            say(f"warning: {warning}")
    target = output
    if target is None and renderer.append_to and session.environ.get(renderer.append_to):
        target = Path(session.environ[renderer.append_to])
    shown = plan
    if renderer.secrets and plan.secret_attrs and (sys.stdout.isatty() if target is None else is_terminal(target)):
        # A terminal is read by a person (and may be recorded); $(cacheport args) and -o get the real values.
        say("secret values shown as *** on a terminal; use -o FILE or $(cacheport args)")
        shown = redacted(plan)
    text = session.plugins.guarded(renderer, "render",
                                  lambda: renderer.render(shown, RenderOptions(targets or ("default",))))
    if renderer.append_to and target is not None and session.environ.get("GITHUB_ACTIONS") == "true":
        # Only the runner reads these, and it then hides the value wherever it is echoed; elsewhere they would
        # print the secret into a plain log.
        for value in secret_values(plan):
            click.echo(f"::add-mask::{value}")
    if target is not None:
        write_file(target, text, append=bool(renderer.append_to), secret=renderer.secrets and bool(plan.secret_attrs),
                   source="-o" if output is not None else f"${renderer.append_to}")
    else:
        click.echo(text, nl=False)
    if renderer.name == "bake":  # once the output is out: a failure to write it leaves nothing behind
        _bake_may_use_local_caches(plan)


def promote_all(swaps: Iterable[Swap]) -> None:
    """Swap finished local exports into place; a cache problem never stops anything."""
    from cacheport.ops.rotate import moved, promote

    for swap in swaps:
        try:
            if promote(swap):
                say(moved(swap))
        except OSError as exc:
            warn(f"could not move {swap.new} into place: {exc}")


def usable_imports(plan: Plan) -> Plan:
    """The plan without the local imports BuildKit can't use, with a warning for each where something broken is
    there (no cache yet is no news): a cache problem never fails a build."""
    from cacheport.ops.preflight import usable

    plan, held = usable(plan)
    for _entry, problem in held:
        if problem.broken:
            warn(problem.message)
    return plan


def verified_imports(plan: Plan, environ: Mapping[str, str]) -> Plan:
    """Under ``trust = "signed"``, a protected pipeline's imports verified and pinned by digest, one line each."""
    from cacheport.ops.signatures import line, pin

    plan, verdicts = pin(plan, environ)
    for verdict in verdicts:
        say(f"signature: {line(verdict)}")
    if verdicts and any(e.type == "registry" for e in plan.exports):
        say("note: trust = \"signed\": `cacheport args` can't sign what the build exports; after the build, "
            "`cacheport verify --sign METADATA_FILE` signs it from buildx's --metadata-file (or build with "
            "`cacheport build`, which signs)")
    return plan


def _bake_may_use_local_caches(plan: Any) -> None:
    """buildx 0.20 and newer refuse a bake that reads or writes a directory outside the project unless the
    command grants it (``--allow=fs=DIR``), and they check the nearest directory that exists: make each local
    cache's own directory, so granting the cache root is enough, and say which flag to add."""
    paths = [Path(p) for e in (*plan.imports, *plan.exports) if e.type == "local"
             for p in (e.get("src"), e.get("dest")) if p]
    outside = [p for p in paths if not p.resolve().is_relative_to(Path.cwd().resolve())]
    if not outside:
        return
    for path in outside:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return  # the build itself will say what is wrong with the directory
    root = os.path.commonpath([str(p.parent) for p in outside])
    say(f"note: buildx 0.20 and newer ask bake for access to the local cache: add --allow=fs={root} to "
        "docker buildx bake (older buildx has no --allow and needs none)")

"""``cacheport build``: docker buildx build with the plan's cache, run through :mod:`cacheport.ops.build`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from cacheport.cli.common import plan_options
from cacheport.cli.output import say

if TYPE_CHECKING:
    from cacheport.cli.session import Session

#: buildx build flags that take no value, so the word after one is not its value.
_SWITCHES = {"--no-cache", "--pull", "--push", "--load", "-q", "--quiet", "--check", "--debug"}


def buildx_flag(args: list[str], exc: click.NoSuchOption) -> tuple[int, list[str]] | None:
    """Where the option click refused is in ``args``, and it as buildx's flag with its value when that is the
    next word (``--network host``); None for a typo of one of ours, which click's did-you-mean says."""
    flag = next((a for a in args if a == exc.option_name or a.startswith(f"{exc.option_name}=")), None)
    if flag is None or exc.possibilities:
        return None
    at = args.index(flag)
    if "=" not in flag and at + 1 < len(args) and not args[at + 1].startswith("-") and flag not in _SWITCHES:
        return at, args[at:at + 2]
    return at, args[at:at + 1]


class _BuildCommand(click.Command):
    """``cacheport build``, whose unknown options are most often buildx's, given before ``--``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, list(args))
        except click.NoSuchOption as exc:
            import shlex

            found = buildx_flag(args, exc)
            if found is None:
                raise
            at, moved = found
            extra = (ctx.obj or {}).get("extra", [])
            fixed = [*ctx.command_path.split(), *args[:at], *args[at + len(moved):], "--", *moved, *extra]
            raise click.UsageError(f"no such option {exc.option_name!r}: buildx's own flags go after --: "
                                   f"{shlex.join(fixed)}", ctx) from None


@click.command("build", cls=_BuildCommand, epilog="""\b
Examples:
  cacheport build . -t registry.example.com/app:dev
  cacheport build . -t registry.example.com/app:dev -- --push --platform linux/amd64,linux/arm64
  cacheport build --backend registry --set ref=registry.example.com/app/cache -- --network=host
  cacheport build . --report-file cache-report.json --require-hit
""")
@click.argument("context", default=".", required=False)
@click.option("-t", "--tag", "tags", multiple=True, metavar="TAG", help="Image tag (repeatable).")
@click.option("-f", "--file", "dockerfile", metavar="PATH", help="Dockerfile (default: CONTEXT/Dockerfile).")
@click.option("--report-file", metavar="PATH", help="Also write the cache report as JSON (a CI artifact).")
@click.option("--require-hit", is_flag=True, help="Fail (exit 1) when no cache import hit; by default a miss only "
              "warns, because the cache never fails a build.")
@plan_options
@click.pass_context
def command(ctx: click.Context, /, context: str, tags: tuple[str, ...], dockerfile: str | None,
            report_file: str | None, require_hit: bool, session: Session) -> None:
    """Run docker buildx build with the plan's cache imports and exports.

    Logs in with the backend's credentials (password on stdin, never in arguments or logs), checks what
    the builder the build will use can do (--builder among buildx's arguments, else $BUILDX_BUILDER, else
    the current one) and drops what it can't (never failing the build for the cache's sake), streams the
    build log, swaps a local cache into place after success, and ends with what BuildKit did with the
    cache: steps cached and executed, each import hit, missed or failed, each export written or failed
    (even when ignore-error hid it). In GitHub Actions the report also goes to the job summary, in GitLab
    CI into a collapsed log section. Everything after -- goes to buildx as it is, except that a tag with no
    --load/--push/--output on a builder that keeps results to itself (docker-container, remote) gets --load
    for one platform, or a line saying how to get a multi-platform image. The exit status is the build's.
    """
    from cacheport.cli.history import keep_record
    from cacheport.ops.build import run
    from cacheport.ops.docker import builder_in, docker_for
    from cacheport.ops.logins import build_environment

    plan = session.plan
    extra = (ctx.obj or {}).get("extra", [])
    with build_environment(plan.logins, session.environ) as environ:  # its logins go to a private docker config
        code = run(plan, context, tags, dockerfile, extra, docker_for(environ, builder_in(extra)), say,
                   report_file=report_file, require_hit=require_hit, keep=keep_record(session, "build"))
    sys.exit(code)

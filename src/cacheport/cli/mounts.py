"""``cacheport mounts restore`` and ``cacheport mounts save``: a Dockerfile's cache mounts around a build that
cacheport does not run (docker/build-push-action, bake, a CI template's own buildx line), through
:mod:`cacheport.ops.mounts`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import click

from cacheport.cli.common import format_option, plan_options
from cacheport.cli.output import say, warn

if TYPE_CHECKING:
    from cacheport.cli.session import Session
    from cacheport.mounts import MountOutcome
    from cacheport.ops.docker import Docker
    from cacheport.ops.mounts import Around

F = Callable[..., Any]


@click.group("mounts", epilog="""\b
Examples:
  cacheport mounts restore . && docker buildx build . && cacheport mounts save .
  cacheport mounts restore -f docker/Dockerfile --target test --build-arg PY=3.12 .
  cacheport mounts save --builder ci --format json .
""")
def command() -> None:
    """Restore or save a Dockerfile's cache mounts (RUN --mount=type=cache) for a build cacheport does not run.

    `cacheport build` does both by itself. Around any other build on the same builder: `restore` before it
    puts each mount's saved contents into the builder (from the branch's name in the backend's store, else
    its fallbacks'), `save` after it stores them under the branch's own name, when this job may write the
    cache. Cache trouble (a miss, the store, the helper image, the builder) is reported and exits 0: the
    build goes on as it would have. Bad input exits 2.
    """


def _dockerfile_options(func: F) -> F:
    for decorator in reversed([
        click.argument("context", default=".", required=False),
        click.option("-f", "--file", "dockerfile", metavar="PATH", help="Dockerfile (default: CONTEXT/Dockerfile)."),
        click.option("--target", metavar="STAGE", help="The stage the build targets (default: the last)."),
        click.option("--build-arg", "build_args", multiple=True, metavar="NAME[=VALUE]",
                     help="A build argument, as the build gets it (NAME alone: from the environment)."),
        click.option("--builder", metavar="NAME", help="The buildx builder (default: $BUILDX_BUILDER, else the "
                     "current one): the one the build runs on."),
        format_option(["text", "json"], "text"),
        plan_options,
    ]):
        func = decorator(func)
    return func


@command.command("restore", epilog="""\b
Examples:
  cacheport mounts restore .
  cacheport mounts restore -f Dockerfile.ci --target build --builder ci .
""")
@_dockerfile_options
def restore(context: str, dockerfile: str | None, target: str | None, build_args: tuple[str, ...],
            builder: str | None, fmt: str, session: Session) -> None:
    """Put the Dockerfile's cache mounts into the builder, from the store, before a build.

    Tries the branch's name, then the merge/pull request target's and the default branch's. Exits 0
    whatever the cache did; each mount's line says restored, missed or failed.
    """
    _run("restore", session, context, dockerfile, target, build_args, builder, fmt,
         lambda chosen, docker: chosen.restore(docker))


@command.command("save", epilog="""\b
Examples:
  cacheport mounts save .
  cacheport mounts save -f Dockerfile.ci --target build --builder ci --format json .
""")
@_dockerfile_options
def save(context: str, dockerfile: str | None, target: str | None, build_args: tuple[str, ...],
         builder: str | None, fmt: str, session: Session) -> None:
    """Store the builder's cache mounts of the Dockerfile after a successful build.

    Saves under the branch's own name, and only when this job may write the layer cache (a fork's or a
    read-only job's mounts are refused); an archive equal to the stored one is not uploaded. Exits 0
    whatever the cache did.
    """
    _run("save", session, context, dockerfile, target, build_args, builder, fmt,
         lambda chosen, docker: chosen.save(docker))


def _run(action: str, session: Session, context: str, dockerfile: str | None, target: str | None,
         build_args: tuple[str, ...], builder: str | None, fmt: str,
         act: Callable[[Around, Docker], list[MountOutcome]]) -> None:
    from pathlib import Path

    from cacheport.errors import ConfigError
    from cacheport.ops import signatures
    from cacheport.ops.buildx_args import build_options
    from cacheport.ops.docker import docker_for
    from cacheport.ops.mounts import around, settings_of

    path = Path(dockerfile) if dockerfile else Path(context) / "Dockerfile"
    if not path.is_file():
        raise ConfigError(f"{path}: no such Dockerfile (give it with -f/--file, or CONTEXT holding a Dockerfile)")
    _, args = build_options([w for a in build_args for w in ("--build-arg", a)], session.environ)
    plan = session.plan
    settings = settings_of(session.config)
    outcomes: list[MountOutcome] = []
    chosen = around(plan, session.store, path, settings, target=target, build_args=args)
    for warning in chosen.warnings:
        warn(warning)
    if settings.enabled:
        if chosen.mounts:  # under trust = "signed" a protected job verifies what it restores and signs what it saves
            key = signatures.signing_key(plan, session.environ) if action == "save" else None
            chosen = attrs.evolve(chosen, signing=signatures.store_signing(plan, key))
        # the helper builds get no signing key, as a build's docker and buildx don't
        outcomes = act(chosen, docker_for(signatures.without_key(plan, session.environ), builder))
    from cacheport.report import BuildReport, as_dict, as_text

    # The same lines and fields as the mounts section of a build's report.
    shown = BuildReport("unknown", mounts=outcomes)
    if fmt == "json":
        click.echo(json.dumps({"action": action, "enabled": settings.enabled, "warnings": list(chosen.warnings),
                               "mounts": as_dict(shown).get("mounts", [])}, indent=2))
        return
    if not settings.enabled:
        say(f"cache mounts are off ({settings.off_by}): nothing to {action}")
    elif not chosen.mounts and not outcomes:
        say(f"{path} has no cache mounts (RUN --mount=type=cache) in the stages the build reaches: nothing to "
            f"{action}")
    for line in as_text(shown).splitlines():
        if line.startswith("  mount "):
            say(line.strip())

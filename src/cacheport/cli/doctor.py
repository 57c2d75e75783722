"""``cacheport doctor``: check the configured cache end to end, one line per check, with the fix."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from cacheport.cli.common import format_option, plan_options

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from cacheport.cli.session import Session
    from cacheport.plan import Plan
    from cacheport.records import Backend, Check, EntryRequest


@click.command("doctor", epilog="""\b
Examples:
  cacheport doctor
  cacheport doctor --backend pulp --format json
  cacheport doctor --builder default             # the builder `cacheport build -- --builder default` uses
""")
@format_option(["text", "json"], "text")
@click.option("--builder", metavar="NAME", help="The buildx builder to check (default: $BUILDX_BUILDER, else the "
              "current one), as `docker buildx build --builder NAME` would use.")
@plan_options
def command(fmt: str, builder: str | None, session: Session) -> None:
    """Check that the configured cache works before a build finds out: one line per check, with the fix.

    Checks Docker, buildx and what the builder can do with this plan (on a docker-container or remote builder
    also its BuildKit version, and whether it reaches and trusts the cache's registries: a probe build that
    asks for a digest no registry holds, and pulls nothing); the backend's own checks; and, for a
    backend with a store, that the store answers, accepts the credentials, and keeps a tiny cache in the
    format the backend exports (written under the name cacheport-doctor, then deleted).
    Exit status 0 when every check passes, 1 when one fails.
    """
    import json

    from cacheport.errors import CacheportError
    from cacheport.ops.checks import machine_checks, store_checks
    from cacheport.ops.docker import docker_for
    from cacheport.ops.logins import docker_checks, registry_logins, store_login
    from cacheport.ops.preflight import import_checks
    from cacheport.records import Check

    plan = session.plan
    plugins = session.plugins
    backend = plugins.backend(plan.backend)
    checks: list[Check] = [Check("plan", True, f"backend {plan.backend}: {len(plan.imports)} import(s), "
                                 f"{len(plan.exports)} export(s)")]
    checks += machine_checks(plan, docker_for(session.environ, builder))
    checks += import_checks(plan)
    request = plan.request
    if backend.doctor is not None and request is not None:
        doctor = backend.doctor
        try:
            checks += plugins.guarded(backend, "doctor", lambda: list(doctor(request, session.environ)))
        except CacheportError as exc:  # a plugin's bug is a failed check, not a crash
            checks.append(Check(f"{backend.name} checks", False, str(exc), "report this to the plugin's authors"))
    if backend.store is not None and request is not None:
        # Last: the format round trip writes a scratch name, which may create the repository.
        try:
            store = session.store()
            logins = registry_logins(plan.logins, session.environ)
            who = store_login(logins, store.location, session.environ, backend.cache_type == "registry")
            checks += store_checks(store, backend.cache_type, who)
            checks += docker_checks(logins, session.environ, store.location, _docker_probe(session, backend, request),
                                    ci=plan.context.provider != "local")
        except CacheportError as exc:
            checks.append(Check(backend.cache_type, False, str(exc), "check the backend's settings"))
    checks = _for_people(checks, plan)
    if fmt == "json":
        click.echo(json.dumps([{"name": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix} for c in checks],
                              indent=2))
    else:
        for c in checks:
            fix = "" if c.ok or not c.fix else f"\n    fix: {c.fix}"
            click.echo(f"{'✓' if c.ok else '✗'} {c.name}: {c.detail}{fix}")
    sys.exit(0 if all(c.ok for c in checks) else 1)


def _for_people(checks: list[Check], plan: Plan) -> list[Check]:
    """Checks as a person may read them: one line each, with no secret value of the plan's in them (a server or
    a docker client may have echoed one)."""
    import attrs

    from cacheport.masking import mask, printable, secret_forms
    from cacheport.render import plan_secrets

    forms = secret_forms(plan_secrets(plan, os.environ))
    return [attrs.evolve(c, detail=printable(mask(c.detail, forms), 1000), fix=printable(mask(c.fix, forms), 1000))
            for c in checks]


def _docker_probe(session: Session, backend: Backend, request: EntryRequest) -> Callable[[Mapping[str, str]], None]:
    """Reads the backend's store with another environment (the backend's own password variables emptied)."""
    import attrs

    def probe(environ: Mapping[str, str]) -> None:
        with session.store(backend, attrs.evolve(request, environ=environ)).open() as opened:
            opened.check()
            opened.names()

    return probe

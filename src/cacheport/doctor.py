"""``cacheport doctor``'s checks of the build machine: Docker, buildx, and what the builder can do.

Backend-specific checks (a registry's credentials, Pulp's API) come from the backends' own ``doctor``.
"""

from __future__ import annotations

from collections.abc import Mapping

from cacheport.backend import Check
from cacheport.build import Builder, fit_to_builder, inspect_builder, last_line
from cacheport.plan import Plan


def machine_checks(plan: Plan, environ: Mapping[str, str]) -> list[Check]:
    """What the build machine can do with this plan. Never raises: a failure is a failed check."""
    from python_on_whales import DockerClient
    from python_on_whales.client_config import ClientNotFoundError
    from python_on_whales.exceptions import DockerException

    checks: list[Check] = []
    docker = DockerClient(client_call=[environ.get("CACHEPORT_DOCKER", "docker")])
    try:
        server = docker.version().server
        checks.append(Check("docker", True, f"Docker Engine {getattr(server, 'version', '?')} answers"))
    except (DockerException, ClientNotFoundError, OSError) as exc:
        checks.append(Check("docker", False, f"Docker does not answer: {last_line(exc)}",
                            "start Docker, or point DOCKER_HOST (or CACHEPORT_DOCKER) at it"))
        return checks
    try:
        checks.append(Check("buildx", True, docker.buildx.version().strip()))
        builder: Builder | None = inspect_builder(docker)
    except DockerException as exc:
        checks.append(Check("buildx", False, f"buildx is not usable: {last_line(exc)}",
                            "install the docker-buildx plugin (docker buildx version must work)"))
        builder = None
    if builder is not None:
        checks += builder_checks(plan, builder)
    return checks


def builder_checks(plan: Plan, builder: Builder) -> list[Check]:
    """Whether the builder can import and export each configured cache type."""
    store = " with the containerd image store" if builder.driver == "docker" and builder.containerd_store else ""
    found = [Check("builder", True, f"{builder.name!r} uses the {builder.driver} driver{store}")]
    _, _, notes = fit_to_builder(plan.imports, plan.exports, builder)
    kinds = sorted({e.type for e in (*plan.imports, *plan.exports)})
    if notes:
        found += [Check("cache types", False, note.split("; fix: ")[0].split(". Fix: ")[0], _fix(note))
                  for note in notes]
    else:
        found.append(Check("cache types", True, f"the builder can import and export {', '.join(kinds) or 'nothing'}"))
    return found


def _fix(note: str) -> str:
    for marker in ("; fix: ", ". Fix: "):
        if marker in note:
            return note.split(marker, 1)[1]
    return ""

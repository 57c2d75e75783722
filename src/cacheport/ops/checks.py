"""``cacheport doctor``'s checks: the build machine (Docker, buildx, what the builder can do) and the cache's
store (reachable, credentials, and whether it keeps a cache in the format the backend exports).

Backend-specific checks (Pulp's API, the gha environment) come from the backends' own ``doctor``.
"""

from __future__ import annotations

import attrs

from cacheport.errors import RegistryError
from cacheport.ops.docker import (
    Builder,
    BuildError,
    Docker,
    debug_refusal,
    fit_to_builder,
    inspect_builder,
    last_line,
    unexpected,
    which_builder,
)
from cacheport.plan import Plan
from cacheport.records import CacheStore, Check, StoreSession

#: One fixed scratch name: a store that can't delete keeps one, not one per run.
PROBE_NAME = "cacheport-doctor"


def machine_checks(plan: Plan, docker: Docker) -> list[Check]:
    """What the build machine can do with this plan, on ``docker``'s builder. Never raises: a failure is a failed
    check."""
    from python_on_whales import DockerClient
    from python_on_whales.client_config import ClientNotFoundError
    from python_on_whales.exceptions import DockerException

    checks: list[Check] = []
    if refusal := debug_refusal(docker.environ):
        return [Check("docker", False, refusal.split(";")[0], "unset PYTHON_ON_WHALES_DEBUG")]
    client = DockerClient(client_call=list(docker.command))
    try:
        server = client.version().server
        checks.append(Check("docker", True, f"Docker Engine {getattr(server, 'version', '?')} answers"))
        docker = attrs.evolve(docker, command=tuple(client.client_config.docker_cmd))
    except (DockerException, ClientNotFoundError, OSError) as exc:
        checks.append(Check("docker", False, f"Docker does not answer: {last_line(exc)}",
                            "start Docker, or point DOCKER_HOST (or CACHEPORT_DOCKER) at it"))
        return checks
    except Exception as exc:  # a client whose output python-on-whales cannot read
        checks.append(Check("docker", False, f"the docker client answered `docker version`, but {unexpected(exc)}",
                            "check that CACHEPORT_DOCKER (or docker on PATH) is the Docker CLI"))
        return checks
    try:
        checks.append(Check("buildx", True, client.buildx.version().strip()))
    except DockerException as exc:
        checks.append(Check("buildx", False, f"buildx is not usable: {last_line(exc)}",
                            "install the docker-buildx plugin (docker buildx version must work)"))
        return checks
    except Exception as exc:  # a client python-on-whales cannot read
        checks.append(Check("buildx", False, f"buildx answered, but {unexpected(exc)}",
                            "check that the docker-buildx plugin is the real one (docker buildx version must work)"))
        return checks
    try:
        found = inspect_builder(docker)
    except BuildError as exc:
        checks.append(Check("builder", False, f"{which_builder(docker, 'the current builder')} can't be inspected: "
                            f"{exc}",
                            "check the name (`docker buildx ls`), or create it (`docker buildx create --name NAME`)"))
        return checks
    from cacheport.ops.buildkit import buildkit_checks

    return checks + builder_checks(plan, found) + buildkit_checks(plan, found.name, found.driver, docker.command,
                                                                  docker.environ)


def builder_checks(plan: Plan, builder: Builder) -> list[Check]:
    """Whether the builder can import and export each configured cache type."""
    store = " with the containerd image store" if builder.driver == "docker" and builder.containerd_store else ""
    found = [Check("builder", True, f"{builder.name!r} uses the {builder.driver} driver{store}")]
    _, _, problems = fit_to_builder(plan.imports, plan.exports, builder)
    kinds = sorted({e.type for e in (*plan.imports, *plan.exports)})
    if problems:
        found += [Check("cache types", False, p.problem, p.fix) for p in problems]
    else:
        found.append(Check("cache types", True, f"the builder can import and export {', '.join(kinds) or 'nothing'}"))
    return found


def store_checks(store: CacheStore, kind: str = "registry", who: str = "") -> list[Check]:
    """Reachable, credentials (``who``: whose, for people), and a round trip of a tiny cache in the format the
    backend exports; for a local directory (``kind`` local), only that it can be written, and nothing is written.

    The round trip writes under :data:`PROBE_NAME` and deletes it again. Never raises.
    """
    try:
        with store.open() as session:
            try:
                session.check()
                session.names()
            except RegistryError as exc:
                if exc.status in (401, 403):
                    return [Check(kind, True, f"{session.host} is reachable"),
                            Check("credentials", False, f"{session.host} refuses {who or 'them'}: {exc}",
                                  "check the variables the backend's username-env/password-env name, or docker "
                                  "login")]
                return [Check(kind, False, f"{session.host} does not answer: {exc}",
                              "check the host and port, the network, and TLS (the backend's insecure option)")]
            if kind == "local":
                # A directory on this machine: no credentials, and it keeps whatever BuildKit writes (a round trip
                # would test only cacheport's own writer, and leave a trace in the user's cache).
                return [Check(kind, True, f"{session.host} can be written")]
            checks = [Check(kind, True, f"{session.host} is reachable"),
                      Check("credentials", True, f"accepted ({who})" if who else "accepted")]
            checks.append(_format_round_trip(session, store))
    except RegistryError as exc:
        return [Check(kind, False, f"{store.location}: {exc}", "check the backend's settings")]
    return checks


def _format_round_trip(session: StoreSession, store: CacheStore) -> Check:
    from cacheport.oci.format import synthetic_cache

    kind = store.format
    blobs, manifest = synthetic_cache(kind == "image-manifest", store.oci_mediatypes)
    try:
        for d, data in blobs:
            if session.blob_size(d.digest) is None:
                session.put_blob(d, [data])
        session.put_manifest(PROBE_NAME, manifest)
        back = session.get_manifest(PROBE_NAME)
    except RegistryError as exc:
        fix = ("use image-manifest=true and oci-mediatypes=true for this registry" if kind == "index"
               else "check that the credentials may push to this repository")
        return Check("format", False, f"{store.location} rejects a cache in the {kind} format: {exc}; a build with "
                     "ignore-error=true would store nothing and still pass", fix)
    cleaned = ""
    try:
        if not session.delete(PROBE_NAME):
            cleaned = f" (the scratch name {PROBE_NAME} was already gone)"
    except RegistryError as exc:
        cleaned = f"; note: the scratch name {PROBE_NAME} stays, the store would not delete it ({exc})"
    if back is None or back.digest != manifest.digest:
        return Check("format", False, f"{store.location} accepted a {kind} cache but did not return it as written",
                     "this registry changes cache manifests; try image-manifest=true")
    return Check("format", True, f"{store.location} accepts a cache in the {kind} format{cleaned}")

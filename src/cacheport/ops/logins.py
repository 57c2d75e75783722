"""The logins a build has for each registry its plan logs in to, and what is said when a build would go without.

Two kinds of build, two sources: ``cacheport build`` logs in with the backend's own login (``password-env`` and
the like), while ``docker buildx build $(cacheport args)`` has only docker's (``config.json``'s ``auths`` and
credential helpers, :mod:`cacheport.oci.credentials`). Also the private docker config that ``cacheport build``
logs in to, so that no password stays in the user's. Variable names and sources are shown; values never.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import attrs

from cacheport.errors import CredentialHelperError, RegistryError
from cacheport.oci.credentials import DockerLogin, config_dir, docker_helper, docker_login, read_config, server_key
from cacheport.records import Check, Login


@attrs.frozen
class RegistryLogin:
    """Which login each kind of build has for one registry.

    Attributes:
        registry: the registry host, as ``docker login`` takes it.
        own: the first of the backend's logins for it whose variables are set (what ``cacheport build`` uses).
        missing: the variables of its other logins that are not set, in order.
        docker: docker's own login there (what ``docker buildx build`` uses), or None.
        problem: why docker's login there can't be read (its credential helper is missing or broken), or "".
        logins: all of the backend's logins for it.
        helper: the credential helper docker would take its login there from, when it was not asked
            (:func:`registry_logins` without ``ask_helpers``); then :attr:`docker` is None.
    """

    registry: str
    own: Login | None
    missing: tuple[str, ...]
    docker: DockerLogin | None
    problem: str = ""
    logins: tuple[Login, ...] = ()
    helper: str = ""

    def own_user(self, environ: Mapping[str, str]) -> str:
        """The user name of :attr:`own` (a name, not a secret)."""
        login = self.own
        if login is None:
            return ""
        return (environ.get(login.username_env, "") if login.username_env else "") or login.username


def _missing(login: Login, environ: Mapping[str, str]) -> str:
    """The variable that keeps ``login`` from being used, or "" when it can be."""
    if not environ.get(login.password_env):
        return login.password_env
    if not login.username and not (login.username_env and environ.get(login.username_env)):
        return login.username_env or login.password_env
    return ""


def registry_logins(logins: Iterable[Login], environ: Mapping[str, str], *,
                    ask_helpers: bool = True) -> list[RegistryLogin]:
    """One :class:`RegistryLogin` per registry the logins name, in order. Asks docker's credential helpers, or
    with ``ask_helpers=False`` only finds them on PATH (:attr:`RegistryLogin.helper`)."""
    groups: dict[str, list[Login]] = {}
    for login in logins:
        groups.setdefault(login.registry, []).append(login)
    found = []
    for registry, group in groups.items():
        missing = [_missing(login, environ) for login in group]
        own = next((login for login, why in zip(group, missing, strict=True) if not why), None)
        docker, problem, helper = None, "", None
        try:
            if not ask_helpers:
                helper = docker_helper(registry, environ)
            if helper is None:
                docker = docker_login(registry, environ)
        except CredentialHelperError as exc:
            problem = str(exc)
        found.append(RegistryLogin(registry, own, tuple(dict.fromkeys(m for m in missing if m)), docker, problem,
                                   tuple(group), helper or ""))
    return found


def _not_set(names: Iterable[str]) -> str:
    shown = [f"${n}" for n in names]
    if not shown:
        return "no login is configured"
    return (" and ".join(shown) if len(shown) < 3 else ", ".join(shown[:-1]) + f" and {shown[-1]}") + (
        " is not set" if len(shown) == 1 else " are not set")


_ANONYMOUS = "reads and writes its cache anonymously, and a refusal there does not fail the build"


def build_warnings(found: Iterable[RegistryLogin]) -> list[str]:
    """For ``cacheport build``: each registry it has no login for at all, naming the unset variables."""
    out = []
    for r in found:
        if r.own is None and r.docker is None:
            docker = r.problem or f"docker has no login for {r.registry}"
            out.append(f"not logging in to {r.registry}: {_not_set(r.missing)}, and {docker}; the build "
                       f"{_ANONYMOUS}")
    return out


def args_warnings(found: Iterable[RegistryLogin]) -> list[str]:
    """For ``docker buildx build $(cacheport args)``: each registry the backend has a login for (its variables
    are set) that docker has none for, or whose credential helper is broken. With no login at all, there is
    nothing the flags' build misses that ``cacheport build`` would have (its own warning names the variables).
    A credential helper docker would ask counts as a login: whether it holds one is the helper's to say."""
    out = []
    for r in found:
        if r.docker is not None or r.helper:
            continue
        if r.problem:
            out.append(f"{r.problem}; docker buildx build will fail to log in to {r.registry}")
        elif r.own is not None:
            out.append(f"docker is not logged in to {r.registry}, so docker buildx build {_ANONYMOUS}; run "
                       f"`docker login {r.registry}`, or build with `cacheport build`, which logs in with "
                       f"${r.own.password_env}")
    return out


def store_login(found: Iterable[RegistryLogin], location: str, environ: Mapping[str, str],
                registry: bool = True) -> str:
    """Whose credentials a store at ``location`` (``host/path``) uses (the backend's, else docker's), for doctor;
    "" when there are none to name (or ``registry`` is False: the store is not on a registry)."""
    for r in found:
        if not _same_host(r.registry, location):
            continue
        if r.own is not None:
            return f"the login as {r.own_user(environ)!r} from ${r.own.password_env}"
        if r.docker is not None:
            return f"docker's login as {r.docker.username!r} ({r.docker.source})"
        return f"anonymous access ({_not_set(r.missing)}, and docker has no login for {r.registry})"
    if registry:
        from cacheport.kit import registry_host

        with suppress(CredentialHelperError):  # the store meets the same helper, and says so
            docker = docker_login(registry_host(location), environ)
            if docker is not None:
                return f"docker's login as {docker.username!r} ({docker.source})"
    return ""


def docker_checks(found: Iterable[RegistryLogin], environ: Mapping[str, str], location: str,
                  probe: Callable[[Mapping[str, str]], None] | None = None, *, ci: bool = False) -> list[Check]:
    """Doctor's checks of what ``docker buildx build $(cacheport args)`` logs in with. ``probe(environ)`` reads
    the store at ``location`` with only docker's login (raising :class:`RegistryError` when refused).

    Docker without a login where the backend has one fails on a laptop, where the README's build is a plain
    ``docker buildx build``; in CI (``ci``), where jobs build with ``cacheport build`` or log docker in as a
    step of their own, it passes and says which step needs it."""
    checks = []
    for r in found:
        name = "docker login"
        if r.own is None:
            continue  # the store's credentials check used what a plain buildx build gets: docker's, or none
        if r.problem:
            checks.append(Check(name, False, r.problem, "install the helper, or remove that setting and "
                                f"`docker login {r.registry}` again"))
        elif r.docker is None and ci:
            checks.append(Check(name, True, f"docker is not logged in to {r.registry} yet: cacheport build logs "
                                f"in with ${r.own.password_env}; a docker buildx build $(cacheport args) step needs "
                                f"`docker login {r.registry}` before it"))
        elif r.docker is None:
            checks.append(Check(name, False, f"docker is not logged in to {r.registry}: docker buildx build "
                                f"$(cacheport args) {_ANONYMOUS} (cacheport build logs in with "
                                f"${r.own.password_env})", f"`docker login {r.registry}`, or build with cacheport "
                                "build"))
        elif probe is not None and _same_host(r.registry, location):
            # The store's check used the backend's login: try docker's own, which a plain buildx build gets.
            try:
                probe({**environ, **{login.password_env: "" for login in r.logins}})
            except RegistryError as exc:
                checks.append(Check(name, False, f"{r.registry} refuses docker's login as {r.docker.username!r} "
                                    f"({r.docker.source}): {exc}", f"`docker login {r.registry}` again"))
            else:
                checks.append(Check(name, True, f"docker's login for {r.registry} as {r.docker.username!r} is "
                                    f"accepted ({r.docker.source})"))
        else:
            checks.append(Check(name, True, f"docker has a login for {r.registry} as {r.docker.username!r} "
                                f"({r.docker.source})"))
    return checks


def _same_host(registry: str, location: str) -> bool:
    from cacheport.kit import registry_host

    return server_key(registry) == server_key(registry_host(location))


# The user's own credHelpers entries each private docker config set aside (None: there was none), by its
# directory, while it exists: what a failed login puts back (restore_helper).
_SET_ASIDE: dict[str, dict[str, str | None]] = {}


@contextmanager
def build_environment(logins: Iterable[Login], environ: Mapping[str, str]) -> Iterator[Mapping[str, str]]:
    """The environment ``cacheport build`` runs in: ``environ`` when it has no login to make, else with a
    :func:`private_docker_config` for the registries it logs in to."""
    registries = list(dict.fromkeys(login.registry for login in logins if not _missing(login, environ)))
    if not registries:
        yield environ
        return
    with private_docker_config(environ, registries) as private:
        yield private


@contextmanager
def private_docker_config(environ: Mapping[str, str], registries: Iterable[str]) -> Iterator[dict[str, str]]:
    """``environ`` with ``DOCKER_CONFIG`` pointing at a private copy of the user's, in a 0700 directory removed
    afterwards, for ``docker login`` to write the build's own logins to.

    Everything else the user's config directory holds (``cli-plugins``, ``buildx`` builders, ``contexts``) is
    linked, and ``BUILDX_CONFIG`` stays the user's, so buildx and its builders work as before; the user's other
    logins and helpers still apply, but ``docker login`` to ``registries`` writes to the private
    ``config.json``, not to a credential helper.
    """
    import tempfile

    user = config_dir(environ)
    config = read_config(environ)
    helpers = config.get("credHelpers")
    helpers = dict(helpers) if isinstance(helpers, dict) else {}
    aside = {server_key(registry): helpers.get(server_key(registry)) for registry in registries}
    for key in aside:
        helpers[key] = ""  # an empty name means config.json's auths, as in docker
    config["credHelpers"] = helpers
    with _terminated_unwinds(), tempfile.TemporaryDirectory(prefix="cacheport-docker-") as tmp:
        private = Path(tmp)
        private.chmod(0o700)
        if user.is_dir():
            for entry in user.iterdir():
                if entry.name not in ("config.json", "config.json.lock"):
                    (private / entry.name).symlink_to(entry)
        fd = os.open(private / "config.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(config, fh)
        # buildx keeps its builders and build records in the user's folder even when it does not exist yet.
        buildx = {} if environ.get("BUILDX_CONFIG") else {"BUILDX_CONFIG": str(user / "buildx")}
        _SET_ASIDE[str(private)] = aside
        try:
            yield {**environ, "DOCKER_CONFIG": str(private), **buildx}
        finally:
            _SET_ASIDE.pop(str(private), None)


def restore_helper(environ: Mapping[str, str], registry: str) -> None:
    """After the build's own ``docker login`` to ``registry`` failed, in ``environ``'s private docker config:
    docker takes its login there from where the user's config says again (the credential helper set aside for
    the login), not from the private ``auths``, which has none; unless that helper is not on PATH. Nothing to do
    outside a private config."""
    from cacheport.files import replacing

    aside = _SET_ASIDE.get(environ.get("DOCKER_CONFIG", ""), {})
    key = server_key(registry)
    if key not in aside:
        return
    config = read_config(environ)
    helpers = config.get("credHelpers")
    helpers = dict(helpers) if isinstance(helpers, dict) else {}
    if aside[key] is None:
        helpers.pop(key, None)
    else:
        helpers[key] = aside[key]
    config["credHelpers"] = helpers
    try:
        docker_helper(registry, environ, config)
    except CredentialHelperError:
        return  # a helper that is not there fails every request docker makes there; without it, anonymous
    with replacing(config_dir(environ) / "config.json", 0o600) as fh:
        fh.write(json.dumps(config).encode())


@contextmanager
def _terminated_unwinds() -> Iterator[None]:
    """SIGTERM (a cancelled CI job) ends the process by unwinding, as Ctrl-C does, so the private config and the
    passwords in it are removed, not left in the temporary directory."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

"""Docker's own credentials for a registry, found the way the docker CLI and buildx find them.

``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``): ``credHelpers[host]``, else ``credsStore``,
names a credential helper, asked with ``docker-credential-<name> get`` (the server on stdin, JSON out, as
docker-py's ``docker/credentials/store.py`` does); without one, the ``auths`` entry holds the login itself.
No HTTP client here, and what only a helper needs is imported when one is asked: ``cacheport args`` asks
this too. A secret read here is never put into a message.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from cacheport.errors import CredentialHelperError
from cacheport.oci.reference import HUB_HOSTS

if TYPE_CHECKING:
    from cacheport.oci.auth import Credentials

#: The name docker keeps Docker Hub's login under.
HUB_KEY = "https://index.docker.io/v1/"
HELPER_PREFIX = "docker-credential-"
HELPER_SECONDS = 60  # a helper may ask the user to unlock a keychain


@attrs.frozen
class DockerLogin:
    """The login docker has for one registry.

    Attributes:
        host: the registry host asked for.
        username: the user name (``<token>`` for an identity token, which a registry swaps for a token).
        password: the password or token; never shown.
        source: where docker keeps it, for people: ``credential helper docker-credential-NAME`` or
            ``auths in PATH``.
    """

    host: str
    username: str
    password: str = attrs.field(repr=False)
    source: str


def config_dir(environ: Mapping[str, str]) -> Path:
    """Where the docker CLI keeps its configuration: ``$DOCKER_CONFIG``, else ``~/.docker``."""
    if environ.get("DOCKER_CONFIG"):
        return Path(environ["DOCKER_CONFIG"])
    return Path(environ.get("HOME") or os.path.expanduser("~")) / ".docker"


def read_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """``config.json`` as a dict; ``{}`` when it is missing or not a JSON object (docker then has no login)."""
    try:
        config = json.loads((config_dir(environ) / "config.json").read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return config if isinstance(config, dict) else {}


def server_key(host: str) -> str:
    """The name docker keeps a registry's login under: the host, or Docker Hub's v1 URL."""
    return HUB_KEY if host.lower() in HUB_HOSTS else host.lower()


def helper_for(host: str, config: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(helper name, the setting that chose it)`` for ``host``, or None when docker reads ``auths``.

    ``credHelpers`` beats ``credsStore``; an empty name there means ``auths``, as in docker.
    """
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key in dict.fromkeys((server_key(host), host.lower())):
            if key in helpers:
                name = helpers[key]
                return (str(name), f"credHelpers[{key!r}]") if isinstance(name, str) and name else None
    store = config.get("credsStore")
    return (store, "credsStore") if isinstance(store, str) and store else None


def docker_login(host: str, environ: Mapping[str, str]) -> DockerLogin | None:
    """What ``docker login HOST`` stored, from the credential helper docker would ask or from ``auths``; None
    when docker has no login there.

    Raises :class:`CredentialHelperError` (one line, no secret) when the helper is missing, fails or answers
    something that is not credentials: docker itself would fail then.
    """
    config = read_config(environ)
    path = config_dir(environ) / "config.json"
    helper = helper_for(host, config)
    if helper is not None:
        return _ask_helper(helper[0], f"{helper[1]} in {path}", host, environ)
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    import base64

    wanted = set(HUB_HOSTS) if host.lower() in HUB_HOSTS else {host.lower()}
    for key, entry in auths.items():
        name = re.sub(r"^[a-z]+://", "", str(key).lower()).split("/", 1)[0]
        if name not in wanted or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, sep, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
            except ValueError:
                continue
            if sep:
                return DockerLogin(host, user, password, f"auths in {path}")
        if entry.get("username") and entry.get("password"):
            return DockerLogin(host, str(entry["username"]), str(entry["password"]), f"auths in {path}")
    return None


def docker_helper(host: str, environ: Mapping[str, str], config: Mapping[str, Any] | None = None) -> str | None:
    """The credential helper docker would ask for ``host``'s login (``docker-credential-NAME``), found on PATH
    but not asked; None when docker reads ``auths`` instead. For what only needs to know that docker has
    somewhere to take a login from (``cacheport args``): asking a helper may take a minute (a keychain to unlock).
    ``config`` is ``config.json`` as it would be, when not as it is.

    Raises :class:`CredentialHelperError` when that helper is not on PATH: docker itself would fail then.
    """
    helper = helper_for(host, read_config(environ) if config is None else config)
    if helper is None:
        return None
    program, _where = _helper_program(helper[0], f"{helper[1]} in {config_dir(environ) / 'config.json'}", environ)
    return program


def docker_credentials(host: str, environ: Mapping[str, str]) -> Credentials | None:
    """:func:`docker_login` as the registry client's credentials; an identity token (which needs an OAuth2
    refresh this client does not do) counts as no login."""
    from cacheport.oci.auth import Credentials

    found = docker_login(host, environ)
    if found is None or found.username == "<token>":
        return None
    return Credentials(found.username, found.password)


def _helper_program(name: str, chosen_by: str, environ: Mapping[str, str]) -> tuple[str, str]:
    """The helper's program name and where it is on PATH; :class:`CredentialHelperError` when it is not."""
    import shutil

    program = HELPER_PREFIX + name
    found = shutil.which(program, path=environ.get("PATH"))
    if found is None:
        raise CredentialHelperError(f"docker's credential helper {program} ({chosen_by}) is not on PATH; install it, "
                                    "or remove that setting")
    return program, found


def _ask_helper(name: str, chosen_by: str, host: str, environ: Mapping[str, str]) -> DockerLogin | None:
    import subprocess

    from cacheport.masking import printable

    program, found = _helper_program(name, chosen_by, environ)
    where = f"docker's credential helper {program} ({chosen_by})"
    try:
        done = subprocess.run([found, "get"], input=server_key(host), capture_output=True, text=True,
                              env=dict(environ), timeout=HELPER_SECONDS)
    except subprocess.TimeoutExpired:
        raise CredentialHelperError(f"{where} did not answer for {host} within {HELPER_SECONDS} s") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise CredentialHelperError(f"{where} could not run: {type(exc).__name__}") from None
    if done.returncode != 0:
        said = (done.stdout.strip() or done.stderr.strip()).splitlines()
        # Helpers say so on stdout (docker-credential-helpers' "credentials not found in native keychain").
        if said and "credentials not found" in said[0].lower():
            return None
        # A failing helper's words help; they are cut short and never a JSON answer, which may hold a secret.
        why = printable(said[0], 200) if said and not said[0].lstrip().startswith("{") else "no message"
        raise CredentialHelperError(f"{where} failed for {host} (exit status {done.returncode}): {why}")
    try:
        answer = json.loads(done.stdout)
    except (ValueError, RecursionError):
        answer = None
    if not (isinstance(answer, dict) and isinstance(answer.get("Username"), str)
            and isinstance(answer.get("Secret"), str)):
        raise CredentialHelperError(f"{where} answered something for {host} that is not credentials (JSON with "
                                    "Username and Secret)")
    if not answer["Username"] and not answer["Secret"]:
        return None  # docker-credential-pass answers so for a server it has nothing for
    return DockerLogin(host, answer["Username"], answer["Secret"], f"credential helper {program}")

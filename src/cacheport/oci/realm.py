"""Where a registry's credentials may go when its 401 names a token service (the ``realm``): the one rule that
cacheport's registry client and plugins (the pulp plugin's doctor) follow.

Docker's client (distribution's token handler) and containerd's (its authorizer) look credentials up by the
registry that sent the challenge and send them, as HTTP Basic, to whatever realm it names, on any host and over
any scheme. GitLab.com relies on the first part: registry.gitlab.com sends its clients to gitlab.com/jwt/auth.
cacheport does the same, except that it never sends them

- from an HTTPS registry to a plain-HTTP realm (a downgrade), nor
- over plain HTTP to a host other than the registry's own, unless the user declared that host insecure in
  ``CACHEPORT_INSECURE_REGISTRIES`` (entries as dockerd's ``--insecure-registry`` takes them: ``host``,
  ``host:port`` or a CIDR such as ``10.0.0.0/8``).

Pure: no I/O, no HTTP client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs

from cacheport.errors import RegistryError
from cacheport.masking import printable
from cacheport.refs import host_problem

INSECURE_VARIABLE = "CACHEPORT_INSECURE_REGISTRIES"
_URL_CHARS = re.compile(r"[\x21-\x7e]{1,2048}\Z")


@attrs.frozen
class Realm:
    """A token service's address, checked.

    Attributes:
        url: the URL as the registry named it.
        scheme: ``http`` or ``https``.
        host: ``host[:port]`` as written (lower-cased).
        hostname: the host without its port.
    """

    url: str
    scheme: str
    host: str
    hostname: str


def parse_realm(text: str, registry: str) -> Realm:
    """The realm a registry's challenge names; anything but an absolute http(s) URL is a one-line error."""
    import urllib.parse

    problem = None
    split = None
    if not _URL_CHARS.match(text):
        problem = "it is empty, too long, or holds spaces or control characters"
    else:
        try:
            split = urllib.parse.urlsplit(text)
            split.port  # noqa: B018  (raises on a port that is not a number)
        except ValueError:
            problem = "it does not parse as a URL"
    if split is not None and problem is None:
        if split.scheme.lower() not in ("http", "https"):
            problem = "it is not an http:// or https:// URL"
        elif not split.hostname:
            problem = "it names no host"
        elif "@" in split.netloc:
            problem = "it carries credentials of its own"
        elif host_problem(split.netloc.lower()):
            problem = f"its host {split.netloc!r} is not a host name"
    if problem or split is None:
        raise RegistryError(f"{registry}: the token service it names ({printable(text, 120)!r}) is not usable: "
                            f"{problem}")
    return Realm(text, split.scheme.lower(), split.netloc.lower(), (split.hostname or "").lower())


def insecure_hosts(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The hosts the user declared insecure (``CACHEPORT_INSECURE_REGISTRIES``, comma or space separated)."""
    return tuple(h.lower() for h in re.split(r"[\s,]+", environ.get(INSECURE_VARIABLE, "")) if h)


def hostname(host: str) -> str:
    """``host[:port]`` without its port (and without an IPv6 address's brackets)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if ":" in host else host


def declared_insecure(host: str, declared: Iterable[str]) -> bool:
    """Whether ``host[:port]`` is one the user declared insecure: as ``host:port``, as ``host`` (any port), or
    inside a CIDR."""
    import ipaddress

    name = hostname(host)
    for entry in declared:
        if entry in (host, name):
            return True
        if "/" in entry:
            try:
                if ipaddress.ip_address(name) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def withheld(registry_scheme: str, registry_host: str, realm: Realm, declared: Iterable[str] = ()) -> str | None:
    """Why credentials for the registry at ``registry_scheme://registry_host`` must not go to ``realm``, or
    None when they may."""
    if realm.scheme == "https":
        return None
    if registry_scheme == "https":
        return ("the registry speaks HTTPS and the token service plain HTTP; sending them would downgrade "
                "to plain text")
    if realm.hostname != hostname(registry_host.lower()) and not declared_insecure(realm.host, declared):
        return (f"it is plain HTTP on another host ({realm.host}); declare that host in {INSECURE_VARIABLE} "
                "if you trust it")
    return None

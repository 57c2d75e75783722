"""Who the registry client is, and how it proves it: credentials (given; docker's own come from :mod:`.credentials`),
and the registry's auth flow as an httpx auth (anonymous, HTTP Basic, and Docker bearer tokens: a 401
``Bearer realm=…,service=…,scope=…`` challenge is exchanged at the realm, with Basic credentials when there are
any, for a token scoped to what was asked). Where credentials may go is :mod:`.realm`'s rule.

No registry API here, and no credential ever in a message.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Generator, Mapping
from typing import Any, Protocol

import attrs
import httpx

from cacheport.errors import RegistryError
from cacheport.masking import printable
from cacheport.oci.http import Counters, read_body
from cacheport.oci.realm import parse_realm, withheld


@attrs.frozen
class Credentials:
    """A user name and password (or token) for one registry.

    Attributes:
        username: the user name.
        password: the password or token; never shown.
    """

    username: str
    password: str = attrs.field(repr=False)

    def basic(self) -> str:
        """The ``Authorization`` header's value for HTTP Basic."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def parse_challenge(header: str) -> tuple[str, dict[str, str]] | None:
    """``WWW-Authenticate: Bearer realm="…",service="…",scope="…"`` → ``("bearer", {realm, service, scope})``.

    Quoted values may hold commas and escaped quotes; an empty or unparsable header gives None.
    """
    match = re.match(r"\s*([A-Za-z][A-Za-z0-9._-]*)\s*", header)
    if not match:
        return None
    scheme, rest = match.group(1).lower(), header[match.end():]
    params: dict[str, str] = {}
    for m in re.finditer(r'([A-Za-z][A-Za-z0-9._-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|\Z)', rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
    return scheme, params


class _Registry(Protocol):
    """What the auth flow reads of the client it logs in for (the scheme may change on the first request)."""

    host: str
    scheme: str
    credentials: Credentials | None
    insecure_hosts: tuple[str, ...]
    timeouts: Mapping[str, Any]
    counters: Counters


_REPO_IN_PATH = re.compile(r"/v2/(.+?)/(?:blobs|manifests|tags|referrers)/")


class RegistryAuth(httpx.Auth):
    """httpx auth for one registry host: Basic or Docker bearer tokens, cached per repository."""

    def __init__(self, registry: _Registry) -> None:
        self.registry = registry
        self.basic = False  # the registry asked for Basic: send it on every request from now on
        self.tokens: dict[str, str] = {}
        self._lock = threading.Lock()  # requests run in several threads at once; each reads and writes here

    def _apply(self, request: httpx.Request, repo: str, token: str | None = None) -> None:
        creds = self.registry.credentials
        with self._lock:
            token = token or self.tokens.get(repo)
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token}"
        elif self.basic and creds is not None:
            request.headers["Authorization"] = creds.basic()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.url.netloc.decode().lower() != self.registry.host:
            yield request  # a redirect target (blob storage) or a token realm elsewhere: never our credentials
            return
        match = _REPO_IN_PATH.match(request.url.path)
        repo = match.group(1) if match else ""
        self._apply(request, repo)
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        creds = self.registry.credentials
        if challenge is None:
            return
        scheme, params = challenge
        if scheme == "basic":
            if creds is None or request.headers.get("Authorization", "").startswith("Basic "):
                return  # nothing (else) to offer: the caller reports the 401
            # (Another thread may have learnt this meanwhile; what counts is what this request carried.)
            self.basic = True
        elif scheme == "bearer" and params.get("realm"):
            token = yield from self._token(params)
            if token is None:
                return
            with self._lock:
                self.tokens[repo] = token
        else:
            return
        # The token just granted, not whatever another thread stored meanwhile (it may lack this request's scope).
        self._apply(request, repo, token if scheme == "bearer" else None)
        yield request

    def _token(self, params: Mapping[str, str]) -> Generator[httpx.Request, httpx.Response, str | None]:
        registry = self.registry
        realm = parse_realm(params["realm"], registry.host)
        query: list[tuple[str, str | int | float | bool | None]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        query += [("scope", s) for s in params.get("scope", "").split() if s]
        headers = {}
        creds = registry.credentials
        if creds is not None:
            why = withheld(registry.scheme, registry.host, realm, registry.insecure_hosts)
            if why:
                raise RegistryError(f"{registry.host}: credentials not sent to its token service "
                                    f"{printable(realm.url, 120)}: {why}")
            headers["Authorization"] = creds.basic()
        # A request made here gets none of the client's defaults: give it the client's timeouts.
        response = yield httpx.Request("GET", realm.url, params=query, headers=headers,
                                       extensions={"timeout": registry.timeouts})
        read_body(response, f"{registry.host}: the token service {printable(realm.url, 120)}")
        registry.counters.add(tokens=1)
        if response.status_code != 200:
            who = f"as {creds.username!r}" if creds else "anonymously"
            raise RegistryError(f"{registry.host}: the token service {printable(realm.url, 120)} refused a token "
                                f"{who} (HTTP {response.status_code})", response.status_code)
        return _token_from(response.content, registry.host)


def _token_from(content: bytes, host: str) -> str | None:
    """The token in a token service's answer: ``{"token": …}`` or ``{"access_token": …}``."""
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        raise RegistryError(f"{host}: the token service sent no JSON") from None
    token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
    if token is None or token == "":
        if isinstance(body, dict):
            return None
        raise RegistryError(f"{host}: the token service sent JSON that is not an object with a token")
    if not isinstance(token, str) or not re.fullmatch(r"[\x21-\x7e]{1,65536}", token):
        raise RegistryError(f"{host}: the token service sent a token that is not printable text")
    return token


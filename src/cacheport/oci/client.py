"""A client for the OCI distribution API (registry v2): tags, manifests and blobs, with real registries' auth.

Used by the registry stores (:func:`cacheport.kit.registry_store`) that seed, status, prune and doctor work
through. It knows no backend. httpx is imported here only, and this module only when a command touches a
registry, so ``cacheport args`` never loads an HTTP client.

Auth: anonymous, HTTP Basic, and the Docker token flow (a 401 ``Bearer realm=…,service=…,scope=…`` challenge is
exchanged at the realm, with Basic credentials when there are any, for a token scoped to what was asked).
Credentials are given, or read from the docker config's ``auths``; credential helpers are not supported.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx

from cacheport.errors import Interrupted, RegistryError
from cacheport.masking import mask, printable, secret_forms, shown_value
from cacheport.oci.format import DIGEST, MANIFEST_TYPES, Descriptor, Manifest
from cacheport.oci.realm import parse_realm, withheld
from cacheport.oci.retry import ONCE, RETRY_STATUSES, TRIES, RetryPolicy, send_with_retries
from cacheport.oci.uploads import OpenUpload, UploadJournal
from cacheport.records import BlobSource
from cacheport.refs import TAG_PATTERN, reference_problem

CHUNK = 1 << 20  # the most of a blob held at once: streams are passed on as they arrive (64 KiB reads)
#: blobs at least this big are uploaded in PATCHes, each remembered, so an interrupted upload resumes mid-blob.
CHUNKED_FROM = 64 << 20
# A PATCH's size adapts so that each takes about this long: long enough that the round trip between two
# PATCHes costs little, short enough that a stop (which finishes the PATCH in flight) is quick.
_PATCH_SECONDS = 3.0
_PATCH_MIN, _PATCH_MAX = 32 << 20, 256 << 20
# A hard kill (SIGKILL, a lost machine) costs the PATCH in flight where the registry keeps only whole ones (Pulp
# behind nginx, which passes a request body on only once it has all of it): no PATCH is more than this share of
# its blob (nor under _PATCH_MIN), so that loss stays within a tenth. The 6 more PATCHes of a 1 GiB blob were
# lost in the noise of its copy, at 0 ms as at 50 ms RTT (docs/seed.md, "How long it takes").
_PATCH_SHARE = 10
# Bounds on what a registry may send: everything but a blob is small. 4 MiB is distribution's own manifest limit.
BODY_LIMIT = 4 << 20
ERROR_TEXT = 64 << 10  # bytes of an error body read for its message
MAX_REDIRECTS = 10
MAX_PAGES = 1000
MAX_TAGS = 100_000
_BLOB = "cacheport.blob"  # request extension: this answer is a blob, streamed by the caller without a bound
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]{0,126}/[\w.+-]{1,127}\Z")
_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")


@attrs.frozen
class Credentials:
    """A user name and password (or token) for one registry.

    Attributes:
        username: the user name.
        password: the password or token; never shown.
    """

    username: str
    password: str = attrs.field(repr=False)


@attrs.frozen
class Reference:
    """An image reference split into its parts.

    Attributes:
        host: the registry host as the API is reached (``host[:port]``; Docker Hub is registry-1.docker.io).
        repository: the repository path.
        tag: the tag, or None.
        digest: the digest, or None.
    """

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What to ask the manifests endpoint for: the digest, else the tag, else ``latest``."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.host}/{self.repository}{tag}{digest}"


def parse_reference(ref: str) -> Reference:
    """``host[:port]/path[:tag][@digest]`` as docker reads it (no host means Docker Hub)."""
    text = ref.strip()
    problem = reference_problem(text)
    if problem:
        raise RegistryError(f"{shown_value(text)} is not an image reference: {problem}")
    name, _, digest = text.partition("@")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, path = first.lower(), rest
    else:
        host, path = "docker.io", name
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
    if not path or path.startswith("/") or path.endswith("/") or (digest and not DIGEST.match(digest)):
        raise RegistryError(f"{ref!r} is not an image reference (host/path[:tag])")
    if host in _HUB_HOSTS:
        host = "registry-1.docker.io"
        if "/" not in path:
            path = f"library/{path}"
    return Reference(host, path, tag, digest or None)


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


def docker_config_credentials(host: str, environ: Mapping[str, str]) -> Credentials | None:
    """The login ``docker login HOST`` stored in ``$DOCKER_CONFIG/config.json`` (or ``~/.docker``), if any.

    Reads ``auths`` entries (base64 ``auth``, or ``username``/``password``). Credential helpers (``credsStore``,
    ``credHelpers``) and identity tokens are not supported.
    """
    folder = environ.get("DOCKER_CONFIG") or str(Path(environ.get("HOME") or os.path.expanduser("~")) / ".docker")
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError, RecursionError):
        return None
    auths = config.get("auths") if isinstance(config, dict) else None
    if not isinstance(auths, dict):
        return None
    wanted = {host.lower()}
    if host in _HUB_HOSTS:
        wanted |= set(_HUB_HOSTS)
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
                return Credentials(user, password)
        if entry.get("username") and entry.get("password"):
            return Credentials(str(entry["username"]), str(entry["password"]))
    return None


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.strip("[]") in ("127.0.0.1", "localhost", "::1") or name.startswith("127.")


@attrs.define
class Counters:
    """What a client did, for summaries and for tests that prove what moved.

    Attributes:
        requests: HTTP requests sent (token requests included).
        bytes_uploaded: blob bytes sent.
        bytes_downloaded: blob bytes received.
        blobs_uploaded: blobs sent.
        blobs_mounted: blobs mounted from another repository (no bytes moved).
        blobs_present: blobs found already there and skipped.
        manifests_put: manifests written.
        tokens: bearer tokens fetched.
    """

    requests: int = 0
    bytes_uploaded: int = 0
    bytes_downloaded: int = 0
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_present: int = 0
    manifests_put: int = 0
    tokens: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False, eq=False)

    def add(self, **amounts: int) -> None:
        """Add to some counters; safe from several threads (``x += n`` is not)."""
        with self._lock:
            for name, n in amounts.items():
                setattr(self, name, getattr(self, name) + n)


_REPO_IN_PATH = re.compile(r"/v2/(.+?)/(?:blobs|manifests|tags|referrers)/")


class _RegistryAuth(httpx.Auth):
    """httpx auth for one registry host: Basic or Docker bearer tokens, cached per repository."""

    def __init__(self, registry: Registry) -> None:
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
            token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            request.headers["Authorization"] = f"Basic {token}"

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
            basic = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        # A request made here gets none of the client's defaults: give it the client's timeouts.
        response = yield httpx.Request("GET", realm.url, params=query, headers=headers,
                                       extensions={"timeout": registry.timeouts})
        _read_body(response, f"{registry.host}: the token service {printable(realm.url, 120)}")
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


class Registry:
    """One registry host, with its credentials; use it as a context manager (it holds a connection pool).

    A loopback host is spoken to over plain HTTP. Others over HTTPS with verified certificates, unless
    ``insecure``: then HTTPS without verification, or plain HTTP when the host does not speak TLS.
    ``transport`` is for tests (an ``httpx`` transport). Every error is a one-line :class:`RegistryError`.

    Safe to use from several threads at once. Requests that can be sent again unchanged are retried on 429,
    5xx and dropped connections (``retry``); ``uploads`` remembers open blob uploads so they resume.
    """

    def __init__(self, host: str, credentials: Credentials | None = None, *, insecure: bool = False,
                 timeout: float = 60.0, transport: httpx.BaseTransport | None = None,
                 insecure_hosts: Iterable[str] = (), retry: RetryPolicy | None = None,
                 uploads: UploadJournal | None = None) -> None:
        self.host = host.lower()
        self.credentials = credentials
        self.insecure = insecure
        #: Other hosts the user declared insecure: only these may get credentials over plain HTTP.
        self.insecure_hosts = tuple(insecure_hosts)
        self._secrets = secret_forms([credentials.password] if credentials else [])
        self.timeout = timeout
        self.counters = Counters()
        self.retry = retry or RetryPolicy()
        self.uploads = uploads or UploadJournal()
        self._no_patch = False  # the registry refused a chunk once: it takes blobs in one PUT
        self.scheme = "http" if is_loopback(self.host) else "https"
        # insecure, as BuildKit reads it: HTTPS without verifying the certificate, else plain HTTP (found out on
        # the first request).
        self._probe = insecure and self.scheme == "https"
        auth = _RegistryAuth(self)
        self.timeouts = httpx.Timeout(timeout, connect=min(timeout, 15.0)).as_dict()
        self._client = httpx.Client(
            base_url=f"{self.scheme}://{self.host}",
            auth=auth,
            verify=_verified_tls() if not insecure else False,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            # as many kept-alive connections as --jobs can use: a new TLS connection costs round trips
            limits=httpx.Limits(max_connections=128, max_keepalive_connections=64),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            transport=transport,
            event_hooks={"request": [self._count], "response": [self._bound]},
            headers={"User-Agent": "cacheport"},
        )

    def _count(self, _request: httpx.Request) -> None:
        self.counters.add(requests=1)

    def _bound(self, response: httpx.Response) -> None:
        """Every answer but a blob gets a size and time budget, before httpx or we read a byte of it."""
        if not response.is_success:
            # httpx reads redirect and 401 bodies itself: decompressed, they would escape the byte budget.
            response.headers.pop("content-encoding", None)
        elif response.request.extensions.get(_BLOB):
            return
        response.stream = _Budget(response.stream, f"{self.host}: {response.request.method} "
                                  f"{_path(str(response.request.url))}", self.timeout)

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"Registry({self.host!r}, user={self.credentials.username if self.credentials else None!r})"

    # --- plumbing -------------------------------------------------------------------------------------------

    def _request(self, method: str, url: str, *, ok: Iterable[int] = (200,), stream: bool = False,
                 **kwargs: Any) -> httpx.Response:
        if self._probe:
            self._probe = False
            try:
                self._client.get("/v2/", auth=None).close()
            except httpx.TransportError:
                self.scheme = "http"
                self._client.base_url = httpx.URL(f"http://{self.host}")
            except httpx.HTTPError:
                pass  # the request itself says what is wrong
        try:
            response = send_with_retries(
                lambda: self._client.send(self._client.build_request(method, url, **kwargs), stream=True),
                self.retry if _replayable(method, kwargs) else ONCE)
            if not stream and response.status_code in ok:
                _read_body(response, f"{self.host}: {method} {_path(url)}")
        except httpx.TimeoutException:
            raise RegistryError(f"{self.host}: no answer in time ({method} {_path(url)})") from None
        except httpx.TooManyRedirects:
            raise RegistryError(f"{self.host}: {method} {_path(url)}: redirected more than {MAX_REDIRECTS} times "
                                "(a redirect loop?)") from None
        except httpx.DecodingError:
            raise RegistryError(f"{self.host}: {method} {_path(url)}: the answer's body is not encoded the way "
                                "its Content-Encoding says") from None
        except httpx.TransportError as exc:
            raise RegistryError(f"{self.host} is unreachable: {_one_line(exc)}") from None
        except httpx.StreamConsumed:
            raise _AskedAgain(f"{self.host}: asked for credentials again in the middle of an upload "
                              "(run again to resume)", 401) from None
        if response.status_code not in ok:
            raise _gave_up(self._error(response, method, url), response)
        return response

    def _error(self, response: httpx.Response, method: str, url: str) -> RegistryError:
        code, detail = _error_detail(_error_body(response))
        status = response.status_code
        what = {401: "not authorized (check the credentials)", 403: "access denied"}.get(status, "")
        text = " ".join(x for x in (f"HTTP {status}", code, what, detail) if x)
        # A server's words are shown to people: never our own credentials echoed back, nor terminal escapes.
        return RegistryError(f"{self.host}: {method} {_path(url)}: {printable(mask(text, self._secrets), 400)}",
                             status, code)

    # --- the API --------------------------------------------------------------------------------------------

    def ping(self) -> None:
        """Check that the registry answers the v2 API and the credentials (if any) are accepted."""
        self._request("GET", "/v2/")

    def list_tags(self, repository: str, page_size: int = 1000) -> list[str]:
        """Every tag of a repository, following ``Link`` pagination; [] when the repository does not exist."""
        tags: list[str] = []
        url = f"/v2/{repository}/tags/list?n={page_size}"
        seen: set[str] = set()
        for _page in range(MAX_PAGES):
            response = self._request("GET", url, ok=(200, 404))
            if response.status_code == 404:
                return tags
            tags += _tag_page(response.content, f"{self.host}: {repository}")
            if len(tags) > MAX_TAGS:
                raise RegistryError(f"{self.host}: {repository}: more than {MAX_TAGS} tags; cacheport stops there")
            seen.add(str(response.url))
            following = self._next_page(response, seen)
            if following is None:
                return tags
            url = following
        raise RegistryError(f"{self.host}: {repository}: the tag list goes on for more than {MAX_PAGES} pages")

    def _next_page(self, response: httpx.Response, seen: set[str]) -> str | None:
        """The ``Link: rel=next`` page, unless it is one already read or leaves this registry's API."""
        try:
            link = response.links.get("next", {}).get("url")
            following = response.url.join(link) if link else None
        except (httpx.InvalidURL, ValueError, TypeError):
            return None
        if (following is None or str(following) in seen or following.scheme != response.url.scheme
                or following.netloc != response.url.netloc or not following.path.startswith("/v2/")):
            return None
        return str(following)

    def get_manifest(self, repository: str, reference: str) -> Manifest | None:
        """A manifest or index by tag or digest, as stored; None when there is none."""
        response = self._request("GET", f"/v2/{repository}/manifests/{reference}", ok=(200, 404),
                                 headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code == 404:
            return None
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        if not _MEDIA_TYPE.match(media_type):
            media_type = ""  # not a media type at all: the document's own mediaType says what it is
        manifest = Manifest.from_bytes(response.content, "" if media_type in ("", "application/json") else media_type)
        if reference.startswith("sha256:") and manifest.digest != reference:
            raise RegistryError(f"{self.host}: {repository}@{reference}: the manifest's content has digest "
                                f"{manifest.digest}")
        return manifest

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest a tag points at (HEAD; falls back to GET when the registry sends no digest), or None."""
        response = self._request("HEAD", f"/v2/{repository}/manifests/{reference}", ok=(200, 404),
                                 headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code == 404:
            return None
        digest = response.headers.get("docker-content-digest")
        if digest and DIGEST.match(digest):
            return str(digest)
        manifest = self.get_manifest(repository, reference)
        return manifest.digest if manifest else None

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> str:
        """Store a manifest under a tag (or its digest); returns the digest the registry reports."""
        response = self._request("PUT", f"/v2/{repository}/manifests/{reference}", ok=(200, 201),
                                 content=manifest.data, headers={"Content-Type": manifest.media_type})
        self.counters.add(manifests_put=1)
        digest = response.headers.get("docker-content-digest", "")
        return digest if DIGEST.match(digest) else manifest.digest

    def delete_manifest(self, repository: str, reference: str) -> bool:
        """Delete a manifest by digest, or by tag (resolved to its digest first); False when it is not there.

        Registries delete by digest, which removes every tag pointing at that manifest: check first that no
        other tag you mean to keep shares it.
        """
        digest = reference if DIGEST.match(reference) else self.manifest_digest(repository, reference)
        if digest is None:
            return False
        response = self._request("DELETE", f"/v2/{repository}/manifests/{digest}", ok=(200, 202, 404))
        return response.status_code != 404

    def blob_size(self, repository: str, digest: str) -> int | None:
        """The size of a blob in a repository (HEAD), or None when the repository does not have it."""
        response = self._request("HEAD", f"/v2/{repository}/blobs/{digest}", ok=(200, 404))
        if response.status_code == 404:
            return None
        length = response.headers.get("content-length", "")
        return int(length) if length.isdigit() and len(length) < 20 else 0

    @contextmanager
    def open_blob(self, repository: str, digest: str, offset: int = 0) -> Iterator[Iterator[bytes]]:
        """A blob's bytes from ``offset`` on, as a stream of chunks (redirects to blob storage are followed).

        From an offset it asks for a range; a registry that sends the whole blob instead has the start skipped.
        """
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = self._request("GET", f"/v2/{repository}/blobs/{digest}", stream=True, ok=(200, 206),
                                 headers=headers, extensions={_BLOB: True})
        skip = offset if offset and response.status_code == 200 else 0
        try:
            yield self._counted(_skipped(response.iter_bytes(), skip))
        finally:
            response.close()

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        try:
            for chunk in chunks:
                self.counters.add(bytes_downloaded=len(chunk))
                yield chunk
        except httpx.TransportError as exc:
            # Raised while another registry's request is sending these bytes: say which end broke.
            raise RegistryError(f"{self.host}: the blob stream broke: {_one_line(exc)}") from None

    def mount_blob(self, repository: str, digest: str, source_repository: str) -> bool:
        """Link a blob from another repository on this registry (no bytes move); False when it can't.

        A registry that cannot mount answers 202 and opens an upload instead (cancelled here); Pulp answers 404.
        """
        response = self._request("POST", f"/v2/{repository}/blobs/uploads/",
                                 params={"mount": digest, "from": source_repository},
                                 ok=(201, 202, 401, 403, 404, 405))
        if response.status_code == 201:
            self.counters.add(blobs_mounted=1)
            return True
        if response.status_code == 202 and response.headers.get("location"):
            with suppress(RegistryError):  # an abandoned upload expires on its own
                self._request("DELETE", response.headers["location"], ok=range(200, 600))
        return False

    def upload_blob(self, repository: str, digest: str, size: int, chunks: Iterable[bytes], *,
                    chunk_size: int | None = None, progress: Any = None) -> None:
        """Stream a blob into a repository: one PUT (the default), or PATCHes of ``chunk_size`` bytes.

        Memory stays flat: chunks are passed on as they come. ``progress(n)`` is called as bytes go out.
        """
        response = self._request("POST", f"/v2/{repository}/blobs/uploads/", ok=(202,),
                                 headers={"Content-Length": "0"})
        location = self._location(response)
        chunks = _at_most(chunks, size, f"{self.host}: {digest}")
        sent = _Sent(self, progress)
        if chunk_size is None:
            self._request("PUT", _with_digest(location, digest), ok=(201,), content=sent.through(chunks),
                          headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        else:
            offset = 0
            for piece in _pieces(chunks, chunk_size):
                end = offset + sum(len(c) for c in piece) - 1
                response = self._request(
                    "PATCH", location, ok=(202,), content=sent.through(piece),
                    headers={"Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{end}",
                             "Content-Length": str(end - offset + 1)})
                location, offset = self._location(response), end + 1
            self._request("PUT", _with_digest(location, digest), ok=(201,), headers={"Content-Length": "0"})
        if sent.total != size:
            raise RegistryError(f"{self.host}: {digest}: sent {sent.total} bytes, expected {size}")
        self.counters.add(blobs_uploaded=1)

    def _location(self, response: httpx.Response) -> str:
        location = response.headers.get("location")
        if not location:
            raise RegistryError(f"{self.host}: the registry opened an upload without a Location")
        return str(response.url.join(location))

    def copy_blob(self, source: Registry, source_repository: str, repository: str, blob: Descriptor, *,
                  chunk_size: int | None = None, progress: Any = None) -> str:
        """Make a blob present here: ``present`` (already was), ``mounted`` (same host), or ``uploaded``."""
        if self.blob_size(repository, blob.digest) is not None:
            self.counters.add(blobs_present=1)
            return "present"
        if source.host == self.host and self.mount_blob(repository, blob.digest, source_repository):
            return "mounted"
        with source.open_blob(source_repository, blob.digest) as chunks:
            self.upload_blob(repository, blob.digest, blob.size, chunks, chunk_size=chunk_size, progress=progress)
        return "uploaded"

    # --- resumable uploads ----------------------------------------------------------------------------------

    def upload_status(self, location: str) -> tuple[str, int] | None:
        """Where an open upload stands: the URL to continue it at and the bytes the registry holds (its
        ``Range``), or None when the registry no longer has it (expired, cancelled, or its state is stale)."""
        response = self._request("GET", location, ok=(200, 204, 400, 404, 416))
        if response.status_code not in (200, 204):
            return None
        match = re.fullmatch(r"\s*(?:bytes[= ])?0-(\d+)\s*", response.headers.get("range", ""))
        if not match:
            return None
        # "0-0" is distribution's answer for nothing received yet (and, ambiguously, for one byte): start at 0.
        end = int(match.group(1))
        return self._location(response) if response.headers.get("location") else location, end + 1 if end else 0

    def upload_resumable(self, repository: str, digest: str, size: int,
                         source: Callable[[int], contextlib.AbstractContextManager[Iterator[bytes]]], *,
                         progress: Callable[[int], None] | None = None,
                         stopping: Callable[[], bool] | None = None) -> int:
        """Upload a blob whose bytes can be read again from any offset (``source(offset)``); returns the bytes
        sent.

        A blob of :data:`CHUNKED_FROM` bytes or more goes in PATCHes, and after each one the upload's Location
        and offset are written to the journal (:attr:`uploads`). So when a PATCH fails (a reset connection, a
        5xx), or an earlier run was stopped, the upload continues from the offset the registry reports for it
        (``GET`` on its Location). A registry that has lost the upload gets a new one, from the start. A
        smaller blob is one streamed PUT, sent again from the start when it fails that way. Either is retried
        within :attr:`retry`'s bounds; ``stopping()`` makes a chunked upload stop (with :class:`Interrupted`)
        after the PATCH in flight, which keeps it resumable.
        """
        stopping = stopping or (lambda: False)
        sent = _Sent(self, progress)
        began, failures, last = time.monotonic(), 0, ""
        chunked = size >= CHUNKED_FROM and not self._no_patch
        while True:
            try:
                if chunked:
                    self._upload_in_patches(repository, digest, size, source, sent, stopping)
                else:
                    # The upload is opened while the source starts answering: one round trip, not two.
                    opening = _in_thread(partial(self._request, "POST", f"/v2/{repository}/blobs/uploads/",
                                                 ok=(202,), headers={"Content-Length": "0"}))
                    with source(0) as chunks:
                        response = opening.result()
                        self._request("PUT", _with_digest(self._location(response), digest), ok=(201,),
                                      content=sent.through(_exactly(chunks, size, self.host)),
                                      headers={"Content-Type": "application/octet-stream",
                                               "Content-Length": str(size)})
                self.counters.add(blobs_uploaded=1)
                return sent.total
            except _NoPatch:
                chunked = False
                continue
            except RegistryError as exc:
                retryable = exc.status in RETRY_STATUSES or exc.status == 416 or isinstance(exc, _AskedAgain)
                if exc.status is not None and not retryable:
                    raise
                failures, last = failures + 1, str(exc)
            if failures >= self.retry.attempts or time.monotonic() - began > self.retry.budget:
                raise RegistryError(f"{last} (gave up after {failures} tries; run again to resume)")
            time.sleep(self.retry.wait(failures, None))

    def _upload_in_patches(self, repository: str, digest: str, size: int,
                           source: Callable[[int], contextlib.AbstractContextManager[Iterator[bytes]]],
                           sent: _Sent, stopping: Callable[[], bool]) -> None:
        journal, key = self.uploads, (self.host, repository, digest)
        known = journal.get(*key)
        status = self.upload_status(known.location) if known else None
        if status is None or status[1] > size:
            if known:
                journal.drop(*key)
            response = self._request("POST", f"/v2/{repository}/blobs/uploads/", ok=(202,),
                                     headers={"Content-Length": "0"})
            location, offset, started = self._location(response), 0, time.time()
            piece = _PATCH_MIN
        else:
            (location, offset), started = status, known.started if known else time.time()
            # Pulp answers an upload's status without asking for credentials, so this run's first PATCH may be
            # its first request that needs them, and httpx cannot send a streamed body again after the 401:
            # that PATCH is small and held in memory, so it can.
            piece = CHUNK
        journal.put(*key, OpenUpload(location, offset, started))
        ceiling = max(_PATCH_MIN, min(_PATCH_MAX, -(-size // _PATCH_SHARE)))
        moved, began = 0, time.monotonic()
        with source(offset) as chunks:
            stream = _Take(chunks)
            while offset < size:
                if stopping():
                    raise Interrupted(f"stopped with {offset} of {size} bytes of {digest[:19]} sent to {self.host}")
                length = min(piece, size - offset)
                body = sent.through(stream.take(length, self.host))
                response = self._request(
                    "PATCH", location, ok=(202, 400, 405, 415, 501) if offset == 0 else (202,),
                    content=b"".join(body) if length <= CHUNK else body,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(length),
                             "Content-Range": f"{offset}-{offset + length - 1}"})
                if response.status_code != 202:  # the registry takes no chunks: one PUT instead
                    self._no_patch = True
                    with suppress(RegistryError):
                        self._request("DELETE", location, ok=range(200, 600))
                    journal.drop(*key)
                    raise _NoPatch()
                location, offset = self._location(response), offset + length
                journal.put(*key, OpenUpload(location, offset, started))
                moved += length  # the rate over all PATCHes so far: a first one that fits in buffers misleads
                rate = moved / max(time.monotonic() - began, 1e-3)
                piece = int(min(ceiling, max(_PATCH_MIN, rate * _PATCH_SECONDS)))
        response = self._request("PUT", _with_digest(location, digest), ok=(201, 404),
                                 headers={"Content-Length": "0"})
        journal.drop(*key)
        if response.status_code == 404 and self.blob_size(repository, digest) != size:
            raise RegistryError(f"{self.host}: {digest}: the registry lost the upload at its last step", 404)


class _Sent:
    """Counts blob bytes on their way out (for counters and progress bars)."""

    def __init__(self, registry: Registry, progress: Any) -> None:
        self.registry, self.progress, self.total = registry, progress, 0

    def through(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.total += len(chunk)
            self.registry.counters.add(bytes_uploaded=len(chunk))
            if self.progress is not None:
                self.progress(len(chunk))
            yield chunk


def _at_most(chunks: Iterable[bytes], size: int, what: str) -> Iterator[bytes]:
    """A blob's stream, cut off as an error once it brings more bytes than its descriptor's size."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > size:
            raise RegistryError(f"{what}: the source sent more than the {size} bytes its manifest gives")
        yield chunk


class _Budget(httpx.SyncByteStream):
    """An answer's body, cut off as a one-line error past :data:`BODY_LIMIT` bytes or ``seconds`` of reading."""

    def __init__(self, stream: Any, what: str, seconds: float) -> None:
        self.stream, self.what, self.seconds = stream, what, seconds

    def __iter__(self) -> Iterator[bytes]:
        deadline = time.monotonic() + self.seconds
        total = 0
        for chunk in self.stream:
            total += len(chunk)
            if total > BODY_LIMIT:
                raise RegistryError(f"{self.what}: the answer is longer than {BODY_LIMIT >> 20} MiB")
            if time.monotonic() > deadline:
                raise RegistryError(f"{self.what}: the answer took longer than {self.seconds:g} s to arrive")
            yield chunk

    def close(self) -> None:
        self.stream.close()


def _read_body(response: httpx.Response, what: str) -> None:
    """Read an answer's body into memory (decoded), as ``response.read()`` would, but at most BODY_LIMIT bytes."""
    if hasattr(response, "_content"):
        return
    chunks, total = [], 0
    try:
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > BODY_LIMIT:
                raise RegistryError(f"{what}: the answer is longer than {BODY_LIMIT >> 20} MiB")
            chunks.append(chunk)
    except BaseException:
        response.close()
        raise
    response._content = b"".join(chunks)


def _error_body(response: httpx.Response) -> bytes:
    """The start of an error answer's body, for its message; whatever goes wrong reading it, what arrived."""
    if hasattr(response, "_content"):
        return response.content[:ERROR_TEXT]
    data = b""
    try:
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= ERROR_TEXT:
                break
    except (httpx.HTTPError, RegistryError):
        pass
    finally:
        response.close()
    return data[:ERROR_TEXT]


def _error_detail(body: bytes) -> tuple[str, str]:
    """``(code, message)`` from an error body: the distribution API's ``{"errors": [{code, message, detail}]}``,
    another JSON object's ``message``/``detail``/``error``, or the text itself."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return "", body.decode("utf-8", "replace").strip()
    first: Any = doc
    if isinstance(doc, dict) and isinstance(doc.get("errors"), list) and doc["errors"]:
        first = doc["errors"][0]
    if not isinstance(first, dict):
        return "", json.dumps(doc)[:ERROR_TEXT] if not isinstance(doc, str) else doc
    code = first.get("code")
    code = code if isinstance(code, str) and re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", code) else ""
    message = next((first[k] for k in ("message", "detail", "error") if isinstance(first.get(k), str)), "")
    extra = first.get("detail")
    if extra and extra != message:
        with suppress(TypeError, ValueError, RecursionError):
            message += f" ({json.dumps(extra, separators=(',', ':'))})"
    if not code and not message:
        message = json.dumps(doc)[:ERROR_TEXT]
    return code, message


def _tag_page(content: bytes, what: str) -> list[str]:
    """The tags of one page of a tag list: ``{"name": …, "tags": [names]}`` (``null`` for none)."""
    try:
        doc = json.loads(content)
    except (ValueError, RecursionError):
        raise RegistryError(f"{what}: the tag list is not JSON") from None
    tags = doc.get("tags") if isinstance(doc, dict) else 0
    if tags is None:
        return []
    if not isinstance(tags, list):
        raise RegistryError(f"{what}: the tag list is not {{\"tags\": [names]}}")
    bad = next((t for t in tags if not isinstance(t, str) or not TAG_PATTERN.match(t)), None)
    if bad is not None:
        raise RegistryError(f"{what}: the tag list holds {printable(json.dumps(bad), 80)}, which is not a tag name")
    return tags


def _pieces(chunks: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    """Group a stream into pieces of ``size`` bytes (the last may be shorter); holds one piece in memory."""
    piece: list[bytes] = []
    held = 0
    for chunk in chunks:
        while chunk:
            take = chunk[: size - held]
            chunk = chunk[len(take):]
            piece.append(take)
            held += len(take)
            if held == size:
                yield piece
                piece, held = [], 0
    if piece:
        yield piece


class _NoPatch(Exception):
    """The registry refused a PATCH: it takes a blob in one PUT only."""


class _AskedAgain(RegistryError):
    """A 401 to a streamed body (a token that expired mid-upload): the login is renewed by then, and the upload
    can go on from where the registry says it stands, but that body can't be sent again."""


class _Take:
    """Hands out a stream's bytes in runs of an exact length, keeping the rest of a chunk for the next run."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.rest = chunks, b""

    def take(self, length: int, host: str) -> Iterator[bytes]:
        while length > 0:
            chunk = self.rest or next(self.chunks, b"")
            if not chunk:
                raise RegistryError(f"{host}: the blob's source ended {length} bytes early")
            head, self.rest = chunk[:length], chunk[length:]
            length -= len(head)
            yield head


def _exactly(chunks: Iterable[bytes], size: int, host: str) -> Iterator[bytes]:
    """The chunks, checked to add up to ``size``: a short source must not end a request early, unnoticed (nor a
    long one run on: :func:`_at_most`)."""
    total = 0
    for chunk in _at_most(chunks, size, host):
        total += len(chunk)
        yield chunk
    if total != size:
        raise RegistryError(f"{host}: the blob's source ended {size - total} bytes early")


def _skipped(chunks: Iterator[bytes], skip: int) -> Iterator[bytes]:
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        yield chunk[skip:]
        skip = 0


@functools.cache
def _verified_tls() -> ssl.SSLContext:
    """One verifying TLS context for every client: loading the CA bundle takes tens of milliseconds."""
    return httpx.create_ssl_context()


def _in_thread(fn: Callable[[], httpx.Response]) -> Future[httpx.Response]:
    """``fn()`` in a thread of its own; the result (or error) is the future's."""
    future: Future[httpx.Response] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True, name="cacheport-open-upload").start()
    return future


def _replayable(method: str, kwargs: Mapping[str, Any]) -> bool:
    """Whether a request may be sent again as it is: its body is bytes (or none), and it is not a PATCH
    (which appends to an upload)."""
    content = kwargs.get("content")
    return method != "PATCH" and (content is None or isinstance(content, bytes | str))


def _gave_up(error: RegistryError, response: httpx.Response) -> RegistryError:
    tries = response.extensions.get(TRIES, 1)
    if tries <= 1:
        return error
    return RegistryError(f"{error} (gave up after {tries} tries)", error.status, error.code)


def _with_digest(location: str, digest: str) -> str:
    # An upload's Location carries the registry's own state in its query (distribution's _state): keep it.
    return str(httpx.URL(location).copy_merge_params({"digest": digest}))


def _path(url: str) -> str:
    return re.sub(r"^[a-z]+://[^/]+", "", url).split("?", 1)[0]


def _one_line(value: object, limit: int = 400) -> str:
    return printable(value, limit)


class RegistryRepository:
    """One repository of a registry as a cache store session (:class:`cacheport.StoreSession`): tags are names.

    Closing it closes the registry client. ``only``: a backend with one fixed tag owns just that tag.
    """

    def __init__(self, registry: Registry, repository: str, *, only: str | None = None) -> None:
        self.registry, self.repository, self.only = registry, repository, only
        self.host = registry.host

    def __enter__(self) -> RegistryRepository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.registry.close()

    def __repr__(self) -> str:
        return f"RegistryRepository({self.host!r}, {self.repository!r})"

    def check(self) -> None:
        self.registry.ping()

    def names(self) -> list[str]:
        tags = sorted(set(self.registry.list_tags(self.repository)))
        return [t for t in tags if t == self.only] if self.only is not None else tags

    def get_manifest(self, reference: str) -> Manifest | None:
        return self.registry.get_manifest(self.repository, reference)

    def manifest_digest(self, name: str) -> str | None:
        return self.registry.manifest_digest(self.repository, name)

    def blob_size(self, digest: str) -> int | None:
        return self.registry.blob_size(self.repository, digest)

    def open_blob(self, digest: str, offset: int = 0) -> contextlib.AbstractContextManager[Iterator[bytes]]:
        return self.registry.open_blob(self.repository, digest, offset)

    def mount_from(self, source: object, digest: str) -> bool:
        if not isinstance(source, RegistryRepository) or source.host != self.host:
            return False
        return self.registry.mount_blob(self.repository, digest, source.repository)

    def put_blob(self, descriptor: Descriptor, chunks: Iterable[bytes],
                 progress: Callable[[int], None] | None = None) -> None:
        if isinstance(chunks, BlobSource):
            self.registry.upload_resumable(self.repository, descriptor.digest, descriptor.size, chunks.open,
                                           progress=progress, stopping=chunks.stopping)
        else:
            self.registry.upload_blob(self.repository, descriptor.digest, descriptor.size, chunks, progress=progress)

    def put_manifest(self, reference: str, manifest: Manifest) -> None:
        self.registry.put_manifest(self.repository, reference, manifest)

    def delete(self, name: str, digest: str | None = None) -> bool:
        # With the digest listed, one DELETE; a tag pushed again since keeps its new manifest.
        return self.registry.delete_manifest(self.repository, digest or name)

"""The registry API client (distribution's v2 API): tags, manifests and blobs of one registry host.

:class:`Registry` holds the connection pool, the login (:mod:`.auth`), the budgets on answers (:mod:`.http`) and
the retries (:mod:`.retry`); blob uploads are :mod:`.upload`'s. It knows no backend and no store: the store
adapter is :mod:`.repository`. httpx is imported only when a command touches a registry, so ``cacheport args``
never loads an HTTP client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import httpx

from cacheport.errors import RegistryError
from cacheport.masking import mask, printable, secret_forms
from cacheport.oci.auth import Credentials, RegistryAuth
from cacheport.oci.format import DIGEST, MANIFEST_TYPES, Manifest
from cacheport.oci.http import (
    BLOB,
    AskedAgain,
    Budget,
    Counters,
    error_body,
    error_detail,
    gave_up,
    path,
    read_body,
    replayable,
    verified_tls,
)
from cacheport.oci.reference import is_loopback
from cacheport.oci.retry import ONCE, RetryPolicy, send_with_retries
from cacheport.oci.upload import Source, Uploader, UploadJournal, UploadPolicy, once
from cacheport.refs import TAG_PATTERN

MAX_REDIRECTS = 10
MAX_PAGES = 1000
MAX_TAGS = 100_000
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]{0,126}/[\w.+-]{1,127}\Z")


class Registry:
    """One registry host, with its credentials; use it as a context manager (it holds a connection pool).

    A loopback host is spoken to over plain HTTP. Others over HTTPS with verified certificates, unless
    ``insecure``: then HTTPS without verification, or plain HTTP when the host does not speak TLS.
    ``transport`` is for tests (an ``httpx`` transport). Every error is a one-line :class:`RegistryError`.

    Safe to use from several threads at once. Requests that can be sent again unchanged are retried on 429,
    5xx and dropped connections (``retry``); ``uploads`` remembers open blob uploads so they resume, and
    ``upload_policy`` says which blobs go in PATCHes, and how big.
    """

    def __init__(self, host: str, credentials: Credentials | None = None, *, insecure: bool = False,
                 timeout: float = 60.0, transport: httpx.BaseTransport | None = None,
                 insecure_hosts: Iterable[str] = (), retry: RetryPolicy | None = None,
                 uploads: UploadJournal | None = None, upload_policy: UploadPolicy | None = None,
                 scheme: str | None = None) -> None:
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
        # A URL's own scheme, where the user gave one (a plugin's ``https://127.0.0.1:…``), else the host decides.
        self.scheme = scheme or ("http" if is_loopback(self.host) else "https")
        # insecure, as BuildKit reads it: HTTPS without verifying the certificate, else plain HTTP (found out on
        # the first request).
        self._probe = insecure and self.scheme == "https"
        auth = RegistryAuth(self)
        self.timeouts = httpx.Timeout(timeout, connect=min(timeout, 15.0)).as_dict()
        self._client = httpx.Client(
            base_url=f"{self.scheme}://{self.host}",
            auth=auth,
            verify=verified_tls() if not insecure else False,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            # as many kept-alive connections as --jobs can use: a new TLS connection costs round trips
            limits=httpx.Limits(max_connections=128, max_keepalive_connections=64),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            transport=transport,
            event_hooks={"request": [self._count], "response": [self._bound]},
            headers={"User-Agent": "cacheport"},
        )
        self._uploader = Uploader(self._request, self.blob_size, self.host, self.counters, self.uploads,
                                  upload_policy or UploadPolicy())

    def _count(self, _request: httpx.Request) -> None:
        self.counters.add(requests=1)

    def _bound(self, response: httpx.Response) -> None:
        """Every answer but a blob gets a size and time budget, before httpx or we read a byte of it."""
        if not response.is_success:
            # httpx reads redirect and 401 bodies itself: decompressed, they would escape the byte budget.
            response.headers.pop("content-encoding", None)
        elif response.request.extensions.get(BLOB):
            return
        response.stream = Budget(response.stream, f"{self.host}: {response.request.method} "
                                 f"{path(str(response.request.url))}", self.timeout)

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
                self.retry if replayable(method, kwargs) else ONCE)
            if not stream and response.status_code in ok:
                read_body(response, f"{self.host}: {method} {path(url)}")
        except httpx.TimeoutException:
            raise RegistryError(f"{self.host}: no answer in time ({method} {path(url)})") from None
        except httpx.TooManyRedirects:
            raise RegistryError(f"{self.host}: {method} {path(url)}: redirected more than {MAX_REDIRECTS} times "
                                "(a redirect loop?)") from None
        except httpx.DecodingError:
            raise RegistryError(f"{self.host}: {method} {path(url)}: the answer's body is not encoded the way "
                                "its Content-Encoding says") from None
        except httpx.TransportError as exc:
            raise RegistryError(f"{self.host} is unreachable: {printable(exc, 400)}") from None
        except httpx.StreamConsumed:
            raise AskedAgain(f"{self.host}: asked for credentials again in the middle of an upload "
                              "(run again to resume)", 401) from None
        if response.status_code not in ok:
            raise gave_up(self._error(response, method, url), response)
        return response

    def _error(self, response: httpx.Response, method: str, url: str) -> RegistryError:
        code, detail = error_detail(error_body(response))
        status = response.status_code
        what = {401: "not authorized (check the credentials)", 403: "access denied"}.get(status, "")
        text = " ".join(x for x in (f"HTTP {status}", code, what, detail) if x)
        # A server's words are shown to people: never our own credentials echoed back, nor terminal escapes.
        return RegistryError(f"{self.host}: {method} {path(url)}: {printable(mask(text, self._secrets), 400)}",
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
                                 headers=headers, extensions={BLOB: True})
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
            raise RegistryError(f"{self.host}: the blob stream broke: {printable(exc, 400)}") from None

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
                    progress: Callable[[int], None] | None = None) -> None:
        """Stream a blob into a repository, once: chunks are passed on as they come, so memory stays flat, and
        nothing is sent twice. ``progress(n)`` is called as bytes go out."""
        self._uploader.send(repository, digest, size, once(chunks, self.host), ONCE, progress=progress)

    def upload_resumable(self, repository: str, digest: str, size: int, source: Source, *,
                         progress: Callable[[int], None] | None = None,
                         stopping: Callable[[], bool] | None = None) -> int:
        """Upload a blob whose bytes can be read again from any offset (``source(offset)``); returns the bytes
        sent. A large one goes in PATCHes that resume where the registry stands after a failure or in a later
        run (:meth:`.upload.Uploader.send`), within :attr:`retry`'s bounds; ``stopping()`` stops it (with
        :class:`~cacheport.errors.Interrupted`) at a point it resumes from."""
        return self._uploader.send(repository, digest, size, source, self.retry, progress=progress,
                                   stopping=stopping)


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


def _skipped(chunks: Iterator[bytes], skip: int) -> Iterator[bytes]:
    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        yield chunk[skip:]
        skip = 0

"""HTTP plumbing every registry request shares: what a request did (:class:`Counters`), the size and time budget
on an answer's body, reading a bounded body, and turning an error answer into its code and message.

No registry API here (that is :mod:`.registry`), and no retries (:mod:`.retry`).
"""

from __future__ import annotations

import functools
import json
import re
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import suppress
from typing import Any

import attrs
import httpx

from cacheport.errors import RegistryError
from cacheport.oci.retry import TRIES

# Bounds on what a registry may send: everything but a blob is small. 4 MiB is distribution's own manifest limit.
BODY_LIMIT = 4 << 20
ERROR_TEXT = 64 << 10  # bytes of an error body read for its message
#: request extension: this answer is a blob, streamed by the caller without a bound.
BLOB = "cacheport.blob"


@attrs.define
class Counters:
    """What a client did, for summaries and for tests that prove what moved.

    Attributes:
        requests: HTTP requests sent (token requests included).
        bytes_uploaded: blob bytes sent.
        bytes_downloaded: blob bytes received.
        blobs_uploaded: blobs sent.
        blobs_mounted: blobs mounted from another repository (no bytes moved).
        manifests_put: manifests written.
        tokens: bearer tokens fetched.
    """

    requests: int = 0
    bytes_uploaded: int = 0
    bytes_downloaded: int = 0
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    manifests_put: int = 0
    tokens: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False, eq=False)

    def add(self, **amounts: int) -> None:
        """Add to some counters; safe from several threads (``x += n`` is not)."""
        with self._lock:
            for name, n in amounts.items():
                setattr(self, name, getattr(self, name) + n)


class AskedAgain(RegistryError):
    """A 401 to a streamed body (a token that expired mid-upload): the login is renewed by then, and the upload
    can go on from where the registry says it stands, but that body can't be sent again."""


class Budget(httpx.SyncByteStream):
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


def read_body(response: httpx.Response, what: str) -> None:
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


def error_body(response: httpx.Response) -> bytes:
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


def error_detail(body: bytes) -> tuple[str, str]:
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


def gave_up(error: RegistryError, response: httpx.Response) -> RegistryError:
    """The error, saying how many tries the retry layer made when there was more than one."""
    tries = response.extensions.get(TRIES, 1)
    if tries <= 1:
        return error
    return RegistryError(f"{error} (gave up after {tries} tries)", error.status, error.code)


def replayable(method: str, kwargs: Mapping[str, Any]) -> bool:
    """Whether a request may be sent again as it is: its body is bytes (or none), and it is not a PATCH
    (which appends to an upload)."""
    content = kwargs.get("content")
    return method != "PATCH" and (content is None or isinstance(content, bytes | str))


def path(url: str) -> str:
    """A URL's path alone, for messages (no host, no query: an upload's query may carry signed state)."""
    return re.sub(r"^[a-z]+://[^/]+", "", url).split("?", 1)[0]


@functools.cache
def verified_tls() -> ssl.SSLContext:
    """One verifying TLS context for every client: loading the CA bundle takes tens of milliseconds."""
    return httpx.create_ssl_context()

"""Blob uploads: one streamed PUT, or PATCHes journalled so that an upload that was stopped or broke resumes
mid-blob (:class:`Uploader`); how big the PATCHes are (:class:`UploadPolicy`); the open uploads
(:class:`UploadJournal`). Requests go through the registry client's; no other API here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx

from cacheport.errors import Interrupted, RegistryError
from cacheport.files import replacing
from cacheport.oci.http import AskedAgain, Counters
from cacheport.oci.retry import RETRY_STATUSES, Backoff, RetryPolicy

CHUNK = 1 << 20  # the most of a blob held at once: streams are passed on as they arrive (64 KiB reads)

#: ``offset -> context manager of chunks``: a blob's bytes from ``offset`` on.
Source = Callable[[int], AbstractContextManager[Iterator[bytes]]]


@attrs.frozen
class UploadPolicy:
    """How a blob goes up: whole, or in PATCHes of what size.

    Attributes:
        chunked_from: blobs at least this big go in PATCHes, each remembered, so an interrupted upload resumes
            mid-blob; smaller ones in one PUT.
        patch_min: the smallest PATCH (the first one is this big).
        patch_max: the largest PATCH.
        patch_seconds: a PATCH's size adapts so that each takes about this long: long enough that the round trip
            between two PATCHes costs little, short enough that a stop (which finishes the PATCH in flight) is
            quick.
        patch_share: no PATCH is more than this share of its blob (nor under ``patch_min``). A hard kill
            (SIGKILL, a lost machine) costs the PATCH in flight where the registry keeps only whole ones (Pulp
            behind nginx, which passes a request body on only once it has all of it), so that loss stays within
            a tenth. The 6 more PATCHes of a 1 GiB blob were lost in the noise of its copy, at 0 ms as at 50 ms
            RTT (docs/seed.md, "How long it takes").
    """

    chunked_from: int = 64 << 20
    patch_min: int = 32 << 20
    patch_max: int = 256 << 20
    patch_seconds: float = 3.0
    patch_share: int = 10


#: an upload older than this is not resumed: registries purge abandoned uploads (distribution: after 7 days).
MAX_AGE = 3 * 24 * 3600.0


@attrs.frozen
class OpenUpload:
    """An upload a registry holds for us.

    Attributes:
        location: the URL to continue it at (the last ``Location`` the registry gave).
        offset: the bytes it had accepted when we last heard from it.
        started: when it was opened (seconds since the epoch).
    """

    location: str = attrs.field(repr=False)
    offset: int
    started: float


class UploadJournal:
    """Open uploads by (host, repository, digest): in ``directory`` when one is given, else in memory (they
    resume within one run).

    One small JSON file per upload (mode 0600, in a 0700 directory under the user's cache directory), named
    after a hash of the registry host, repository and blob digest. It holds the upload's ``Location`` (the
    registry's own handle on the upload, which may carry signed state) and the offset it had reached; never a
    credential.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory else None
        self._memory: dict[str, OpenUpload] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"UploadJournal({str(self.directory) if self.directory else None!r})"

    @staticmethod
    def _key(host: str, repository: str, digest: str) -> str:
        return hashlib.sha256(f"{host}/{repository}@{digest}".encode()).hexdigest()[:40]

    def get(self, host: str, repository: str, digest: str) -> OpenUpload | None:
        """The upload we left open for this blob, if any (and not too old to be worth asking about)."""
        key = self._key(host, repository, digest)
        with self._lock:
            found = self._memory.get(key)
        if found is None and self.directory is not None:
            found = self._read(self.directory / f"{key}.json", host, repository, digest)
        if found is None or time.time() - found.started > MAX_AGE:
            return None
        return found

    def put(self, host: str, repository: str, digest: str, upload: OpenUpload) -> None:
        key = self._key(host, repository, digest)
        with self._lock:
            self._memory[key] = upload
        if self.directory is None:
            return
        doc = {"host": host, "repository": repository, "digest": digest, "location": upload.location,
               "offset": upload.offset, "started": upload.started}
        with contextlib.suppress(OSError):  # a journal that can't be written only costs a resume
            self._write(self.directory / f"{key}.json", json.dumps(doc).encode())

    def drop(self, host: str, repository: str, digest: str) -> None:
        key = self._key(host, repository, digest)
        with self._lock:
            self._memory.pop(key, None)
        if self.directory is not None:
            with contextlib.suppress(OSError):
                (self.directory / f"{key}.json").unlink()

    @staticmethod
    def _read(path: Path, host: str, repository: str, digest: str) -> OpenUpload | None:
        try:
            doc: Any = json.loads(path.read_bytes())
            if (doc["host"], doc["repository"], doc["digest"]) != (host, repository, digest):
                return None
            return OpenUpload(str(doc["location"]), int(doc["offset"]), float(doc["started"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with replacing(path, 0o600) as fh:
            fh.write(data)


class Uploader:
    """Blob uploads into one registry, through its ``request`` (the client's, with auth, budgets and retries).

    Safe to use from several threads at once.
    """

    def __init__(self, request: Callable[..., httpx.Response], blob_size: Callable[[str, str], int | None],
                 host: str, counters: Counters, journal: UploadJournal, policy: UploadPolicy) -> None:
        self.request, self.blob_size, self.host, self.counters = request, blob_size, host, counters
        self.journal, self.policy = journal, policy
        self._no_patch = False  # the registry refused a chunk once: it takes blobs in one PUT

    def send(self, repository: str, digest: str, size: int, source: Source, retry: RetryPolicy, *,
             progress: Callable[[int], None] | None = None, stopping: Callable[[], bool] | None = None) -> int:
        """Upload a blob whose bytes ``source(offset)`` gives; returns the bytes sent.

        A blob of ``policy.chunked_from`` bytes or more goes in PATCHes, and after each one the upload's
        Location and offset are written to the journal. So when a PATCH fails (a reset connection, a 5xx), or
        an earlier run was stopped, the upload continues from the offset the registry reports for it (``GET``
        on its Location). A registry that has lost the upload gets a new one, from the start. A smaller blob is
        one streamed PUT, sent again from the start when it fails that way. Either is tried again within
        ``retry``'s bounds; ``stopping()`` makes a chunked upload stop (with :class:`Interrupted`) after the
        PATCH in flight, which keeps it resumable.
        """
        stopping = stopping or _never
        sent = _Sent(self.counters, progress)
        backoff = Backoff(retry)
        chunked = size >= self.policy.chunked_from and not self._no_patch
        while True:
            try:
                if chunked:
                    self._in_patches(repository, digest, size, source, sent, stopping)
                else:
                    self._whole(repository, digest, size, source, sent)
                self.counters.add(blobs_uploaded=1)
                return sent.total
            except _NoPatch:
                chunked = False
                continue
            except RegistryError as exc:
                retryable = exc.status in RETRY_STATUSES or exc.status == 416 or isinstance(exc, AskedAgain)
                if exc.status is not None and not retryable:
                    raise
                delay = backoff.next_wait()
                if delay is None and backoff.tries == 1:
                    raise
                if delay is None:
                    raise RegistryError(f"{exc} (gave up after {backoff.tries} tries; run again to resume)") from None
                time.sleep(delay)

    def _open(self, repository: str) -> str:
        response = self.request("POST", f"/v2/{repository}/blobs/uploads/", ok=(202,),
                                headers={"Content-Length": "0"})
        return self._location(response)

    def _whole(self, repository: str, digest: str, size: int, source: Source, sent: _Sent) -> None:
        # The upload is opened while the source starts answering: one round trip, not two.
        opening = _in_thread(partial(self._open, repository))
        with source(0) as chunks:
            location = opening.result()
            self.request("PUT", _with_digest(location, digest), ok=(201,),
                         content=sent.through(_exactly(chunks, size, self.host)),
                         headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})

    def _status(self, location: str) -> tuple[str, int] | None:
        """Where an open upload stands: the URL to continue it at and the bytes the registry holds (its
        ``Range``), or None when the registry no longer has it (expired, cancelled, or its state is stale)."""
        response = self.request("GET", location, ok=(200, 204, 400, 404, 416))
        if response.status_code not in (200, 204):
            return None
        match = re.fullmatch(r"\s*(?:bytes[= ])?0-(\d+)\s*", response.headers.get("range", ""))
        if not match:
            return None
        # "0-0" is distribution's answer for nothing received yet (and, ambiguously, for one byte): start at 0.
        end = int(match.group(1))
        return self._location(response) if response.headers.get("location") else location, end + 1 if end else 0

    def _in_patches(self, repository: str, digest: str, size: int, source: Source, sent: _Sent,
                    stopping: Callable[[], bool]) -> None:
        journal, key, policy = self.journal, (self.host, repository, digest), self.policy
        known = journal.get(*key)
        status = self._status(known.location) if known else None
        if status is None or status[1] > size:
            if known:
                journal.drop(*key)
            location, offset, started = self._open(repository), 0, time.time()
            piece = policy.patch_min
        else:
            (location, offset), started = status, known.started if known else time.time()
            # Pulp answers an upload's status without asking for credentials, so this run's first PATCH may be
            # its first request that needs them, and httpx cannot send a streamed body again after the 401:
            # that PATCH is small and held in memory, so it can.
            piece = CHUNK
        journal.put(*key, OpenUpload(location, offset, started))
        ceiling = max(policy.patch_min, min(policy.patch_max, -(-size // policy.patch_share)))
        moved, began = 0, time.monotonic()
        with source(offset) as chunks:
            stream = _Take(chunks)
            while offset < size:
                if stopping():
                    raise Interrupted(f"stopped with {offset} of {size} bytes of {digest[:19]} sent to {self.host}")
                length = min(piece, size - offset)
                body = sent.through(stream.take(length, self.host))
                response = self.request(
                    "PATCH", location, ok=(202, 400, 405, 415, 501) if offset == 0 else (202,),
                    content=b"".join(body) if length <= CHUNK else body,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(length),
                             "Content-Range": f"{offset}-{offset + length - 1}"})
                if response.status_code != 202:  # the registry takes no chunks: one PUT instead
                    self._no_patch = True
                    with suppress(RegistryError):
                        self.request("DELETE", location, ok=range(200, 600))
                    journal.drop(*key)
                    raise _NoPatch()
                location, offset = self._location(response), offset + length
                journal.put(*key, OpenUpload(location, offset, started))
                moved += length  # the rate over all PATCHes so far: a first one that fits in buffers misleads
                rate = moved / max(time.monotonic() - began, 1e-3)
                piece = int(min(ceiling, max(policy.patch_min, rate * policy.patch_seconds)))
        response = self.request("PUT", _with_digest(location, digest), ok=(201, 404),
                                headers={"Content-Length": "0"})
        journal.drop(*key)
        if response.status_code == 404 and self.blob_size(repository, digest) != size:
            raise RegistryError(f"{self.host}: {digest}: the registry lost the upload at its last step", 404)

    def _location(self, response: httpx.Response) -> str:
        location = response.headers.get("location")
        if not location:
            raise RegistryError(f"{self.host}: the registry opened an upload without a Location")
        return str(response.url.join(location))


def once(chunks: Iterable[bytes], host: str) -> Source:
    """A stream that can be read once, from its start, as a :data:`Source`: an upload of it is never resumed."""
    left = [iter(chunks)]

    def open_(offset: int) -> AbstractContextManager[Iterator[bytes]]:
        if offset or not left:
            raise RegistryError(f"{host}: the blob's source can't be read again")
        return contextlib.nullcontext(left.pop())

    return open_


class _Sent:
    """Counts blob bytes on their way out (for counters and progress bars)."""

    def __init__(self, counters: Counters, progress: Callable[[int], None] | None) -> None:
        self.counters, self.progress, self.total = counters, progress, 0

    def through(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.total += len(chunk)
            self.counters.add(bytes_uploaded=len(chunk))
            if self.progress is not None:
                self.progress(len(chunk))
            yield chunk


class _NoPatch(Exception):
    """The registry refused a PATCH: it takes a blob in one PUT only."""


class _Take:
    """Hands out a stream's bytes in runs of an exact length, keeping the rest of a chunk for the next run."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.rest = chunks, b""

    def take(self, length: int, host: str) -> Iterator[bytes]:
        while length > 0:
            chunk = self.rest
            while not chunk:  # (an empty chunk is not the end)
                following = next(self.chunks, None)
                if following is None:
                    raise RegistryError(f"{host}: the blob's source ended {length} bytes early")
                chunk = following
            head, self.rest = chunk[:length], chunk[length:]
            length -= len(head)
            yield head


def _exactly(chunks: Iterable[bytes], size: int, host: str) -> Iterator[bytes]:
    """The chunks, checked to add up to ``size``: a short source must not end a request early, unnoticed, nor a
    long one run on."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > size:
            raise RegistryError(f"{host}: the source sent more than the {size} bytes its manifest gives")
        yield chunk
    if total != size:
        raise RegistryError(f"{host}: the blob's source ended {size - total} bytes early")


def _in_thread(fn: Callable[[], str]) -> Future[str]:
    """``fn()`` in a thread of its own; the result (or error) is the future's."""
    future: Future[str] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True, name="cacheport-open-upload").start()
    return future


def _with_digest(location: str, digest: str) -> str:
    # An upload's Location carries the registry's own state in its query (distribution's _state): keep it.
    return str(httpx.URL(location).copy_merge_params({"digest": digest}))


def _never() -> bool:
    return False

"""Copying a cache between two store sessions (the engine ``cacheport seed`` runs): its blobs on a bounded pool,
each mounted, found present or streamed (resumably, where the target can), then its manifests, last, so a
target never names a missing blob.

Which caches to copy, and under which names, is the caller's (:mod:`cacheport.ops.seed`); how progress is shown
is the command line's. Stores are reached only through :class:`~cacheport.StoreSession`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import attrs

from cacheport.errors import CacheportError, Interrupted, RegistryError
from cacheport.oci.format import MANIFEST_TYPES, Descriptor, Manifest
from cacheport.records import BlobSource, StoreSession


class Reporter:
    """Where blob progress goes: nowhere (the default). Called from several threads."""

    def planned(self, blobs: int, size: int) -> None:
        """More work became known: ``blobs`` blobs of ``size`` bytes in all, that may have to be sent."""

    def advance(self, n: int) -> None:
        """``n`` more bytes went out."""

    def blob_done(self, size: int, sent: int) -> None:
        """A planned blob of ``size`` bytes is there now; ``sent`` bytes of it went out (0: present or mounted)."""


@attrs.frozen
class Tally:
    """What copying one cache's blobs did (or, in a dry run, would do).

    Attributes:
        uploaded: blobs sent.
        mounted: blobs mounted from the source repository.
        present: blobs the target already had (or that another cache of the same run just copied).
        bytes_uploaded: bytes sent; a resumed blob counts only what this run sent.
        resumed: uploaded blobs that continued an upload an earlier run had left open.
    """

    uploaded: int = 0
    mounted: int = 0
    present: int = 0
    bytes_uploaded: int = 0
    resumed: int = 0


class Copier:
    """The blobs of one run on a bounded pool; a blob that several caches need in one target is copied once, and
    the others find it present.

    Caches claim their blobs in the order they were given (``index``: each waits for the one before it to have
    claimed), so which cache a shared blob is counted for does not depend on timing; the copying itself overlaps.
    ``stop`` set: no new blob starts, and an upload in flight stops at a point it resumes from.
    """

    def __init__(self, jobs: int, reporter: Reporter, stop: threading.Event, caches: int = 0) -> None:
        self.pool = ThreadPoolExecutor(max(1, jobs), thread_name_prefix="cacheport-blob")
        self.reporter, self.stop = reporter, stop
        self.lock = threading.Lock()
        self.started: dict[tuple[int, str], Future[tuple[str, int]]] = {}
        self.claimed = [threading.Event() for _ in range(caches)]

    def my_turn(self, index: int | None) -> None:
        """Wait until the caches before ``index`` have claimed their blobs."""
        if index:
            while not self.claimed[index - 1].wait(0.5):
                if self.stop.is_set():
                    raise Interrupted("interrupted")

    def claimed_mine(self, index: int | None) -> None:
        if index is not None:
            self.claimed[index].set()

    def close(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self.pool.submit(fn, *args)

    def cache(self, source: StoreSession, target: StoreSession, manifest: Manifest, out: Manifest, name: str,
              index: int | None = None) -> Tally:
        """Copy one cache: the blobs ``manifest`` needs that the target lacks, an image index's own manifests,
        then ``out`` (``manifest``, or its conversion) as ``name``. Every blob is waited for, so a failed one
        leaves the rest copied; the first failure is raised then, and the manifest is not written."""
        blobs, children = tree(source, manifest)
        counts = {"uploaded": 0, "mounted": 0, "present": 0}
        size = resumed = 0
        self.my_turn(index)
        # Largest first, so that no big blob starts last and runs on alone (the results keep the cache's order).
        first = {b.digest: self.blob(source, target, b) for b in sorted(blobs, key=lambda b: -b.size)}
        started = [(blob, *first[blob.digest]) for blob in blobs]
        self.claimed_mine(index)
        errors: list[BaseException] = []
        for blob, mine, future in started:
            try:
                how, sent = future.result()
            except (CacheportError, CancelledError) as exc:
                errors.append(exc)
                continue
            how = how if mine else "present"
            counts[how] += 1
            if mine and how == "uploaded":
                size += sent
                resumed += sent < blob.size
        stop = next((e for e in errors if isinstance(e, Interrupted | CancelledError)), None)
        if stop is not None or self.stop.is_set():
            raise Interrupted("interrupted")
        if errors:
            raise errors[0]
        for child in children:  # an image index's own manifests, before the index that names them
            self._put_manifest(source, target, child.digest, child, blobs)
        self._put_manifest(source, target, name, out, blobs)
        return Tally(counts["uploaded"], counts["mounted"], counts["present"], size, resumed)

    def _put_manifest(self, source: StoreSession, target: StoreSession, reference: str, manifest: Manifest,
                      blobs: list[Descriptor]) -> None:
        """Write a manifest whose blobs are all there. A registry that keeps blobs apart from its repositories
        (Pulp, with two caches copied into one repository at once) can call a blob present, or mounted, and still
        refuse a manifest that names it: such blobs are sent again, whole, and the manifest with them, twice at
        the most."""
        for attempt in range(3):
            try:
                target.put_manifest(reference, manifest)
                return
            except RegistryError as exc:
                if exc.code not in _BLOB_UNKNOWN or attempt == 2 or self.stop.is_set():
                    raise
                named = [b for b in blobs if b.digest in str(exc)] or blobs
                for blob in named:
                    copy_blob(source, target, blob, self.reporter.advance, self.stop.is_set, again=True)
                self.stop.wait(0.5 * (attempt + 1))

    def would_copy(self, source: StoreSession, target: StoreSession, manifest: Manifest) -> Tally:
        """What :meth:`cache` would do, asking the target only which blobs it has."""
        blobs, _children = tree(source, manifest)
        counts = {"uploaded": 0, "mounted": 0, "present": 0}
        size = 0
        sizes = [self.submit(target.blob_size, blob.digest) for blob in blobs]
        for blob, found in zip(blobs, sizes, strict=True):
            how = ("present" if found.result() is not None
                   else "mounted" if source.host == target.host else "uploaded")
            counts[how] += 1
            size += blob.size if how == "uploaded" else 0
        return Tally(counts["uploaded"], counts["mounted"], counts["present"], size)

    def blob(self, source: StoreSession, target: StoreSession,
             blob: Descriptor) -> tuple[bool, Future[tuple[str, int]]]:
        """The copy of a blob into ``target``, and whether this call started it (else another cache's did)."""
        key = (id(target), blob.digest)
        with self.lock:
            if key in self.started:
                return False, self.started[key]
            self.reporter.planned(1, blob.size)
            future = self.started[key] = self.pool.submit(self._copy, source, target, blob)
        return True, future

    def _copy(self, source: StoreSession, target: StoreSession, blob: Descriptor) -> tuple[str, int]:
        if self.stop.is_set():
            raise Interrupted("interrupted before a blob was started")
        how, sent = copy_blob(source, target, blob, self.reporter.advance, self.stop.is_set)
        self.reporter.blob_done(blob.size, sent)
        return how, sent


def copy_blob(source: StoreSession, target: StoreSession, blob: Descriptor,
              progress: Callable[[int], None] | None = None,
              stopping: Callable[[], bool] | None = None, again: bool = False) -> tuple[str, int]:
    """Make a blob present in ``target``: ``mounted`` (no bytes moved), ``present`` (already was) or ``uploaded``,
    with the bytes sent. The target reads the source again from an offset when it resumes an upload.

    A mount is tried first: where one is possible it is one round trip whether or not the target already had
    the blob (a blob already there counts as mounted). ``again``: upload it whatever the target says it has.
    """
    if not again and target.mount_from(source, blob.digest):
        return "mounted", 0
    if not again and target.blob_size(blob.digest) is not None:
        return "present", 0
    sent = 0

    def counted(n: int) -> None:
        nonlocal sent
        sent += n
        if progress is not None:
            progress(n)

    opener: Callable[[int], AbstractContextManager[Any]] = partial(source.open_blob, blob.digest)
    target.put_blob(blob, BlobSource(opener, stopping or _never), counted)
    return "uploaded", sent


def tree(source: StoreSession, manifest: Manifest) -> tuple[list[Descriptor], list[Manifest]]:
    """The blobs a manifest needs, and (for an image index) its child manifests, children before parents."""
    blobs: dict[str, Descriptor] = {}
    children: list[Manifest] = []
    for descriptor in manifest.descriptors():
        if descriptor.media_type in MANIFEST_TYPES:
            child = source.get_manifest(descriptor.digest)
            if child is None:
                raise CacheportError(f"{source.host}: {descriptor.digest} is missing")
            sub_blobs, sub_children = tree(source, child)
            blobs.update((b.digest, b) for b in sub_blobs)
            children += [*sub_children, child]
        else:
            blobs.setdefault(descriptor.digest, descriptor)
    return list(blobs.values()), children


# What a registry answers a manifest naming a blob it lacks: the distribution spec's code, and Pulp's.
_BLOB_UNKNOWN = ("MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN")


def _never() -> bool:
    return False

"""Copying BuildKit caches from one backend's store to another's, ahead of a switch (``cacheport seed``).

Which caches come from the stores themselves (the name each backend gives a branch's cache); the bytes go
through the stores' sessions, so any pair works: registry to registry (mounted on one host), a local
directory to a registry and back. Blobs first, the manifest last, so a target never references a missing
blob, and running it again resumes. An index-format cache becomes an image manifest when the target store
holds that format (Pulp accepts nothing else).

Work runs on bounded thread pools: caches ``jobs`` at a time, and their blobs ``jobs`` at a time, a blob two
caches share copied once. Results are reported in the order the caches were given, whatever order they finish
in. A stop (Ctrl-C, SIGTERM) lets each upload reach a point it can resume from, then raises
:class:`~cacheport.errors.Interrupted`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from functools import partial
from typing import Any

import attrs

from cacheport.errors import CacheportError, Interrupted
from cacheport.oci.format import MANIFEST_TYPES, Descriptor, Manifest, to_image_manifest
from cacheport.ops import DEFAULT_JOBS
from cacheport.records import BlobSource, CacheStore, StoreSession


@attrs.frozen
class Side:
    """One end of a copy: a store and the name of a cache in it.

    Attributes:
        backend: the backend's name.
        store: the backend's store.
        name: the cache's name there (a tag, an OCI layout ref name).
    """

    backend: str
    store: CacheStore = attrs.field(eq=False, repr=False)
    name: str

    @property
    def location(self) -> str:
        return self.store.location

    def __str__(self) -> str:
        return f"{self.store.location}:{self.name}"


@attrs.frozen
class Pair:
    """One cache to copy.

    Attributes:
        branch: the branch both names belong to, or None (a name no branch produces, copied by ``--all``).
        source: where it is read.
        target: where it is written.
    """

    branch: str | None
    source: Side
    target: Side

    @property
    def name(self) -> str:
        return self.branch if self.branch is not None else f"tag {self.source.name}"


@attrs.frozen
class Outcome:
    """What happened to one pair.

    Attributes:
        pair: the pair.
        status: ``copied``, ``up-to-date``, ``would-copy`` (dry run) or ``failed``.
        converted: the index was turned into an image manifest.
        uploaded: blobs sent (or that would be sent).
        mounted: blobs mounted from the source repository (or that would be tried).
        present: blobs the target already had (or that another cache of the same run just copied).
        resumed: uploaded blobs that continued an upload an earlier run had left open.
        bytes_uploaded: bytes sent (or that would be sent); a resumed blob counts only what this run sent.
        seconds: wall time.
        error: why it failed, in one line.
    """

    pair: Pair
    status: str
    converted: bool = False
    uploaded: int = 0
    mounted: int = 0
    present: int = 0
    bytes_uploaded: int = 0
    seconds: float = 0.0
    error: str = ""
    resumed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "branch": self.pair.branch,
            "source": str(self.pair.source),
            "target": str(self.pair.target),
            "status": self.status,
            "converted": self.converted,
            "blobs": {"uploaded": self.uploaded, "mounted": self.mounted, "present": self.present,
                      "resumed": self.resumed},
            "bytes_uploaded": self.bytes_uploaded,
            "seconds": round(self.seconds, 3),
            "error": self.error or None,
        }


# --- which caches ----------------------------------------------------------------------------------------------


def branch_pairs(old: tuple[str, CacheStore], new: tuple[str, CacheStore], branches: Sequence[str]) -> list[Pair]:
    """For each branch: the old backend's cache for it, copied to the new backend's name for it."""
    (old_name, old_store), (new_name, new_store) = old, new
    return _checked([Pair(b, Side(old_name, old_store, old_store.name_for(b)),
                          Side(new_name, new_store, new_store.name_for(b))) for b in dict.fromkeys(branches)])


def name_pairs(old: tuple[str, CacheStore], new: tuple[str, CacheStore], names: Iterable[str],
               default_branch: str | None = None) -> list[Pair]:
    """``--all``: every cache the old store holds, under the name the new backend gives the same branch.

    A name that belongs to no branch of the old backend's (another key's, a hand-made tag) keeps its name,
    unless the new backend keeps one fixed cache, which then receives only the old backend's own. The one
    cache of an old store that keeps one for every branch (a local directory's ``latest``) goes to the new
    backend's name for ``default_branch``: its own name is one no build of the new backend reads.
    """
    (old_name, old_store), (new_name, new_store) = old, new
    pairs = []
    for name in names:
        branch = old_store.branch_of(name)
        if branch is None and old_store.fixed and not new_store.fixed and name == old_store.name_for(""):
            if not default_branch:
                raise CacheportError(f"{old_name} keeps one cache for every branch, and the default branch is "
                                     f"unknown here, so --all can't tell which of {new_name}'s names to copy it "
                                     "to; name the branch: --branch BRANCH")
            branch = default_branch
        if branch is not None:
            target = new_store.name_for(branch)
        elif new_store.fixed:
            continue
        else:
            target = name
        pairs.append(Pair(branch, Side(old_name, old_store, name), Side(new_name, new_store, target)))
    return _checked(pairs)


def _checked(pairs: list[Pair]) -> list[Pair]:
    seen: dict[tuple[str, str], Pair] = {}
    for pair in pairs:
        if (pair.source.location, pair.source.name) == (pair.target.location, pair.target.name):
            raise CacheportError(f"{pair.name}: source and target are the same cache {pair.source}; "
                                 "nothing to copy")
        key = (pair.target.location, pair.target.name)
        if key in seen:
            raise CacheportError(f"{seen[key].name} and {pair.name} would both be copied to {pair.target}; "
                                 "seed them one at a time with --branch")
        seen[key] = pair
    return pairs


# --- copying ---------------------------------------------------------------------------------------------------


class Reporter:
    """Where progress goes besides the line per cache: nowhere (the default). Called from several threads."""

    def planned(self, blobs: int, size: int) -> None:
        """More work became known: ``blobs`` blobs of ``size`` bytes in all, that may have to be sent."""

    def advance(self, n: int) -> None:
        """``n`` more bytes went out."""

    def blob_done(self, size: int, sent: int) -> None:
        """A planned blob of ``size`` bytes is there now; ``sent`` bytes of it went out (0: present or mounted)."""

    def done(self, outcome: Outcome) -> None:
        """A cache is finished."""


class Totals(Reporter):
    """Bytes and blobs done and to do, the rate and what is left, kept under a lock for the reporters below."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock, self.lock = clock, threading.Lock()
        self.blobs = self.blobs_done = self.size = self.sent = 0
        self.began: float | None = None

    def planned(self, blobs: int, size: int) -> None:
        with self.lock:
            self.blobs += blobs
            self.size += size
        self.changed()

    def advance(self, n: int) -> None:
        with self.lock:
            if self.began is None:
                self.began = self.clock()
            self.sent += n
        self.changed()

    def blob_done(self, size: int, sent: int) -> None:
        with self.lock:
            self.blobs_done += 1
            self.size += sent - size  # what is left to send is what it took (less on a resume, none if present)
        self.changed()

    def changed(self) -> None:
        """The totals moved (a hook for displays)."""

    def line(self) -> str:
        """``412.3 MB of 1.2 GB sent (34%), 7 of 13 blobs, 85.1 MB/s, about 9s left``."""
        from cacheport.render import human_size

        with self.lock:
            sent, size, done, blobs = self.sent, max(self.size, self.sent), self.blobs_done, self.blobs
            elapsed = self.clock() - self.began if self.began is not None else 0.0
        text = f"{human_size(sent)} of {human_size(size)} sent"
        if size:
            text += f" ({100 * sent // size}%)"
        text += f", {done} of {blobs} blobs"
        if elapsed > 0 and sent:
            rate = sent / elapsed
            text += f", {human_size(int(rate))}/s, about {max(0, round((size - sent) / rate))}s left"
        return text


class LineReporter(Totals):
    """Plain progress lines for logs (CI): one every ``every`` seconds while a long copy runs, none for a short one."""

    def __init__(self, write: Callable[[str], None], every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        self.write, self.every = write, every
        self.last = clock()

    def changed(self) -> None:
        now = self.clock()
        with self.lock:
            if now - self.last < self.every:
                return
            self.last = now
        self.write(f"seed: {self.line()}")


class BarReporter(Totals):
    """One rich progress bar on a terminal: bytes sent of bytes to send, blobs done, rate and time left.

    ``progress`` is a ``rich.progress.Progress`` (thread-safe); rich is imported by the caller only.
    """

    def __init__(self, progress: Any) -> None:
        super().__init__()
        self.progress = progress
        self.task = progress.add_task("blobs 0/0", total=None)

    def changed(self) -> None:
        with self.lock:
            total = max(self.size, self.sent)
            description, completed = f"blobs {self.blobs_done}/{self.blobs}", self.sent
        self.progress.update(self.task, description=description, total=total or None, completed=completed)


class _Copier:
    """The blobs of one seed run on a bounded pool; a blob that several caches need in one target is copied
    once, and the others find it present.

    Caches claim their blobs in the order they were given (each waits for the one before it to have claimed),
    so which cache a shared blob is counted for does not depend on timing; the copying itself overlaps.
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
              stopping: Callable[[], bool] | None = None) -> tuple[str, int]:
    """Make a blob present in ``target``: ``mounted`` (no bytes moved), ``present`` (already was) or ``uploaded``,
    with the bytes sent. The target reads the source again from an offset when it resumes an upload.

    A mount is tried first: where one is possible it is one round trip whether or not the target already had
    the blob (a blob already there counts as mounted).
    """
    if target.mount_from(source, blob.digest):
        return "mounted", 0
    if target.blob_size(blob.digest) is not None:
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


def _never() -> bool:
    return False


def copy_pair(pair: Pair, source: StoreSession, target: StoreSession, *, dry_run: bool = False,
              reporter: Reporter | None = None, jobs: int = DEFAULT_JOBS, copier: _Copier | None = None,
              index: int | None = None) -> Outcome:
    """Copy one cache: the blobs it needs that the target lacks (``jobs`` at a time), then its manifest
    (converted if needed).

    Never raises for the stores' sake: a failure is an Outcome with ``status="failed"`` and a reason. Only a
    stop does (:class:`~cacheport.errors.Interrupted`).
    """
    reporter = reporter or Reporter()
    if copier is None:
        own = _Copier(jobs, reporter, threading.Event())
        try:
            return copy_pair(pair, source, target, dry_run=dry_run, reporter=reporter, copier=own)
        finally:
            own.close()
    began = time.monotonic()
    try:
        return _copy_pair(pair, source, target, dry_run, reporter, copier, index, began)
    finally:
        copier.claimed_mine(index)


def _copy_pair(pair: Pair, source: StoreSession, target: StoreSession, dry_run: bool, reporter: Reporter,
               copier: _Copier, index: int | None, began: float) -> Outcome:
    try:
        # The target's current digest is asked for while the source manifest comes: one round trip, not two.
        current = copier.submit(target.manifest_digest, pair.target.name)
        manifest = source.get_manifest(pair.source.name)
        if manifest is None:
            raise CacheportError(f"no cache at {pair.source}")
        convert = pair.target.store.format == "image-manifest" and manifest.is_index
        out = to_image_manifest(manifest, oci=pair.target.store.oci_mediatypes) if convert else manifest
        if current.result() == out.digest:
            outcome = Outcome(pair, "up-to-date", convert)
            reporter.done(outcome)
            return outcome
        blobs, children = _tree(source, manifest)
        if dry_run:
            outcome = _dry_run(pair, source, target, blobs, copier, convert, began)
            reporter.done(outcome)
            return outcome
        counts = {"uploaded": 0, "mounted": 0, "present": 0}
        size = resumed = 0
        copier.my_turn(index)
        # Largest first, so that no big blob starts last and runs on alone (the results keep the cache's order).
        first = {b.digest: copier.blob(source, target, b) for b in sorted(blobs, key=lambda b: -b.size)}
        started = [(blob, *first[blob.digest]) for blob in blobs]
        copier.claimed_mine(index)
        errors: list[BaseException] = []
        for blob, mine, future in started:  # every blob is waited for, so a failed one leaves the rest copied
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
        if stop is not None or copier.stop.is_set():
            raise Interrupted("interrupted")
        if errors:
            raise errors[0]
        for child in children:  # an image index's own manifests, before the index that names them
            target.put_manifest(child.digest, child)
        target.put_manifest(pair.target.name, out)
        outcome = Outcome(pair, "copied", convert, counts["uploaded"], counts["mounted"], counts["present"], size,
                          time.monotonic() - began, resumed=resumed)
    except Interrupted:
        raise
    except CacheportError as exc:
        outcome = Outcome(pair, "failed", seconds=time.monotonic() - began, error=str(exc))
    reporter.done(outcome)
    return outcome


def _dry_run(pair: Pair, source: StoreSession, target: StoreSession, blobs: list[Descriptor], copier: _Copier,
             convert: bool, began: float) -> Outcome:
    counts = {"uploaded": 0, "mounted": 0, "present": 0}
    size = 0
    sizes = [copier.submit(target.blob_size, blob.digest) for blob in blobs]
    for blob, found in zip(blobs, sizes, strict=True):
        how = ("present" if found.result() is not None
               else "mounted" if source.host == target.host else "uploaded")
        counts[how] += 1
        size += blob.size if how == "uploaded" else 0
    return Outcome(pair, "would-copy", convert, counts["uploaded"], counts["mounted"], counts["present"], size,
                   time.monotonic() - began)


def _tree(source: StoreSession, manifest: Manifest) -> tuple[list[Descriptor], list[Manifest]]:
    """The blobs a manifest needs, and (for an image index) its child manifests, children before parents."""
    blobs: dict[str, Descriptor] = {}
    children: list[Manifest] = []
    for descriptor in manifest.descriptors():
        if descriptor.media_type in MANIFEST_TYPES:
            child = source.get_manifest(descriptor.digest)
            if child is None:
                raise CacheportError(f"{source.host}: {descriptor.digest} is missing")
            sub_blobs, sub_children = _tree(source, child)
            blobs.update((b.digest, b) for b in sub_blobs)
            children += [*sub_children, child]
        else:
            blobs.setdefault(descriptor.digest, descriptor)
    return list(blobs.values()), children


def seed(pairs: Sequence[Pair], *, dry_run: bool = False, reporter: Reporter | None = None,
         on_done: Callable[[Outcome], None] | None = None, jobs: int = DEFAULT_JOBS) -> list[Outcome]:
    """Copy every pair, ``jobs`` caches at a time (and ``jobs`` blobs at a time), opening each store once.

    Each store is reached (its names listed) while the first copies start, and that verdict comes before any
    result, so an outage is one error rather than one failure per cache. Outcomes come back, and ``on_done``
    is called, in the order of ``pairs``. A KeyboardInterrupt (Ctrl-C, or the CLI's SIGTERM) stops new work,
    lets uploads in flight reach a point they resume from, and raises :class:`~cacheport.errors.Interrupted`.
    """
    reporter = reporter or Reporter()
    stop = threading.Event()
    outcomes: list[Outcome] = []
    with ExitStack() as stack:
        sessions: dict[str, StoreSession] = {}
        for side in (s for p in pairs for s in (p.source, p.target)):
            if side.location not in sessions:
                sessions[side.location] = stack.enter_context(side.store.open())
        copier = _Copier(jobs, reporter, stop, len(pairs))
        stack.callback(copier.close)
        caches = ThreadPoolExecutor(max(1, jobs), thread_name_prefix="cacheport-cache")
        stack.callback(caches.shutdown)
        try:
            # Reaching the stores overlaps the first copies (a round trip saved); their verdict comes first.
            checks = [copier.submit(session.names) for session in sessions.values()]
            futures = [caches.submit(copy_pair, pair, sessions[pair.source.location], sessions[pair.target.location],
                                     dry_run=dry_run, reporter=reporter, copier=copier, index=i)
                       for i, pair in enumerate(pairs)]
            try:
                for check in checks:
                    check.result()
            except CacheportError:
                stop.set()
                caches.shutdown(wait=True, cancel_futures=True)
                raise
            for future in futures:
                outcome = future.result()
                outcomes.append(outcome)
                if on_done is not None:
                    on_done(outcome)
        except (KeyboardInterrupt, Interrupted):
            stop.set()
            caches.shutdown(wait=True, cancel_futures=True)
            copier.close(cancel=True)
            raise Interrupted(f"interrupted after {len(outcomes)} of {len(pairs)} cache(s); what was copied is "
                              "kept, and running the same command again resumes (large blobs mid-blob)") from None
    return outcomes


def describe(outcome: Outcome) -> str:
    """One line for a person."""
    from cacheport.render import human_size

    pair = outcome.pair
    where = f"{pair.name}: {pair.source} → {pair.target}"
    if outcome.status == "failed":
        return f"✗ {where}: {outcome.error}"
    conversion = " (index converted to an image manifest)" if outcome.converted else ""
    if outcome.status == "up-to-date":
        return f"= {where}: up to date{conversion}"
    verb = {"copied": ("uploaded", "mounted", "already there"),
            "would-copy": ("to upload", "to mount", "already there")}[outcome.status]
    parts = [f"{outcome.uploaded} blob(s) {verb[0]} ({human_size(outcome.bytes_uploaded)})"]
    if outcome.mounted:
        parts.append(f"{outcome.mounted} {verb[1]}")
    if outcome.present:
        parts.append(f"{outcome.present} {verb[2]}")
    mark = "✓" if outcome.status == "copied" else "~"
    tail = f" in {outcome.seconds:.1f}s" if outcome.status == "copied" else ", nothing written (dry run)"
    return f"{mark} {where}: {', '.join(parts)}{conversion}{tail}"

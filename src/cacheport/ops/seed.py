"""Copying BuildKit caches from one backend's store to another's, ahead of a switch (``cacheport seed``).

Which caches come from the stores themselves (the name each backend gives a branch's cache); the bytes go
through the stores' sessions, so any pair works: registry to registry (mounted on one host), a local
directory to a registry and back. Blobs first, the manifest last, so a target never references a missing
blob, and running it again resumes. An index-format cache becomes an image manifest when the target store
holds that format (Pulp accepts nothing else).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from typing import Any

import attrs

from cacheport.errors import CacheportError
from cacheport.oci.format import MANIFEST_TYPES, Descriptor, Manifest, to_image_manifest
from cacheport.records import CacheStore, StoreSession


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
        present: blobs the target already had.
        bytes_uploaded: bytes sent (or that would be sent).
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

    def as_dict(self) -> dict[str, Any]:
        return {
            "branch": self.pair.branch,
            "source": str(self.pair.source),
            "target": str(self.pair.target),
            "status": self.status,
            "converted": self.converted,
            "blobs": {"uploaded": self.uploaded, "mounted": self.mounted, "present": self.present},
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


def name_pairs(old: tuple[str, CacheStore], new: tuple[str, CacheStore], names: Iterable[str]) -> list[Pair]:
    """``--all``: every cache the old store holds, under the name the new backend gives the same branch.

    A name that belongs to no branch of the old backend's (another key's, a hand-made tag) keeps its name,
    unless the new backend keeps one fixed cache, which then receives only the old backend's own.
    """
    (old_name, old_store), (new_name, new_store) = old, new
    pairs = []
    for name in names:
        branch = old_store.branch_of(name)
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
    """Where progress goes: a line per cache (the default), or a progress bar (:class:`BarReporter`)."""

    def start(self, pair: Pair, total: int) -> None:
        """A pair's copy begins; ``total`` bytes may have to be sent."""

    def advance(self, n: int) -> None:
        """``n`` more bytes went out."""

    def done(self, outcome: Outcome) -> None:
        """A pair is finished."""


class BarReporter(Reporter):
    """A rich progress bar on a terminal (stderr), one task per cache."""

    def __init__(self, progress: Any) -> None:
        self.progress, self.task = progress, None

    def start(self, pair: Pair, total: int) -> None:
        self.task = self.progress.add_task(pair.name, total=total or None)

    def advance(self, n: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)

    def done(self, outcome: Outcome) -> None:
        if self.task is not None:
            self.progress.update(self.task, total=max(outcome.bytes_uploaded, 1),
                                 completed=max(outcome.bytes_uploaded, 1))
        self.task = None


def copy_blob(source: StoreSession, target: StoreSession, blob: Descriptor,
              progress: Callable[[int], None] | None = None) -> str:
    """Make a blob present in ``target``: ``present`` (already was), ``mounted`` (no bytes moved) or ``uploaded``."""
    if target.blob_size(blob.digest) is not None:
        return "present"
    if target.mount_from(source, blob.digest):
        return "mounted"
    with source.open_blob(blob.digest) as chunks:
        target.put_blob(blob, chunks, progress)
    return "uploaded"


def copy_pair(pair: Pair, source: StoreSession, target: StoreSession, *, dry_run: bool = False,
              reporter: Reporter | None = None) -> Outcome:
    """Copy one cache: the blobs it needs that the target lacks, then its manifest (converted if needed).

    Never raises for the stores' sake: a failure is an Outcome with ``status="failed"`` and a reason.
    """
    reporter = reporter or Reporter()
    began = time.monotonic()
    try:
        manifest = source.get_manifest(pair.source.name)
        if manifest is None:
            raise CacheportError(f"no cache at {pair.source}")
        convert = pair.target.store.format == "image-manifest" and manifest.is_index
        out = to_image_manifest(manifest, oci=pair.target.store.oci_mediatypes) if convert else manifest
        if target.manifest_digest(pair.target.name) == out.digest:
            outcome = Outcome(pair, "up-to-date", convert)
            reporter.done(outcome)
            return outcome
        blobs, children = _tree(source, manifest)
        counts = {"uploaded": 0, "mounted": 0, "present": 0}
        size = 0
        if dry_run:
            for blob in blobs:
                how = ("present" if target.blob_size(blob.digest) is not None
                       else "mounted" if source.host == target.host else "uploaded")
                counts[how] += 1
                size += blob.size if how == "uploaded" else 0
            outcome = Outcome(pair, "would-copy", convert, counts["uploaded"], counts["mounted"], counts["present"],
                              size, time.monotonic() - began)
            reporter.done(outcome)
            return outcome
        reporter.start(pair, sum(b.size for b in blobs))
        for blob in blobs:
            how = copy_blob(source, target, blob, reporter.advance)
            counts[how] += 1
            size += blob.size if how == "uploaded" else 0
        for child in children:  # an image index's own manifests, before the index that names them
            target.put_manifest(child.digest, child)
        target.put_manifest(pair.target.name, out)
        outcome = Outcome(pair, "copied", convert, counts["uploaded"], counts["mounted"], counts["present"], size,
                          time.monotonic() - began)
    except CacheportError as exc:
        outcome = Outcome(pair, "failed", seconds=time.monotonic() - began, error=str(exc))
    reporter.done(outcome)
    return outcome


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
         on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Copy every pair, in order, opening each store once.

    Each store is reached first (its names listed), so an outage is one error rather than one failure per cache.
    """
    outcomes = []
    with ExitStack() as stack:
        sessions: dict[str, StoreSession] = {}
        for side in (s for p in pairs for s in (p.source, p.target)):
            if side.location not in sessions:
                session = stack.enter_context(side.store.open())
                session.names()
                sessions[side.location] = session
        for pair in pairs:
            outcome = copy_pair(pair, sessions[pair.source.location], sessions[pair.target.location],
                                dry_run=dry_run, reporter=reporter)
            outcomes.append(outcome)
            if on_done is not None:
                on_done(outcome)
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

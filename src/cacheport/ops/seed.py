"""Which caches ``cacheport seed`` copies, and the run that copies them.

Which caches come from the stores themselves (the name each backend gives a branch's cache), so any pair of
stores works: registry to registry (mounted on one host), a local directory to a registry and back. An
index-format cache becomes an image manifest when the target store holds that format (Pulp accepts nothing
else). A cache's mounts (``<name>.mounts``), where the old store has them, go with it, to the mounts name beside
the new name. The copying is :mod:`cacheport.oci.copy`'s: caches ``jobs`` at a time, and their blobs ``jobs`` at a
time, a blob two caches share copied once. Results are reported in the order the caches were given, whatever
order they finish in. A stop (Ctrl-C, SIGTERM) lets each upload reach a point it can resume from, then raises
:class:`~cacheport.errors.Interrupted`. How progress is shown is the command line's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import attrs

from cacheport.errors import CacheportError, Interrupted
from cacheport.mounts.artifact import is_mounts_name, mounts_name
from cacheport.oci.copy import Copier, Reporter
from cacheport.oci.format import to_image_manifest
from cacheport.ops import DEFAULT_JOBS
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
        what = self.branch if self.branch is not None else f"tag {self.source.name}"
        return f"{what} (mounts)" if is_mounts_name(self.source.name) and self.branch is not None else what


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
    names = list(names)
    pairs = []
    for name in names:
        if is_mounts_name(name):
            continue  # they go with their cache (below), or not at all when it is gone
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
    return _checked(with_mounts(pairs, set(names).__contains__))


def with_mounts(pairs: Sequence[Pair], has: Callable[[str], bool]) -> list[Pair]:
    """The pairs, each followed by one for its cache mounts when the old store ``has`` them (by name): from
    ``<old name>.mounts`` to ``<new name>.mounts``."""
    out = []
    for pair in pairs:
        out.append(pair)
        if is_mounts_name(pair.source.name) or not has(mounts_name(pair.source.name)):
            continue
        out.append(attrs.evolve(pair, source=attrs.evolve(pair.source, name=mounts_name(pair.source.name)),
                                target=attrs.evolve(pair.target, name=mounts_name(pair.target.name))))
    return out


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


def copy_pair(pair: Pair, source: StoreSession, target: StoreSession, *, dry_run: bool = False,
              reporter: Reporter | None = None, jobs: int = DEFAULT_JOBS, copier: Copier | None = None,
              index: int | None = None) -> Outcome:
    """Copy one cache: the blobs it needs that the target lacks (``jobs`` at a time), then its manifest
    (converted if needed).

    Never raises for the stores' sake: a failure is an Outcome with ``status="failed"`` and a reason. Only a
    stop does (:class:`~cacheport.errors.Interrupted`).
    """
    reporter = reporter or Reporter()
    if copier is None:
        own = Copier(jobs, reporter, threading.Event())
        try:
            return copy_pair(pair, source, target, dry_run=dry_run, reporter=reporter, copier=own)
        finally:
            own.close()
    began = time.monotonic()
    try:
        return _copy_pair(pair, source, target, dry_run, copier, index, began)
    finally:
        copier.claimed_mine(index)


def _copy_pair(pair: Pair, source: StoreSession, target: StoreSession, dry_run: bool, copier: Copier,
               index: int | None, began: float) -> Outcome:
    try:
        # The target's current digest is asked for while the source manifest comes: one round trip, not two.
        current = copier.submit(target.manifest_digest, pair.target.name)
        manifest = source.get_manifest(pair.source.name)
        if manifest is None:
            raise CacheportError(f"no cache at {pair.source}")
        convert = pair.target.store.format == "image-manifest" and manifest.is_index
        out = to_image_manifest(manifest, oci=pair.target.store.oci_mediatypes) if convert else manifest
        if current.result() == out.digest:
            if not convert:
                _carry_signature(source, target, manifest.digest, copier)
            return Outcome(pair, "up-to-date", convert)
        if dry_run:
            status, tally = "would-copy", copier.would_copy(source, target, manifest)
        else:
            status, tally = "copied", copier.cache(source, target, manifest, out, pair.target.name, index)
            if not convert:
                _carry_signature(source, target, manifest.digest, copier)
        return Outcome(pair, status, convert, tally.uploaded, tally.mounted, tally.present, tally.bytes_uploaded,
                       time.monotonic() - began, resumed=tally.resumed)
    except Interrupted:
        raise
    except CacheportError as exc:
        return Outcome(pair, "failed", seconds=time.monotonic() - began, error=str(exc))


def _carry_signature(source: StoreSession, target: StoreSession, digest: str, copier: Copier) -> None:
    """A copied cache's signature (``trust = "signed"``) goes with it, when the copy kept its digest (a converted
    cache is another manifest, which no protected pipeline signed)."""
    from cacheport.signing import signature_tag

    if not digest.startswith("sha256:"):
        return
    name = signature_tag(digest)
    signature = source.get_manifest(name)
    if signature is not None and target.manifest_digest(name) != signature.digest:
        copier.cache(source, target, signature, signature, name)


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
        copier = Copier(jobs, reporter, stop, len(pairs))
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

"""The caches in a backend's store: what is there (``status``) and what to delete (``prune``).

Everything goes through the backend's :class:`~cacheport.CacheStore`; nothing here knows a cache type.
Manifests are read, and tags deleted, ``jobs`` at a time; results keep the store's (sorted) order. A branch's
cache mounts (``<name>.mounts``) are listed with its cache and go with it; mounts whose cache is gone are a row of
their own (format ``mounts``), decided by the branch they belong to, never taken for a branch.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import attrs

from cacheport.context import Context
from cacheport.errors import ConfigError
from cacheport.mounts.artifact import created, is_mounts, layer_name_of, mounts_name
from cacheport.oci.format import cache_format, created_at
from cacheport.ops import LOOKUP_JOBS
from cacheport.records import CacheStore, StoreSession
from cacheport.refs import same_branch

_DURATION = re.compile(r"(\d+)([smhdw])\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_T = TypeVar("_T")
_R = TypeVar("_R")


@attrs.frozen
class CacheTag:
    """One tag in a cache repository.

    Attributes:
        tag: the tag (a registry's) or name (a directory's).
        digest: the manifest it points at.
        format: ``index`` (BuildKit's default), ``image-manifest``, ``mounts`` (cache mounts whose cache is
            not there), or None when it is not a cache.
        size: bytes of everything the manifest points at.
        updated: the newest ``buildkit/createdat`` among its layers, when BuildKit recorded one (for mounts:
            when they were saved).
        role: ``this branch``, ``MR target``, ``default branch`` or empty.
        mounts: the cache mounts stored beside this cache (``<tag>.mounts``), which go with it; or None.
    """

    tag: str
    digest: str
    format: str | None
    size: int
    updated: datetime | None
    role: str = ""
    mounts: CacheTag | None = None

    @property
    def branch_tag(self) -> str:
        """The name its branch's cache has: its own, or for mounts, the name of the cache they sit beside."""
        return (layer_name_of(self.tag) or self.tag) if self.format == "mounts" else self.tag

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tag": self.tag, "digest": self.digest, "format": self.format, "size": self.size,
                               "updated": self.updated.isoformat() if self.updated else None, "role": self.role or None}
        if self.format != "mounts":
            out["mounts"] = self.mounts.as_dict() if self.mounts else None
        return out


def roles(context: Context, store: CacheStore) -> dict[str, str]:
    """Name -> why it matters to this job (its branch, the MR target, the default branch)."""
    out: dict[str, str] = {}
    for name, role in ((context.default_branch, "default branch"), (context.target_branch, "MR target"),
                       (context.branch, "this branch")):
        if name:
            out[store.name_for(name)] = role
    return out


def branch_names(store: CacheStore, branches: Iterable[str]) -> set[str]:
    """The names the store gives these branches: each one's name under this job's key (``name_for``), and
    the branch's own name that ``branch_of`` reads back from it (the same branch under any key, see
    :func:`choose`)."""
    out: set[str] = set()
    for branch in branches:
        name = store.name_for(branch)
        out.add(name)
        own = store.branch_of(name)
        if own:
            out.add(own)
    return out


def each(fn: Callable[[_T], _R], items: Sequence[_T], jobs: int = LOOKUP_JOBS) -> list[_R]:
    """``fn`` over ``items``, ``jobs`` at a time, the results in the items' order. The first failure is raised
    once the calls already running have ended."""
    if len(items) <= 1 or jobs <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(min(jobs, len(items)), thread_name_prefix="cacheport-lookup") as pool:
        return list(pool.map(fn, items))


def list_caches(session: StoreSession, known: dict[str, str] | None = None,
                jobs: int = LOOKUP_JOBS) -> list[CacheTag]:
    """Every name in the store, with what it holds (manifests read ``jobs`` at a time); each cache's mounts
    with it, and mounts whose cache is not there as rows of their own. The build records of the cache's history
    (:mod:`cacheport.ops.history`) are not caches and are left out, with their signatures (``trust =
    "signed"``), which go with them."""
    from cacheport.report.record import is_record
    from cacheport.signing import is_signature_tag, signature_tag

    known = known or {}
    every = session.names()
    names = [n for n in every if not is_record(n)]
    records = [n for n in every if is_record(n)]
    if records and any(is_signature_tag(n) for n in names):
        theirs = {signature_tag(d) for d in each(session.manifest_digest, records, jobs)
                  if d and d.startswith("sha256:")}
        names = [n for n in names if n not in theirs]
    found: dict[str, CacheTag] = {}
    for name, manifest in zip(names, each(session.get_manifest, names, jobs), strict=True):
        if manifest is None:
            continue
        if is_mounts(manifest):
            found[name] = CacheTag(name, manifest.digest, "mounts", manifest.size, created(manifest))
        else:
            found[name] = CacheTag(name, manifest.digest, cache_format(manifest), manifest.size,
                                   created_at(manifest.descriptors()), known.get(name, ""))
    beside: set[str] = set()
    for tag in list(found.values()):
        if tag.format == "mounts":
            continue
        mounts = found.get(mounts_name(tag.tag)) if layer_name_of(tag.tag) is None else None
        if mounts is not None and mounts.format == "mounts":
            found[tag.tag] = attrs.evolve(tag, mounts=mounts)
            beside.add(mounts.tag)
    out = [t for name, t in found.items() if name not in beside]
    return [attrs.evolve(t, role=known.get(t.branch_tag, "")) if t.format == "mounts" else t for t in out]


def delete_each(session: StoreSession, tags: Sequence[CacheTag], jobs: int = LOOKUP_JOBS) -> list[str]:
    """Delete these listed caches, ``jobs`` at a time, each by the manifest it was listed with (one request
    each, and a tag pushed again since the listing keeps its new cache); the names no longer in the store
    afterwards, in order (one that went with another name's manifest counts; one written again does not)."""
    delete = _deleter(session)

    def gone(tag: CacheTag) -> None:
        delete(tag.tag, tag.digest)
        if tag.mounts is not None:
            delete(tag.mounts.tag, tag.mounts.digest)

    each(gone, tags, jobs)
    left = set(session.names())
    # A store that deletes in the background (Pulp runs a task per DELETE) lists a name for a moment after it
    # is gone: look again a few times before calling a name written again.
    for pause in _SETTLE:
        if not left & {tag.tag for tag in tags}:
            break
        time.sleep(pause)
        left = set(session.names())
    return [tag.tag for tag in tags if tag.tag not in left]


#: The pauses before listing a store again after deleting (seconds): about 7 s in all, only while a deleted name
#: is still listed.
_SETTLE = (0.25, 0.5, 1.0, 2.0, 3.0)


def _deleter(session: StoreSession) -> Callable[[str, str], object]:
    """``session.delete`` given the listed digest; by name alone for a store whose ``delete`` takes no digest
    (plugins written before it did)."""
    try:
        takes_digest = "digest" in inspect.signature(session.delete).parameters
    except (TypeError, ValueError):
        takes_digest = False
    if takes_digest:
        return session.delete
    return lambda name, _digest: session.delete(name)


def directory_usage(session: StoreSession) -> dict[str, Any] | None:
    """For a directory store: its size and the blobs no cache uses any more (BuildKit's local export only
    adds); None for other stores."""
    usage = getattr(session, "usage", None)
    return usage() if callable(usage) else None


def parse_age(text: str) -> timedelta:
    """``14d``, ``12h``, ``2w``, ``90m`` or ``30s``."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ConfigError(f"--older-than {text!r}: expected a number and a unit: s, m, h, d or w (e.g. 14d)")
    try:
        return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        raise ConfigError(f"--older-than {text!r}: too long") from None


@attrs.frozen
class Pruning:
    """What prune decided for one tag.

    Attributes:
        tag: the cache tag.
        delete: whether it goes.
        reason: why (or why not), in a few words.
    """

    tag: CacheTag
    delete: bool
    reason: str


def choose(tags: Sequence[CacheTag], *, named: Iterable[str] = (), older_than: timedelta | None = None,
           live_branch_tags: set[str] | None = None, keep: Iterable[str] = (), now: datetime | None = None,
           default_tag: str | None = None) -> list[Pruning]:
    """Decide, for each cache tag, whether prune deletes it. Pure.

    The default branch's tags (under every key) and ``keep`` are never deleted unless ``named``; a tag that
    shares its manifest with a tag that stays is kept too, because registries delete manifests, not tags.
    A tag counts as its branch's under any key, so pruning one key's tags never takes another's live ones.
    A cache's mounts go with it (a tag listed with ``mounts``); mounts listed alone are decided as their
    branch's cache would be, and naming the branch's cache names them too.
    """
    now = now or datetime.now(UTC)
    named, keep = set(named), set(keep)
    decisions: dict[str, Pruning] = {}
    for t in tags:
        branch = t.branch_tag
        if t.format is None:
            decisions[t.tag] = Pruning(t, False, "not a cache")
        elif t.tag in named or branch in named:
            decisions[t.tag] = Pruning(t, True, "named")
        elif t.role == "default branch" or (default_tag and same_branch(branch, default_tag)) or branch in keep:
            decisions[t.tag] = Pruning(t, False, "kept" if branch in keep else "default branch (name it to delete)")
        elif older_than is not None and t.updated is not None and now - t.updated > older_than:
            decisions[t.tag] = Pruning(t, True, f"not updated for {(now - t.updated).days} days")
        elif live_branch_tags is not None and not any(same_branch(branch, b) for b in live_branch_tags):
            decisions[t.tag] = Pruning(t, True, "its branch is gone")
        else:
            decisions[t.tag] = Pruning(t, False, "recent" if older_than is not None else "branch exists")
    staying = {d for p in decisions.values() if not p.delete
               for d in (p.tag.digest, p.tag.mounts.digest if p.tag.mounts else None) if d}
    out = []
    for p in decisions.values():
        if p.delete and p.tag.digest in staying:
            p = attrs.evolve(p, delete=False, reason="shares its manifest with a tag that stays")
        elif p.delete and p.tag.mounts is not None and p.tag.mounts.digest in staying:
            p = attrs.evolve(p, tag=attrs.evolve(p.tag, mounts=None))  # its mounts' manifest stays, so they do
        out.append(p)
    kept = {d for p in out if p.tag.format is not None and not p.delete
            for d in (p.tag.digest, p.tag.mounts.digest if p.tag.mounts else None) if d}
    return [_signature(p, kept) for p in out]


def _signature(decision: Pruning, kept: set[str]) -> Pruning:
    """A cache's signature (``trust = "signed"``) goes once no cache tag that stays points at what it signs:
    every protected build signs a new digest, and the old signatures would pile up."""
    from cacheport.signing import SUFFIX, is_signature_tag

    tag = decision.tag.tag
    if not is_signature_tag(tag):
        return decision
    signed = "sha256:" + tag.removeprefix("sha256-").removesuffix(SUFFIX)
    if signed in kept:
        return attrs.evolve(decision, delete=False, reason="the signature of a cache that stays")
    return attrs.evolve(decision, delete=True, reason="the signature of a cache that is gone")


def remote_branches(cwd: Path, remote: str = "origin") -> list[str]:
    """Branch names on ``remote`` (``git ls-remote --heads``); in a repository with no remote at all, its own
    branches, which are then the project's."""
    import subprocess

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(f"--branches-gone: could not run git {args[0]}: {exc}") from None

    remotes = git("remote")
    if remotes.returncode == 0 and not remotes.stdout.split():
        own = git("for-each-ref", "--format=%(refname)", "refs/heads/")
        if own.returncode == 0:
            return [line.removeprefix("refs/heads/") for line in own.stdout.splitlines() if line]
    out = git("ls-remote", "--heads", remote)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines() or ["failed"]
        # git's first line says what is wrong; its last is advice ("... and the repository exists.")
        first = next((line for line in lines if line.startswith("fatal:")), lines[-1])
        raise ConfigError(f"--branches-gone: git ls-remote --heads {remote}: {first}")
    return [line.split("refs/heads/", 1)[1] for line in out.stdout.splitlines() if "refs/heads/" in line]

"""Before a build: the plan's local cache imports, as BuildKit will find them on this machine.

buildx reads a ``type=local`` import's directory itself, before the build starts: a directory that is missing
or that it can't lock, and an ``index.json`` it can't read, it skips with a warning; an ``index.json`` with no
entry under the import's tag fails the whole build ("local cache importer requires either explicit digest,
"latest" tag or custom tag on index.json"). So the commands that hand imports to a build (``args``, ``build``)
ask here first and pass on only what BuildKit can import; ``doctor``, ``status`` and ``prune --broken`` ask
the same question. Only reads: rendering stays pure, and backends never touch the host.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from cacheport.entry import CacheEntry
from cacheport.errors import RegistryError
from cacheport.plan import Plan
from cacheport.records import CacheStore, Check

PRUNE = "`cacheport prune --broken --yes`"


@attrs.frozen
class LayoutProblem:
    """Why a build can't import from a local cache directory.

    Attributes:
        directory: the directory.
        reason: what is there, in one line for people.
        broken: something is there that BuildKit can't import (a warning); False when there is simply no
            cache yet (the first build makes it).
        fix: what to do about it, when the user has to.
    """

    directory: str
    reason: str
    broken: bool = True
    fix: str = PRUNE

    @property
    def removable(self) -> bool:
        """What is there is a cache directory BuildKit can't read: ``prune --broken`` may remove it."""
        return self.broken and self.fix == PRUNE

    @property
    def message(self) -> str:
        """The warning the commands that build give for it."""
        return f"not importing {self.directory or 'a local cache'}: {self.reason}; fix: {self.fix}"


def layout_problem(directory: str, tag: str | None = None, digest: str | None = None) -> LayoutProblem | None:
    """What would stop BuildKit importing the cache called ``tag`` (BuildKit's default: ``latest``), or the
    manifest ``digest``, from ``directory``; None when it can."""
    try:
        return _layout_problem(directory, tag, digest)
    except OSError as exc:  # a directory this user can't list, a file where a folder should be: never a traceback
        return LayoutProblem(directory, f"{directory} can't be read: {exc.strerror or exc}",
                             fix=f"check {directory}'s permissions and contents, or move it away")


def _layout_problem(directory: str, tag: str | None, digest: str | None) -> LayoutProblem | None:
    folder = Path(directory)
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return LayoutProblem(directory, f"no cache in {directory} yet", broken=False)
    if not folder.is_dir():
        return LayoutProblem(directory, f"{directory} is not a directory", fix="move it away")
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):  # buildx locks index.json.lock in it
        return LayoutProblem(directory, f"{directory} is not readable and writable by this user",
                             fix=f"chmod u+rwx {directory}")
    if not (folder / "index.json").exists():  # what an interrupted first export leaves: the next one completes it
        return LayoutProblem(directory, f"no cache in {directory} yet (no index.json)", broken=False)
    # Only the index reader, and only now: `cacheport args` asks before every build, and starts without oci/.
    from cacheport.oci.index import DEFAULT_NAME, blob_path, buildkit_entry, entry_name, index_entries

    tag = tag or DEFAULT_NAME
    try:
        if digest is None:
            entries = index_entries(folder)
            entry = buildkit_entry(entries, tag)
            if entry is None:
                names = sorted({entry_name(e) for e in entries})
                from cacheport.mounts.artifact import is_mounts_name

                if names and all(is_mounts_name(n) for n in names):  # saved before the first export: no harm
                    return LayoutProblem(directory, f"no cache in {directory} yet (only cache mounts)", broken=False)
                has = f"it has only {', '.join(map(repr, names))}" if names else "it is empty"
                return LayoutProblem(directory, f"its index.json names no cache {tag!r} ({has})")
            digest = str(entry.get("digest", ""))
        try:
            blob_path(folder, digest).stat()
        except FileNotFoundError:
            return LayoutProblem(directory, f"the manifest of its cache {tag!r} ({digest}) is missing")
    except RegistryError as exc:
        return LayoutProblem(directory, str(exc))
    return None


def import_problem(entry: CacheEntry) -> LayoutProblem | None:
    """For a ``type=local`` import, what would stop BuildKit using it; None for it and for every other type."""
    if entry.type != "local":
        return None
    src = entry.get("src")
    if not src:
        return LayoutProblem("", "a local cache import without src", fix="set the backend's src")
    return layout_problem(src, entry.get("tag"), entry.get("digest") or None)


def usable(plan: Plan) -> tuple[Plan, list[tuple[CacheEntry, LayoutProblem]]]:
    """The plan without the local imports BuildKit can't use, and those imports with why."""
    kept: list[CacheEntry] = []
    held: list[tuple[CacheEntry, LayoutProblem]] = []
    for entry in plan.imports:
        problem = import_problem(entry)
        if problem is None:
            kept.append(entry)
        else:
            held.append((entry, problem))
    return (attrs.evolve(plan, imports=tuple(kept)) if held else plan), held


def store_problem(store: CacheStore) -> LayoutProblem | None:
    """For a directory store (``status``, ``prune --broken``): what would stop builds importing its cache."""
    return layout_problem(store.location, store.name_for(""))


def import_checks(plan: Plan) -> list[Check]:
    """``cacheport doctor``'s view: one check per local cache import, failed where something is there that
    BuildKit can't import (builds leave it out and run without it)."""
    checks = []
    for entry in plan.imports:
        if entry.type != "local":
            continue
        problem = import_problem(entry)
        if problem is None:
            checks.append(Check("import", True, f"{entry.get('src')} holds the cache builds import"))
        elif not problem.broken:
            checks.append(Check("import", True, f"{problem.reason}; the first build that exports makes it"))
        else:
            where = "" if problem.directory in problem.reason else f"{problem.directory}: "
            checks.append(Check("import", False, f"{where}{problem.reason}; builds leave it out and run without it",
                                problem.fix))
    return checks

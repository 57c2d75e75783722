"""Moving a finished local cache export into place (the host-side half of the ``local`` backend's rotation)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from cacheport.records import Swap


def is_complete(path: Path) -> bool:
    """BuildKit writes a local cache's index.json last, so its presence marks a finished export."""
    return (path / "index.json").is_file()


def _is_cache(path: Path) -> bool:
    """An OCI layout BuildKit wrote (or nothing at all): the only kind of directory rotation may replace."""
    return not path.exists() or (path.is_dir() and (is_complete(path) or not any(path.iterdir())))


@contextlib.contextmanager
def held(current: Path) -> Iterator[bool]:
    """The lock on the cache directory ``current`` (the file ``<current>.lock`` beside it) that whoever replaces
    or removes it holds meanwhile, taken without waiting: True when this process holds it now. Without the
    directory's parent there is nothing to lock (False)."""
    import fcntl

    try:
        lock = open(current.with_name(current.name + ".lock"), "w")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        yield False
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def promote(swap: Swap) -> bool:
    """Put ``swap.new`` in place of ``swap.current`` if it is a finished export; True if it did.

    An unfinished export is left alone: another build may still be writing it, and the next finished export
    completes it. Only cache directories are ever replaced (with ``swap.replace`` False, only an empty one), and
    one process at a time does it (a lock file).
    """
    new, current = Path(swap.new), Path(swap.current)
    if not is_complete(new) or not _is_cache(current) or (not swap.replace and is_complete(current)):
        return False
    import shutil

    current.parent.mkdir(parents=True, exist_ok=True)
    with held(current) as mine:
        if not mine:
            return False  # someone else is promoting (or removing it) right now
        if not is_complete(new) or (not swap.replace and is_complete(current)):  # they finished first
            return False
        old = current.with_name(current.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if current.exists():
            carry_mounts(current, new)
            os.rename(current, old)
        os.rename(new, current)
        shutil.rmtree(old, ignore_errors=True)
    return True


def carry_mounts(current: Path, new: Path) -> list[str]:
    """Put the cache mounts ``current`` holds (``<name>.mounts``) into the export ``new`` too, so that swapping
    it in keeps them: BuildKit's export holds only the layer cache. Blobs are hard-linked where they can be.
    The names carried; a mounts artifact that can't be carried is left behind (the next save writes it again)."""
    from cacheport.errors import CacheportError
    from cacheport.mounts.artifact import is_mounts, is_mounts_name
    from cacheport.oci.copy import copy_blob
    from cacheport.oci.layout import Layout

    carried = []
    source, target = Layout(current), Layout(new)
    try:
        names = [n for n in source.names() if is_mounts_name(n) and n not in set(target.names())]
    except CacheportError:
        return []
    for name in names:
        try:
            manifest = source.get_manifest(name)
            if manifest is None or not is_mounts(manifest):
                continue
            for blob in manifest.descriptors():
                copy_blob(source, target, blob)
            target.put_manifest(name, manifest)
        except (CacheportError, OSError):
            continue
        carried.append(name)
    return carried


def moved(swap: Swap) -> str:
    """What to tell the user once ``swap`` has happened."""
    if swap.replace:
        return f"moved the last build's cache export into {swap.current}"
    return f"moved the cache from {swap.new}, where earlier versions of cacheport kept it, to {swap.current}"

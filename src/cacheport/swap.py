"""Moving a finished local cache export into place (the host-side half of the ``local`` backend's rotation)."""

from __future__ import annotations

import os
from pathlib import Path

from cacheport.backend import Swap


def is_complete(path: Path) -> bool:
    """BuildKit writes a local cache's index.json last, so its presence marks a finished export."""
    return (path / "index.json").is_file()


def promote(swap: Swap) -> bool:
    """Put ``swap.new`` in place of ``swap.current`` if it is a finished export; True if it did.

    An unfinished export (a failed build) is removed, so the next build exports into a fresh directory.
    """
    new, current = Path(swap.new), Path(swap.current)
    if not new.exists():
        return False
    import shutil

    if not is_complete(new):
        shutil.rmtree(new, ignore_errors=True)
        return False
    old = current.with_name(current.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    current.parent.mkdir(parents=True, exist_ok=True)
    if current.exists():
        os.rename(current, old)
    os.rename(new, current)
    shutil.rmtree(old, ignore_errors=True)
    return True

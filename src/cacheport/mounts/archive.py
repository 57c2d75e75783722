"""A mount archive's safety and size, read as a stream (never the whole archive in memory).

An archive is a gzip-compressed tar of one cache mount's contents. Before one is restored into a builder, every
member must stay inside the mount: no absolute or ``..`` paths, no device files or FIFOs, no hard link to a
file the archive did not hold first, no symlink pointing out of it (also not by way of the archive's other
symlinks, as the file system resolves them), no member reached through a symlink, and no more expanded bytes
than the limit (a decompression bomb is refused before it is expanded). Making archives is the builder's; this
module only reads them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import posixpath
import tarfile
import zlib
from pathlib import Path

from cacheport.errors import MountError, MountTooLarge
from cacheport.masking import printable

CHUNK = 1 << 20


def digest_of(path: Path) -> str:
    """``sha256:…`` of a file's bytes, read a chunk at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


class _Bounded:
    """The decompressed tar stream, counted: more than ``limit`` bytes (headers included) is a bomb."""

    def __init__(self, raw: io.BufferedIOBase, limit: int, what: str) -> None:
        self.raw, self.limit, self.what, self.read_so_far = raw, limit, what, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size if size >= 0 else CHUNK)
        self.read_so_far += len(data)
        if self.read_so_far > self.limit:
            raise MountTooLarge(f"{self.what}: expands to more than {self.limit} bytes; refused (the limit for one "
                             "mount)")
        return data


def check(path: Path, *, limit: int, name: str = "") -> int:
    """The bytes the archive at ``path`` expands to (the sum of its files' sizes), after reading it through
    once. Anything unsafe, or more than ``limit`` bytes, is a one-line :class:`MountError`."""
    what = f"mount archive {name or path.name}"
    # The tar stream is headers and padding besides the files: twice the limit, plus room for small archives.
    budget = 2 * limit + (1 << 20)
    try:
        with gzip.open(path, "rb") as raw:
            stream = _Bounded(raw, budget, what)
            with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                return _members(tar, limit, what)
    except MountError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise MountError(f"{what}: not a gzip-compressed tar archive ({printable(exc, 160)})") from None


def _members(tar: tarfile.TarFile, limit: int, what: str) -> int:
    total = 0
    cost = count = 0  # what expanding takes on disk: each member at least a block (an inode bomb is refused too)
    links: dict[str, str] = {}   # symlinks seen, and their targets: nothing may be reached through one
    files: set[str] = set()   # regular files seen: what a hard link may point at
    for member in tar:
        name = _inside(member.name, what, "a member")
        shown = printable(member.name, 120)
        parents = [posixpath.join(*name.split("/")[:i]) for i in range(1, name.count("/") + 1)] if name else []
        if any(p in links for p in parents):
            raise MountError(f"{what}: {shown} is reached through a symlink; refused")
        cost, count = cost + max(member.size if member.isreg() else 0, MEMBER_COST), count + 1
        if cost > limit and total + (member.size if member.isreg() else 0) <= limit:  # many small members
            raise MountTooLarge(f"{what}: expands to more than {limit} bytes (its {count} members count "
                                f"{MEMBER_COST} bytes each at least); refused (the limit for one mount)")
        if member.ischr() or member.isblk() or member.isfifo():
            raise MountError(f"{what}: {shown} is a device file or FIFO; refused")
        if member.issym():
            target = member.linkname
            if target.startswith("/"):
                raise MountError(f"{what}: symlink {shown} points to an absolute path; refused")
            _inside(posixpath.join(posixpath.dirname(name), target), what, f"symlink {shown}")
            links[name] = target
        elif member.islnk():
            target = _inside(member.linkname, what, f"hard link {shown}")
            if target not in files:
                raise MountError(f"{what}: hard link {shown} points to a file the archive does not hold before "
                                 "it; refused")
            files.add(name)
        elif member.isreg():
            files.add(name)
            total += member.size
            if total > limit:
                raise MountTooLarge(f"{what}: expands to more than {limit} bytes; refused (the limit for one mount)")
        elif not member.isdir():
            raise MountError(f"{what}: {shown} is of a kind a cache mount does not hold; refused")
    # Each target alone stays inside, but ``b -> a/..`` with ``a -> .`` leaves: resolve them as the kernel does.
    for name, target in links.items():
        parent = [p for p in posixpath.dirname(name).split("/") if p]
        if _walk(parent, target.split("/"), links, [_HOPS], follow_last=False) is None:
            raise MountError(f"{what}: symlink {printable(name, 120)} points outside the mount by way of other "
                             "symlinks (or a loop of them); refused")
    return total


#: What one member of an archive counts against the size limit at the least: a tar block, as in the archive.
#: Without it, millions of empty files (an inode bomb) would expand to "0 bytes"; with it, the default 2 GiB
#: limit lets through 4 million members at the most.
MEMBER_COST = 512


#: Symlinks followed in resolving one path, as Linux's limit (more is a loop).
_HOPS = 40


def _walk(base: list[str], parts: list[str], links: dict[str, str], hops: list[int], *,
          follow_last: bool = True) -> list[str] | None:
    """``parts`` resolved from the directory ``base`` (both from the mount's root), following the archive's
    symlinks on the way (and the last part's too when ``follow_last``): the parts of the result, or None when
    it leaves the root or loops."""
    stack = list(base)
    for i, part in enumerate(parts):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return None
            stack.pop()
            continue
        stack.append(part)
        target = links.get("/".join(stack))
        if target is not None and (follow_last or i < len(parts) - 1):
            hops[0] -= 1
            if hops[0] < 0:
                return None
            found = _walk(stack[:-1], target.split("/"), links, hops)
            if found is None:
                return None
            stack = found
    return stack


def _inside(raw: str, what: str, kind: str) -> str:
    """``raw`` as a path relative to the mount's root ("" for the root), or a :class:`MountError` when it
    leaves it."""
    if raw.startswith("/") or "\0" in raw:
        raise MountError(f"{what}: {kind} {printable(raw, 120)} is an absolute path; refused")
    norm = posixpath.normpath(raw) if raw else "."
    if norm == ".." or norm.startswith("../"):
        raise MountError(f"{what}: {kind} {printable(raw, 120)} points outside the mount; refused")
    return "" if norm == "." else norm

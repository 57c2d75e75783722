"""An OCI image layout directory (``index.json`` + ``blobs/sha256/``) as a cache store: what BuildKit's
``type=local`` cache reads and writes.

Blobs are written to a temporary file and renamed into place once their digest checks out; ``index.json`` is
replaced atomically and last, so a reader never sees a name that points at a missing blob. A layout that holds
no name is removed rather than written: BuildKit fails a build that imports from an empty ``index.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from cacheport.errors import RegistryError
from cacheport.files import replacing
from cacheport.oci.format import MANIFEST_TYPES, OCI_INDEX, Descriptor, Manifest
from cacheport.oci.index import (
    MAX_INDEX,
    REF_NAME,
    SHA256,
    blob_path,
    buildkit_entry,
    entry_name,
    index_entries,
    read_index,
)

CHUNK = 1 << 20


class Layout:
    """One OCI layout directory. Every problem is a one-line :class:`RegistryError` naming the directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.host = str(self.directory)
        self._lock = threading.RLock()  # index.json is read, changed and replaced: one change at a time
        self._made: list[Path] = []  # directories this object created, removed again if the layout empties

    def __enter__(self) -> Layout:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"Layout({str(self.directory)!r})"

    # --- paths and the index ------------------------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        return blob_path(self.directory, digest)

    def _index(self) -> dict[str, Any]:
        return read_index(self.directory)

    def _entries(self) -> list[dict[str, Any]]:
        return index_entries(self.directory)

    _name = staticmethod(entry_name)

    def _mkdir(self, folder: Path) -> None:
        missing = []
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for made in reversed(missing):
            made.mkdir(exist_ok=True)
            self._made.append(made)

    def _write_index(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            self.clear()
            return
        doc = {**self._index(), "manifests": entries}
        doc.setdefault("schemaVersion", 2)
        doc.setdefault("mediaType", OCI_INDEX)
        self._mkdir(self.directory)
        layout = self.directory / "oci-layout"
        if not layout.exists():
            self._atomic(layout, b'{"imageLayoutVersion":"1.0.0"}')
        self._atomic(self.directory / "index.json", json.dumps(doc, separators=(",", ":")).encode())

    def clear(self) -> None:
        """Remove the layout: ``index.json``, ``oci-layout`` and every blob, then the directories left empty
        that it or this object made. What else is in the directory stays."""
        for name in ("index.json", "oci-layout", *(f"blobs/sha256/{d.removeprefix('sha256:')}" for d in self.blobs())):
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()
        for folder in (self.directory / "blobs" / "sha256", self.directory / "blobs", self.directory / "ingest",
                       *sorted(self._made, key=lambda p: len(p.parts), reverse=True)):
            with contextlib.suppress(OSError):  # not empty, or gone: it stays as it is
                folder.rmdir()

    def _atomic(self, path: Path, data: bytes) -> None:
        with replacing(path) as fh:
            fh.write(data)

    # --- the store's operations ---------------------------------------------------------------------------

    def check(self) -> None:
        """The directory (or the nearest existing parent it would be made in) is writable."""
        folder = self.directory
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise RegistryError(f"{self.directory}: {folder} is not a writable directory")
        self._index()

    def names(self) -> list[str]:
        """The names in ``index.json`` (BuildKit's local exporter writes one, ``latest`` unless tagged)."""
        return sorted({self._name(e) for e in self._entries()})

    def get_manifest(self, reference: str) -> Manifest | None:
        """A manifest by name or digest; None when there is none."""
        if SHA256.match(reference):
            media_type = ""
            digest = reference
        else:
            entry = next((e for e in self._entries() if self._name(e) == reference), None)
            if entry is None:
                return None
            digest, media_type = str(entry.get("digest", "")), str(entry.get("mediaType", ""))
        path = self._blob_path(digest)
        try:
            if path.stat().st_size > MAX_INDEX:
                raise RegistryError(f"{path}: a manifest larger than {MAX_INDEX >> 20} MiB")
            data = path.read_bytes()
        except FileNotFoundError:
            if SHA256.match(reference):
                return None
            raise RegistryError(f"{self.directory}: {reference} names {digest}, which is missing") from None
        except OSError as exc:
            raise RegistryError(f"{path}: cannot read: {exc.strerror}") from None
        manifest = Manifest.from_bytes(data, media_type)
        if manifest.digest != digest:
            raise RegistryError(f"{path}: its content has digest {manifest.digest}")
        return manifest

    def buildkit_entry(self, tag: str) -> dict[str, Any] | None:
        """The ``index.json`` entry BuildKit's local cache importer takes for ``tag``, or None (the build then
        fails). Its rule: the first entry whose ``io.containerd.image.name``, else the first whose
        ``org.opencontainers.image.ref.name``, is ``tag``; an entry without a name is never taken."""
        return buildkit_entry(self._entries(), tag)

    def manifest_digest(self, name: str) -> str | None:
        entry = next((e for e in self._entries() if self._name(e) == name), None)
        return str(entry["digest"]) if entry and entry.get("digest") else None

    def blob_size(self, digest: str) -> int | None:
        try:
            return self._blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def open_blob(self, digest: str, offset: int = 0) -> Iterator[Iterator[bytes]]:
        path = self._blob_path(digest)
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise RegistryError(f"{path}: cannot read: {exc.strerror}") from None
        with fh:
            fh.seek(offset)
            yield iter(lambda: fh.read(CHUNK), b"")

    def mount_from(self, source: object, digest: str) -> bool:
        """From another directory: a hard link (blobs are never changed in place, so both may share one file);
        False when that can't be done (another store, another file system), and the blob is copied instead."""
        if not isinstance(source, Layout):
            return False
        here = self._blob_path(digest)
        if here.exists():
            return True
        there = source._blob_path(digest)
        if not there.is_file():
            return False
        self._mkdir(here.parent)
        try:
            os.link(there, here)
        except FileExistsError:
            return True
        except OSError:
            return False
        return True

    def put_blob(self, descriptor: Descriptor, chunks: Iterable[bytes],
                 progress: Callable[[int], None] | None = None) -> None:
        """Write a blob, checking its digest and size before it takes its place."""
        path = self._blob_path(descriptor.digest)
        self._mkdir(path.parent)
        digest, total = hashlib.sha256(), 0
        with replacing(path) as fh:
            for chunk in chunks:
                fh.write(chunk)
                digest.update(chunk)
                total += len(chunk)
                if total > descriptor.size:  # a source that never stops must not fill the disk
                    raise RegistryError(f"{self.directory}: {descriptor.digest}: the source sent more than "
                                        f"the {descriptor.size} bytes its manifest gives")
                if progress is not None:
                    progress(len(chunk))
            got = "sha256:" + digest.hexdigest()
            if got != descriptor.digest or total != descriptor.size:
                raise RegistryError(f"{self.directory}: {descriptor.digest}: received {total} bytes with digest "
                                    f"{got}; expected {descriptor.size} bytes")

    def put_manifest(self, reference: str, manifest: Manifest) -> None:
        """Store a manifest's bytes; under a name (not a digest), also point ``index.json`` at it, last."""
        if self.blob_size(manifest.digest) is None:
            self.put_blob(Descriptor(manifest.media_type, manifest.digest, len(manifest.data)), [manifest.data])
        if SHA256.match(reference):
            return
        entry = {"mediaType": manifest.media_type, "digest": manifest.digest, "size": len(manifest.data),
                 "annotations": {REF_NAME: reference}}
        with self._lock:
            others = [e for e in self._entries() if self._name(e) != reference]
            self._write_index([*others, entry])

    def delete(self, name: str, digest: str | None = None) -> bool:
        """Drop a name from ``index.json`` and the blobs nothing else uses; False when the name is not there
        (or, given ``digest``, no longer points at that manifest)."""
        with self._lock:
            entries = self._entries()
            kept = [e for e in entries if self._name(e) != name or (digest is not None and e.get("digest") != digest)]
            if len(kept) == len(entries):
                return False
            self._write_index(kept)
            for unused in self.unused() if kept else ():
                with contextlib.suppress(OSError):
                    self._blob_path(unused).unlink()
        return True

    # --- what the directory holds -------------------------------------------------------------------------

    def blobs(self) -> dict[str, int]:
        """Every blob in the directory, with its size."""
        folder = self.directory / "blobs" / "sha256"
        if not folder.is_dir():
            return {}
        return {f"sha256:{p.name}": p.stat().st_size for p in folder.iterdir()
                if p.is_file() and re.fullmatch(r"[0-9a-f]{64}", p.name)}

    def used(self) -> set[str]:
        """The blobs some name in ``index.json`` reaches (only manifests are read, never layers)."""
        used: set[str] = set()
        todo: list[Descriptor] = []
        for entry in self._entries():
            with contextlib.suppress(RegistryError):
                todo.append(Descriptor.from_json(entry))
        while todo:
            d = todo.pop()
            if d.digest in used:
                continue
            used.add(d.digest)
            if d.media_type in MANIFEST_TYPES:
                with contextlib.suppress(RegistryError):
                    manifest = self.get_manifest(d.digest)
                    todo += manifest.descriptors() if manifest else []
        return used

    def usage(self) -> dict[str, Any]:
        """Its size and the blobs no cache uses any more, for ``cacheport status``."""
        blobs = self.blobs()
        unused = set(self.unused())
        return {"directory": str(self.directory), "exists": self.directory.is_dir(),
                "size": sum(blobs.values()), "blobs": len(blobs), "stale_blobs": len(unused),
                "stale_size": sum(size for digest, size in blobs.items() if digest in unused)}

    def unused(self) -> list[str]:
        """Blobs no name reaches any more: BuildKit's local exporter only ever adds."""
        used = self.used()
        return sorted(d for d in self.blobs() if d not in used)

"""Where build records live (:mod:`cacheport.ops.history`): a *shelf*, in the backend's own store (one OCI
artifact per record, beside the cache tags) or in a directory (one JSON file per record). Side effects at the edge.

Under ``trust = "signed"`` a store's shelf reads a record only by a digest whose signature holds for its name,
remembers the digest of each manifest it sent for signing, and deletes a record's signature with it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cacheport.errors import (
    CacheportError,
    NewerRecordError,
    OversizedRecordError,
    RecordError,
    RegistryError,
)
from cacheport.files import replacing
from cacheport.records import StoreSession
from cacheport.report import record as rec

if TYPE_CHECKING:
    from cacheport.ops.signatures import StoreSigning

class Shelf(Protocol):
    """Where records are kept: a store's repository or a directory."""

    where: str

    def names(self) -> list[str]: ...
    def read(self, name: str, limit: int = rec.MAX_SIZE) -> bytes | None:
        """A record's bytes (up to ``limit`` + 1 of them); None when it is gone (another job's bound deleted it
        since it was listed). :class:`RecordError` when it is not a record this version reads
        (:class:`NewerRecordError`: a newer cacheport's; :class:`OversizedRecordError`: over ``limit``);
        :class:`RegistryError` when it could not be read (an outage, a file this job may not read)."""
    def write(self, name: str, data: bytes) -> None: ...
    def delete(self, name: str) -> bool:
        """Delete a record: False when it was gone already; :class:`RegistryError` when it could not be."""


class StoreShelf:
    """Records as OCI artifacts in a backend's store (an open :class:`~cacheport.StoreSession`).

    With ``signing`` (``trust = "signed"``): :meth:`read` takes a record only by a digest whose signature holds
    for its name (:class:`SignatureError` else), :meth:`write` remembers the digest of the manifest it sent for
    :meth:`sign`, and :meth:`delete` deletes the record's signature too."""

    def __init__(self, session: StoreSession, where: str, signing: StoreSigning | None = None) -> None:
        self.session, self.where, self.signing = session, where, signing
        self.written: dict[str, str] = {}
        #: Blobs known to be in the repository: not asked about again.
        self.present: set[str] = set()

    def prepare(self) -> None:
        """Make sure the blob every record (and its signature) shares, the empty config, is in the repository,
        ahead of a :meth:`write` (while the build runs); one request when it is."""
        from cacheport.oci.artifact import EMPTY, EMPTY_DATA

        if self.session.blob_size(EMPTY.digest) is None:
            self.session.put_blob(EMPTY, [EMPTY_DATA])
        self.present.add(EMPTY.digest)

    def names(self) -> list[str]:
        return [n for n in self.session.names() if n.startswith(rec.PREFIX)]

    def read(self, name: str, limit: int = rec.MAX_SIZE) -> bytes | None:
        import sys

        from cacheport.oci.artifact import artifact_layer
        from cacheport.oci.format import sha256_digest

        if self.signing is None:
            manifest = self.session.get_manifest(name)
        else:
            from cacheport.ops.signatures import verified

            manifest = verified(self.session, name, self.signing)
        if manifest is None:  # deleted since it was listed (Pulp lists a deleted tag for a while, too)
            return None
        kind = manifest.json.get("artifactType")
        if (not manifest.is_index and isinstance(kind, str) and kind.startswith(rec.ARTIFACT_FAMILY)
                and kind != rec.ARTIFACT_TYPE):
            raise NewerRecordError(f"a {kind[:80]} artifact, written by a newer cacheport (this one reads "
                                   f"{rec.ARTIFACT_TYPE}): upgrade cacheport")
        try:
            layer = artifact_layer(manifest, rec.ARTIFACT_TYPE, rec.MEDIA_TYPE, sys.maxsize)
        except RegistryError as exc:
            raise RecordError(str(exc)) from None
        if layer.size > limit:
            raise OversizedRecordError(f"the artifact's {rec.MEDIA_TYPE} layer is {layer.size} bytes; at most "
                                       f"{limit} are read")
        data = bytearray()
        with self.session.open_blob(layer.digest) as chunks:
            for chunk in chunks:
                data += chunk
                if len(data) > layer.size:
                    break
        if len(data) != layer.size or sha256_digest(bytes(data)) != layer.digest:
            raise RecordError("its content does not match its digest")
        return bytes(data)

    def write(self, name: str, data: bytes) -> None:
        from cacheport.oci.artifact import artifact

        blobs, manifest = artifact(rec.ARTIFACT_TYPE, rec.MEDIA_TYPE, data,
                                   {"org.opencontainers.image.title": name})
        for descriptor, content in blobs:
            # A record's own bytes (its time and random id in them) are never there yet: not asked about.
            if descriptor.digest not in self.present and (
                    descriptor.media_type == rec.MEDIA_TYPE or self.session.blob_size(descriptor.digest) is None):
                self.session.put_blob(descriptor, [content])
            self.present.add(descriptor.digest)
        self.session.put_manifest(name, manifest)
        self.written[name] = manifest.digest

    def sign(self, name: str) -> str | None:
        """Sign the record this shelf wrote under ``name``, by the digest of the manifest it sent; the digest, or
        None without ``signing``. :class:`CacheportError` when it can't (no key, a registry that refuses)."""
        if self.signing is None:
            return None
        digest = self.written[name]
        self.signing.sign(self.session, name, digest, present=self.present)
        return digest

    def delete(self, name: str) -> bool:
        # Each record's manifest is its own (its content names its time and id), so no other name goes with it
        # but its signature, which would pile up otherwise.
        digest = self.session.manifest_digest(name) if self.signing is not None else None
        gone = self.session.delete(name)
        if digest:
            from cacheport.signing import signature_tag

            with contextlib.suppress(CacheportError):  # a signature left behind is pruned with the caches'
                self.session.delete(signature_tag(digest))
        return gone


class DirectoryShelf:
    """Records as JSON files in a directory (a CI artifact, or under the cache directory on a laptop).

    ``named_by``: where the user named the directory (``cacheport.toml history-dir``, ``--records``), for the
    one line that says it is not a directory."""

    def __init__(self, directory: Path, named_by: str | None = None) -> None:
        self.directory, self.named_by = directory, named_by
        self.where = str(directory)

    def _not_a_directory(self) -> CacheportError:
        from cacheport.errors import ConfigError

        return ConfigError(f"{self.named_by or 'history-dir'} = {str(self.directory)!r}: not a directory; name a "
                           "directory for build records (one not there yet is made)")

    def names(self) -> list[str]:
        try:
            return sorted(p.name[:-5] for p in self.directory.iterdir()
                          if p.name.startswith(rec.PREFIX) and p.name.endswith(".json"))
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            raise self._not_a_directory() from None
        except OSError as exc:
            raise RegistryError(f"{self.directory}: cannot list: {exc.strerror}") from None

    def read(self, name: str, limit: int = rec.MAX_SIZE) -> bytes | None:
        path = self.directory / f"{name}.json"
        try:
            with path.open("rb") as fh:
                return fh.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:  # not what the record holds: this job may not read it (a good record, maybe)
            raise RegistryError(f"cannot read: {exc.strerror}") from None

    def write(self, name: str, data: bytes) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with replacing(self.directory / f"{name}.json") as fh:
                fh.write(data)
        except (FileExistsError, NotADirectoryError):
            raise self._not_a_directory() from None
        except OSError as exc:
            raise RegistryError(f"{self.directory}: cannot write: {exc.strerror}") from None

    def delete(self, name: str) -> bool:
        try:
            (self.directory / f"{name}.json").unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise RegistryError(f"cannot delete: {exc.strerror}") from None
        return True

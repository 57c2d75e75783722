"""Where a backend keeps caches: the store and its session protocol, and the OCI content a session reads and
writes (descriptors, manifests, blobs). oci/format.py holds what is known about that content beyond reading it
(media types, the two cache formats, conversion); these records stay light, for `cacheport args`' sake."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

import attrs

from cacheport.errors import RegistryError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+\Z")


def sha256_digest(data: bytes) -> str:
    """``sha256:`` and the hex digest of ``data``."""
    import hashlib  # only when content is hashed: `cacheport args` starts without it

    return "sha256:" + hashlib.sha256(data).hexdigest()


@attrs.frozen
class Descriptor:
    """A content descriptor: what a manifest or index points at.

    Attributes:
        media_type: the content's media type.
        digest: ``sha256:…``.
        size: its length in bytes.
        annotations: its annotations (BuildKit's ``buildkit/createdat``, ``containerd.io/uncompressed``, …).
    """

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = attrs.field(factory=dict, eq=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Descriptor:
        """A descriptor from its JSON form; one without a usable digest or size is an error, not a crash."""
        digest = data.get("digest") if isinstance(data, Mapping) else None
        if not isinstance(digest, str) or not DIGEST.match(digest):
            raise RegistryError(f"a manifest lists content without a valid digest ({str(digest)[:80]!r})")
        try:
            size = int(data.get("size", 0))
        except (TypeError, ValueError):
            raise RegistryError(f"a manifest lists {digest} with a size that is not a number") from None
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, Mapping):
            annotations = {}
        return cls(str(data.get("mediaType", "")), digest, size, {str(k): str(v) for k, v in annotations.items()})

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc


@attrs.frozen
class Manifest:
    """A manifest or index exactly as it is stored.

    Attributes:
        media_type: its media type (the registry's Content-Type, else the document's ``mediaType``).
        data: the bytes; a copy keeps them as they are so the digest stays the same.
        digest: ``sha256:`` of ``data``.
    """

    media_type: str
    data: bytes = attrs.field(repr=False)
    digest: str

    @classmethod
    def from_bytes(cls, data: bytes, media_type: str = "") -> Manifest:
        """A manifest from its bytes; the media type defaults to the document's own ``mediaType``."""
        return cls(media_type or str(_json(data).get("mediaType", "")), data, sha256_digest(data))

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Manifest:
        """A manifest serialized the same way every time, so that rebuilding it gives the same digest."""
        return cls.from_bytes(json.dumps(document, separators=(",", ":")).encode(), str(document["mediaType"]))

    @property
    def json(self) -> dict[str, Any]:
        return _json(self.data)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or "manifests" in self.json

    def descriptors(self) -> list[Descriptor]:
        """What it points at: an index's entries, or a manifest's config and then its layers."""
        doc = self.json
        if self.is_index:
            return [Descriptor.from_json(d) for d in object_list(doc.get("manifests"))]
        config = [Descriptor.from_json(doc["config"])] if isinstance(doc.get("config"), dict) else []
        return config + [Descriptor.from_json(d) for d in object_list(doc.get("layers"))]

    @property
    def size(self) -> int:
        """The sum of the sizes of everything it points at (a cache's size, give or take shared blobs)."""
        return sum(d.size for d in self.descriptors())


def object_list(value: Any) -> list[Mapping[str, Any]]:
    """A manifest's list of content (``manifests``, ``layers``) as the JSON objects it holds; absent is empty."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise RegistryError("a manifest's list of content is not a list of objects")
    return value


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise RegistryError(f"a manifest is not JSON: {exc}") from None
    except RecursionError:
        raise RegistryError("a manifest is nested too deeply to read") from None
    if not isinstance(value, dict):
        raise RegistryError("a manifest is not a JSON object")
    return value


def _never() -> bool:
    return False


@attrs.frozen
class BlobSource:
    """A blob's bytes as :meth:`StoreSession.put_blob` may receive them: iterable like any chunks, and readable
    again from any offset, so a writer that can resume an interrupted upload (a registry's) continues mid-blob.

    Attributes:
        open: ``offset -> context manager of chunks``: the blob's bytes from ``offset`` on.
        stopping: true once the copy is being interrupted. A resumable writer stops at its next checkpoint;
            iterating stops at the next chunk. Either way with :class:`cacheport.errors.Interrupted`.
    """

    open: Callable[[int], AbstractContextManager[Iterator[bytes]]]
    stopping: Callable[[], bool] = _never

    def __iter__(self) -> Iterator[bytes]:
        from cacheport.errors import Interrupted

        with self.open(0) as chunks:
            for chunk in chunks:
                if self.stopping():
                    raise Interrupted("interrupted in the middle of a blob")
                yield chunk


class StoreSession(Protocol):
    """An open connection to where a backend keeps caches: a registry repository, a directory.

    Names are what the backend's exports are called there (registry tags, OCI layout ref names); references
    are names or digests. Every failure is a one-line :class:`cacheport.errors.RegistryError`.
    """

    #: Where it is, for messages and to tell whether two sessions can mount from each other.
    host: str

    def __enter__(self) -> StoreSession: ...
    def __exit__(self, *exc: object) -> None: ...
    def check(self) -> None:
        """Reach the store and prove the credentials (a registry's ``/v2/``), without changing anything."""
    def names(self) -> list[str]:
        """Every name held, sorted."""
    def get_manifest(self, reference: str) -> Manifest | None:
        """The manifest or index a name or digest points at, exactly as stored; None when there is none."""
    def manifest_digest(self, name: str) -> str | None:
        """The digest a name points at, or None."""
    def blob_size(self, digest: str) -> int | None:
        """A blob's size, or None when it is not there."""
    def open_blob(self, digest: str, offset: int = 0) -> AbstractContextManager[Iterator[bytes]]:
        """A blob's bytes from ``offset`` on, as a stream of chunks."""
    def mount_from(self, source: StoreSession, digest: str) -> bool:
        """Make a blob present without moving bytes (a registry's cross-repository mount); False when it can't."""
    def put_blob(self, descriptor: Descriptor, chunks: Iterable[bytes],
                 progress: Callable[[int], None] | None = None) -> None:
        """Write a blob; ``progress(n)`` as bytes go out. ``chunks`` may be a :class:`BlobSource`: a store that
        can resume uploads then continues an interrupted one from where it stopped. Safe to call from several
        threads at once, for different blobs."""
    def put_manifest(self, reference: str, manifest: Manifest) -> None:
        """Write a manifest under a name (or its digest). Callers write every blob it needs first."""
    def delete(self, name: str, digest: str | None = None) -> bool:
        """Delete what a name points at; False when the name is not there.

        With ``digest`` (the manifest the caller read under that name), that manifest is what goes, without a
        lookup first; a name that has since moved on to another manifest keeps it."""


def _check_format(_inst: object, _attr: object, value: str) -> None:
    if value not in ("index", "image-manifest"):
        raise ValueError(f"a store's format is 'index' or 'image-manifest', not {value!r}")


@attrs.frozen
class CacheStore:
    """Where a backend keeps its caches, so that seed, status, prune and doctor's format probe can reach them.

    Attributes:
        location: where, for people: ``host/repository`` or a directory.
        format: the format the backend exports: ``index`` (BuildKit's cache index) or ``image-manifest``.
        oci_mediatypes: whether those exports use OCI media types.
        name_for: ``branch -> name``: what the backend's export for a push to that branch is called here.
            A backend with one fixed cache gives the same name for every branch.
        branch_of: ``name -> branch slug``, or None when the name belongs to no branch of this backend's.
        open: connects; use the result as a context manager (``with store.open() as session:``).
        fixed: the backend keeps one cache for every branch (``name_for`` ignores the branch).
    """

    location: str
    format: str = attrs.field(validator=_check_format)
    name_for: Callable[[str], str]
    branch_of: Callable[[str], str | None]
    open: Callable[[], StoreSession]
    oci_mediatypes: bool = True
    fixed: bool = False

"""One registry repository as a cache store session (:class:`cacheport.StoreSession`): the adapter between the
stores that seed, status, prune and doctor work through (:func:`cacheport.kit.registry_store`) and the registry
client (:mod:`.registry`). No HTTP here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

from cacheport.oci.format import Descriptor, Manifest
from cacheport.oci.registry import Registry
from cacheport.records import BlobSource


class RegistryRepository:
    """One repository of a registry as a cache store session (:class:`cacheport.StoreSession`): tags are names.

    Closing it closes the registry client. ``only``: a backend with one fixed tag owns just that tag (and the
    names beside it, such as its cache mounts': give them all).
    """

    def __init__(self, registry: Registry, repository: str, *, only: str | Iterable[str] | None = None) -> None:
        self.registry, self.repository = registry, repository
        self.only = None if only is None else frozenset([only] if isinstance(only, str) else only)
        self.host = registry.host

    def __enter__(self) -> RegistryRepository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.registry.close()

    def __repr__(self) -> str:
        return f"RegistryRepository({self.host!r}, {self.repository!r})"

    def check(self) -> None:
        self.registry.ping()

    def names(self) -> list[str]:
        tags = sorted(set(self.registry.list_tags(self.repository)))
        return [t for t in tags if t in self.only] if self.only is not None else tags

    def get_manifest(self, reference: str) -> Manifest | None:
        return self.registry.get_manifest(self.repository, reference)

    def manifest_digest(self, name: str) -> str | None:
        return self.registry.manifest_digest(self.repository, name)

    def blob_size(self, digest: str) -> int | None:
        return self.registry.blob_size(self.repository, digest)

    def open_blob(self, digest: str, offset: int = 0) -> contextlib.AbstractContextManager[Iterator[bytes]]:
        return self.registry.open_blob(self.repository, digest, offset)

    def mount_from(self, source: object, digest: str) -> bool:
        if not isinstance(source, RegistryRepository) or source.host != self.host:
            return False
        return self.registry.mount_blob(self.repository, digest, source.repository)

    def put_blob(self, descriptor: Descriptor, chunks: Iterable[bytes],
                 progress: Callable[[int], None] | None = None) -> None:
        if isinstance(chunks, BlobSource):
            self.registry.upload_resumable(self.repository, descriptor.digest, descriptor.size, chunks.open,
                                           progress=progress, stopping=chunks.stopping)
        else:
            self.registry.upload_blob(self.repository, descriptor.digest, descriptor.size, chunks, progress=progress)

    def put_manifest(self, reference: str, manifest: Manifest) -> None:
        self.registry.put_manifest(self.repository, reference, manifest)

    def delete(self, name: str, digest: str | None = None) -> bool:
        # With the digest listed, one DELETE; a tag pushed again since keeps its new manifest.
        return self.registry.delete_manifest(self.repository, digest or name)

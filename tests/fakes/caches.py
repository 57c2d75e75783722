"""Synthetic BuildKit caches pushed straight into a registry, or written into a local cache directory, for tests
that need one without a build."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import uuid
from pathlib import Path

from cacheport.mounts import CacheMount, MountArchive
from cacheport.mounts.archive import digest_of
from cacheport.oci.format import CACHECONFIG, OCI_INDEX, OCI_LAYER, Descriptor, Manifest, sha256_digest, synthetic_cache
from cacheport.oci.layout import Layout
from cacheport.oci.registry import Registry

MiB = 1 << 20


def push_cache(host: str, repo: str, sizes: list[int], tag: str = "main") -> list[Descriptor]:
    """A BuildKit index-format cache of random layers of these sizes (and its cacheconfig) under ``tag``."""
    blobs = [os.urandom(size) for size in sizes]
    config = json.dumps({"layers": [], "records": [], "n": uuid.uuid4().hex}).encode()
    descriptors = [Descriptor(OCI_LAYER, sha256_digest(b), len(b)) for b in blobs]
    descriptors.append(Descriptor(CACHECONFIG, sha256_digest(config), len(config)))
    with Registry(host) as registry:
        for d, data in zip(descriptors, [*blobs, config], strict=True):
            registry.upload_blob(repo, d.digest, d.size, [data])
        registry.put_manifest(repo, tag, Manifest.from_json(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d.as_json() for d in descriptors]}))
    return descriptors


def local_cache(directory: Path, name: str = "latest") -> Layout:
    """A local cache directory as a build leaves it: one cache, ``name`` (BuildKit's default: latest)."""
    layout = Layout(directory)
    blobs, manifest = synthetic_cache(image_manifest=True)
    for d, data in blobs:
        layout.put_blob(d, [data])
    layout.put_manifest(name, manifest)
    return layout


def mount_archive(path: Path, mount: CacheMount, files: dict[str, bytes]) -> MountArchive:
    """A cache mount's archive as the builder leaves one: these files in a gzip-compressed tar."""
    with gzip.open(path, "wb") as gz, tarfile.open(fileobj=gz, mode="w|") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return MountArchive(mount, path, digest_of(path), path.stat().st_size)

"""BuildKit's two cache formats as OCI content: media types, telling the formats apart, and converting between them.

Pure data and functions: no I/O and no HTTP client. The descriptor and manifest records themselves are in
records/store.py, beside the store session that reads and writes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from cacheport.errors import ConversionError
from cacheport.masking import printable

# Descriptors and manifests are plugin-facing (a store session reads and writes them), so they are records; they
# stay importable from here, with the media types they need to be read.
from cacheport.records.store import DIGEST as DIGEST
from cacheport.records.store import DOCKER_LIST as DOCKER_LIST
from cacheport.records.store import INDEX_TYPES as INDEX_TYPES
from cacheport.records.store import OCI_INDEX as OCI_INDEX
from cacheport.records.store import Descriptor as Descriptor
from cacheport.records.store import Manifest as Manifest
from cacheport.records.store import object_list
from cacheport.records.store import sha256_digest as sha256_digest
from cacheport.timestamps import go_time

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
CACHECONFIG = "application/vnd.buildkit.cacheconfig.v0"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# The same layer bytes under their OCI and Docker names, for a converted manifest's chosen media types.
_LAYER_TYPES = (
    (OCI_LAYER, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
    ("application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar"),
)
#: The two formats, as ``CacheStore.format`` and ``cacheport status`` name them.
FORMATS = ("index", "image-manifest")



def is_cache_index(manifest: Manifest) -> bool:
    """An index whose entries are BuildKit cache blobs (one is the cache config), not image manifests."""
    return manifest.is_index and any(d.media_type == CACHECONFIG for d in manifest.descriptors())


def cache_format(manifest: Manifest) -> str | None:
    """Which of BuildKit's two cache formats a manifest is in (``index`` or ``image-manifest``), if any."""
    if manifest.is_index:
        return "index" if is_cache_index(manifest) else None
    config = manifest.json.get("config") or {}
    return "image-manifest" if isinstance(config, dict) and config.get("mediaType") == CACHECONFIG else None


def created_at(descriptors: Iterable[Descriptor]) -> datetime | None:
    """The newest ``buildkit/createdat`` annotation (RFC 3339, nanoseconds cut to what Python reads)."""
    found = []
    for d in descriptors:
        when = go_time(d.annotations.get("buildkit/createdat"))
        if when is not None:
            found.append(when)
    return max(found) if found else None


def to_image_manifest(index: Manifest, *, oci: bool = True) -> Manifest:
    """BuildKit's index-format cache as the image-manifest format: the cacheconfig entry becomes the config,
    the other entries the layers (in order, annotations kept), and the index's annotations the manifest's.

    This is what BuildKit itself writes with ``image-manifest=true``, and what Pulp accepts.
    """
    doc = index.json
    entries = [dict(e) for e in object_list(doc.get("manifests"))]
    configs = [e for e in entries if e.get("mediaType") == CACHECONFIG]
    if not index.is_index or len(configs) != 1:
        what = printable(index.media_type, 120) if index.media_type else "the manifest"  # the document's own words
        raise ConversionError(f"{what} is not a BuildKit cache index (it needs "
                              f"exactly one {CACHECONFIG} entry); cannot convert it to an image manifest")
    nested = [e for e in entries if e.get("mediaType") in MANIFEST_TYPES]
    if nested:
        raise ConversionError(f"the cache index lists an image manifest ({nested[0].get('mediaType')}); "
                              "cannot convert it to an image manifest")
    layers = [{**e, "mediaType": _layer_type(str(e.get("mediaType", "")), oci)} for e in entries
              if e is not configs[0]]
    out: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
                           "config": configs[0], "layers": layers}
    if doc.get("annotations"):
        out["annotations"] = doc["annotations"]
    return Manifest.from_json(out)


def _layer_type(media_type: str, oci: bool) -> str:
    for oci_name, docker_name in _LAYER_TYPES:
        if media_type in (oci_name, docker_name):
            return oci_name if oci else docker_name
    return media_type


def synthetic_cache(image_manifest: bool, oci: bool = True) -> tuple[list[tuple[Descriptor, bytes]], Manifest]:
    """A tiny cache in one of BuildKit's two formats: its blobs and its manifest (doctor's format probe)."""
    import gzip

    layer = gzip.compress(b"\0" * 1024, mtime=0)  # an empty tar archive
    config = json.dumps({"layers": [{"blob": sha256_digest(layer), "parent": -1}],
                         "records": [{"digest": "sha256:" + "0" * 64, "layers": [{"layer": 0}]}]}).encode()
    layer_d = Descriptor(OCI_LAYER, sha256_digest(layer), len(layer))
    config_d = Descriptor(CACHECONFIG, sha256_digest(config), len(config))
    blobs = [(layer_d, layer), (config_d, config)]
    if image_manifest:
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
                               "config": config_d.as_json(), "layers": [layer_d.as_json()]}
    else:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [layer_d.as_json(), config_d.as_json()]}
    return blobs, Manifest.from_json(doc)

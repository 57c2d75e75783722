"""BuildKit's two cache formats as OCI content: media types, descriptors, manifests, and converting between them.

Pure data and functions: no I/O and no HTTP client, so a plugin's record types can name these cheaply.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs

from cacheport.errors import ConversionError, RegistryError
from cacheport.masking import printable
from cacheport.timestamps import go_time

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
CACHECONFIG = "application/vnd.buildkit.cacheconfig.v0"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# The same layer bytes under their OCI and Docker names, for a converted manifest's chosen media types.
_LAYER_TYPES = (
    (OCI_LAYER, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
    ("application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar"),
)
#: The two formats, as ``CacheStore.format`` and ``cacheport status`` name them.
FORMATS = ("index", "image-manifest")
DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+\Z")


def sha256_digest(data: bytes) -> str:
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
            return [Descriptor.from_json(d) for d in _list(doc.get("manifests"))]
        config = [Descriptor.from_json(doc["config"])] if isinstance(doc.get("config"), dict) else []
        return config + [Descriptor.from_json(d) for d in _list(doc.get("layers"))]

    @property
    def size(self) -> int:
        """The sum of the sizes of everything it points at (a cache's size, give or take shared blobs)."""
        return sum(d.size for d in self.descriptors())


def _list(value: Any) -> list[Mapping[str, Any]]:
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
    entries = [dict(e) for e in _list(doc.get("manifests"))]
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

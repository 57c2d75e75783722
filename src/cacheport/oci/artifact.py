"""A small file as an OCI artifact: an image manifest with an ``artifactType``, the empty config and the file as
its one layer (the OCI image spec's guidance for artifacts, which registries without artifact support still
take as an image manifest). Pure: building the manifest and finding the file's layer in one; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from cacheport.errors import RegistryError
from cacheport.oci.format import OCI_MANIFEST, Descriptor, Manifest, sha256_digest

EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
EMPTY_DATA = b"{}"
#: The OCI empty descriptor: what an artifact with no config of its own points at.
EMPTY = Descriptor(EMPTY_CONFIG, sha256_digest(EMPTY_DATA), len(EMPTY_DATA))


def artifact(artifact_type: str, media_type: str, data: bytes,
             annotations: Mapping[str, str] | None = None) -> tuple[list[tuple[Descriptor, bytes]], Manifest]:
    """The blobs to write (the empty config, then ``data``) and the manifest that holds them, in that order."""
    config = EMPTY
    layer = Descriptor(media_type, sha256_digest(data), len(data))
    doc: dict[str, object] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                              "config": config.as_json(), "layers": [layer.as_json()]}
    if annotations:
        doc["annotations"] = dict(annotations)
    return [(config, EMPTY_DATA), (layer, data)], Manifest.from_json(doc)


def artifact_layer(manifest: Manifest, artifact_type: str, media_type: str, max_size: int) -> Descriptor:
    """The one layer of ``media_type`` in an artifact of ``artifact_type``, no larger than ``max_size`` bytes;
    anything else is a one-line :class:`RegistryError`."""
    doc = manifest.json
    if manifest.is_index or doc.get("artifactType") != artifact_type:
        found = doc.get("artifactType") or doc.get("mediaType") or "no artifactType"
        raise RegistryError(f"not a {artifact_type} artifact ({str(found)[:80]})")
    layers = [d for d in manifest.descriptors()[1:] if d.media_type == media_type]
    if len(layers) != 1:
        raise RegistryError(f"the artifact holds {len(layers)} layers of {media_type}; expected one")
    if not 0 < layers[0].size <= max_size:
        raise RegistryError(f"the artifact's {media_type} layer is {layers[0].size} bytes; at most {max_size} "
                            "are read")
    return layers[0]

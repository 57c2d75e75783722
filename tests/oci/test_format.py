"""Manifests: their descriptors, sizes and digests.
"""

from __future__ import annotations

from cacheport.oci.format import OCI_MANIFEST, Manifest, sha256_digest


def test_manifest_descriptors_and_size() -> None:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "c", "digest": "sha256:1", "size": 10},
           "layers": [{"mediaType": "l", "digest": "sha256:2", "size": 5, "annotations": {"a": "b"}}]}
    manifest = Manifest.from_json(doc)
    assert not manifest.is_index
    assert [d.digest for d in manifest.descriptors()] == ["sha256:1", "sha256:2"]
    assert manifest.descriptors()[1].annotations == {"a": "b"}
    assert manifest.size == 15
    assert manifest.digest == sha256_digest(manifest.data) == Manifest.from_json(doc).digest

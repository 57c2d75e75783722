"""An OCI layout's index.json as BuildKit's local cache importer reads it (oci/index.py): what Layout builds on and
`cacheport args` reads alone before every build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cacheport.errors import RegistryError
from cacheport.oci.index import blob_path, buildkit_entry, entry_name, index_entries, read_index

DIGEST = "sha256:" + "a" * 64


def test_a_missing_index_is_empty_and_a_bad_one_is_one_line(tmp_path: Path) -> None:
    assert index_entries(tmp_path) == []
    for text, says in [("{", "not a JSON OCI index"), ("[]", "not an OCI index"),
                       ('{"manifests": {}}', "not an OCI index")]:
        (tmp_path / "index.json").write_text(text)
        with pytest.raises(RegistryError) as raised:
            read_index(tmp_path)
        assert str(raised.value) == f"{tmp_path / 'index.json'}: {says}"


def test_the_entry_buildkit_takes_and_the_names_cacheport_shows(tmp_path: Path) -> None:
    unnamed = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": DIGEST, "size": 1}
    ref = {**unnamed, "annotations": {"org.opencontainers.image.ref.name": "main"}}
    image = {**unnamed, "annotations": {"io.containerd.image.name": "main"}}
    (tmp_path / "index.json").write_text(json.dumps({"manifests": [unnamed, ref, image, "not an entry"]}))
    entries = index_entries(tmp_path)
    assert entries == [unnamed, ref, image]
    assert [entry_name(e) for e in entries] == ["latest", "main", "latest"]
    assert buildkit_entry(entries, "main") is entries[2]  # the containerd name first, as BuildKit's importer does
    assert buildkit_entry(entries, "latest") is None  # an entry without a name is never taken


def test_a_blob_lives_under_its_sha256_only(tmp_path: Path) -> None:
    assert blob_path(tmp_path, DIGEST) == tmp_path / "blobs" / "sha256" / ("a" * 64)
    with pytest.raises(RegistryError, match="is not a sha256 digest"):
        blob_path(tmp_path, "sha256:../../etc/passwd")

"""The mounts artifact: its manifest read back to the same mounts, foreign or newer ones refused in one line,
and its name beside the layer cache's (a valid tag, one per name, read back)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cacheport.errors import MountError
from cacheport.mounts import CacheMount, MountArchive
from cacheport.mounts.artifact import (
    ARTIFACT_TYPE,
    EMPTY_CONFIG,
    LAYER_TYPE,
    NAME_MAX,
    is_mounts,
    is_mounts_name,
    layer_name_of,
    layers_of,
    manifest_for,
    mounts_name,
)
from cacheport.oci.format import Manifest, synthetic_cache
from cacheport.refs import TAG_PATTERN

PIP = CacheMount("pip", "/root/.cache/pip", "locked", 1000, 1000, 0o700, stage="deps", line=4)
GO = CacheMount("/go/pkg/mod", "/go/pkg/mod")


def arch(mount: CacheMount, n: int) -> MountArchive:
    return MountArchive(mount, Path(f"/tmp/{n}"), "sha256:" + f"{n:064x}", 100 + n)


def test_the_manifest_is_an_oci_artifact_with_one_layer_per_mount() -> None:
    manifest = manifest_for([arch(PIP, 1), arch(GO, 2)])
    doc = manifest.json
    assert doc["artifactType"] == ARTIFACT_TYPE
    assert doc["config"] == EMPTY_CONFIG.as_json()
    assert [layer["mediaType"] for layer in doc["layers"]] == [LAYER_TYPE, LAYER_TYPE]
    assert doc["layers"][0]["annotations"]["io.cacheport.mount.mode"] == "700"
    read = layers_of(manifest)
    # everything the artifact records comes back; where the mount was found (stage, line) is the Dockerfile's
    assert [m for m, _ in read] == [CacheMount("pip", "/root/.cache/pip", "locked", 1000, 1000, 0o700), GO]
    assert [d.digest for _, d in read] == [arch(PIP, 1).digest, arch(GO, 2).digest]
    assert is_mounts(manifest)


def _edited(**changes: object) -> Manifest:
    doc = manifest_for([arch(PIP, 1)]).json
    doc.update(changes)
    return Manifest.from_bytes(json.dumps(doc).encode())


@pytest.mark.parametrize(("manifest", "words"), [
    (_edited(artifactType="application/vnd.cacheport.mounts.v2"), "newer cacheport"),
    (_edited(artifactType="application/vnd.example.other"), "not a cache mounts artifact"),
    (_edited(artifactType=None), "not a cache mounts artifact"),
    (synthetic_cache(image_manifest=False)[1], "not a cache mounts artifact"),
    (synthetic_cache(image_manifest=True)[1], "not a cache mounts artifact"),
    (_edited(layers=[{"mediaType": "application/vnd.cacheport.mount.v2.tar+zstd", "digest": "sha256:" + "1" * 64,
                      "size": 1}]), "this cacheport reads"),
    (_edited(layers=[{"mediaType": LAYER_TYPE, "digest": "sha256:" + "1" * 64, "size": 1,
                      "annotations": {"io.cacheport.mount.id": "x"}}]), "don't describe a cache mount"),
    (Manifest.from_bytes(b"[1, 2]", "application/vnd.oci.image.manifest.v1+json"), "not a cache mounts artifact"),
])
def test_a_foreign_or_newer_manifest_is_refused_in_one_line(manifest: Manifest, words: str) -> None:
    with pytest.raises(MountError) as caught:
        layers_of(manifest, "reg:main.mounts")
    assert words in str(caught.value) and str(caught.value).startswith("reg:main.mounts: ")
    assert "\n" not in str(caught.value)


_tags = st.from_regex(TAG_PATTERN, fullmatch=True).filter(lambda t: not t.endswith(".mounts"))


@given(_tags)
def test_a_mounts_name_is_a_valid_tag_beside_its_layer_name(name: str) -> None:
    mounts = mounts_name(name)
    assert TAG_PATTERN.match(mounts) and len(mounts) <= NAME_MAX
    assert is_mounts_name(mounts) and not is_mounts_name(name)
    if len(name) + len(".mounts") <= NAME_MAX:
        assert mounts == f"{name}.mounts" and layer_name_of(mounts) == name


def test_a_long_name_is_shortened_with_a_digest_one_per_name() -> None:
    a, b = "a" * 125, "a" * 124 + "b"
    assert mounts_name(a) != mounts_name(b)
    assert len(mounts_name(a)) == NAME_MAX and mounts_name(a).startswith("a" * 100)
    assert layer_name_of(mounts_name(a)) is None  # only the start is kept: not the layer name


def test_names_that_are_not_mounts_names() -> None:
    assert layer_name_of("main") is None and layer_name_of(".mounts") is None
    with pytest.raises(ValueError, match="mounts name already"):
        mounts_name("main.mounts")

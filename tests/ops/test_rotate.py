"""Rotation of a local cache directory keeps its cache mounts: BuildKit's fresh export holds only the layer
cache, so the mounts artifact the directory held is carried into it (hard-linked, not copied)."""

from __future__ import annotations

import gzip
from pathlib import Path

from cacheport.mounts import CacheMount, MountArchive, MountLimits
from cacheport.mounts.archive import digest_of
from cacheport.mounts.artifact import layers_of
from cacheport.oci.layout import Layout
from cacheport.ops.mounts_store import fetch, publish
from cacheport.ops.rotate import carry_mounts, promote
from cacheport.records import Swap
from tests.fakes.caches import local_cache, mount_archive

LIMITS = MountLimits()


def pip_archive(path: Path) -> MountArchive:
    return mount_archive(path, CacheMount("pip", "/root/.cache/pip"), {"pip/wheel": b"wheel"})


def test_promotion_carries_the_mounts_into_the_new_export(tmp_path: Path) -> None:
    current, new = tmp_path / "default", tmp_path / "default.new"
    local_cache(current)
    archive = pip_archive(tmp_path / "pip.tgz")
    assert [o.action for o in publish(Layout(current), "latest", [archive], limits=LIMITS)] == ["saved"]
    local_cache(new)  # the build's export: a layer cache only
    blob = current / "blobs" / "sha256" / archive.digest.removeprefix("sha256:")
    inode = blob.stat().st_ino

    assert promote(Swap(new=str(new), current=str(current)))
    layout = Layout(current)
    assert layout.names() == ["latest", "latest.mounts"]
    assert (current / "blobs" / "sha256" / archive.digest.removeprefix("sha256:")).stat().st_ino == inode
    got, outcomes = fetch(layout, ["latest"], tmp_path / "in", limits=LIMITS)
    assert [o.action for o in outcomes] == ["restored"] and got[0].path.read_bytes() == archive.path.read_bytes()
    # and the next save of the same contents uploads nothing
    assert [o.action for o in publish(layout, "latest", [archive], limits=LIMITS)] == ["unchanged"]


def test_a_newer_export_of_the_mounts_is_not_overwritten(tmp_path: Path) -> None:
    current, new = tmp_path / "a", tmp_path / "b"
    local_cache(current)
    local_cache(new)
    old = pip_archive(tmp_path / "old.tgz")
    publish(Layout(current), "latest", [old], limits=LIMITS)
    fresh = MountArchive(old.mount, tmp_path / "new.tgz", "", 0)
    fresh.path.write_bytes(gzip.compress(b"\0" * 1024))
    fresh = MountArchive(old.mount, fresh.path, digest_of(fresh.path), fresh.path.stat().st_size)
    publish(Layout(new), "latest", [fresh], limits=LIMITS)
    assert carry_mounts(current, new) == []
    manifest = Layout(new).get_manifest("latest.mounts")
    assert manifest is not None and [d.digest for _, d in layers_of(manifest)] == [fresh.digest]


def test_a_directory_mounts_blobs_from_another_by_hard_link(tmp_path: Path) -> None:
    one, two = local_cache(tmp_path / "one"), Layout(tmp_path / "two")
    digest = next(iter(one.blobs()))
    assert two.mount_from(one, digest) and two.blob_size(digest) == one.blob_size(digest)
    assert not two.mount_from(one, "sha256:" + "0" * 64)
    assert not two.mount_from(object(), digest)


def test_a_directory_with_only_mounts_has_no_cache_yet_and_is_not_broken(tmp_path: Path) -> None:
    from cacheport.ops.preflight import layout_problem

    publish(Layout(tmp_path / "d"), "latest", [pip_archive(tmp_path / "pip.tgz")], limits=LIMITS)
    problem = layout_problem(str(tmp_path / "d"))
    assert problem is not None and not problem.broken and "only cache mounts" in problem.reason
    # and the first export swapped in keeps them
    local_cache(tmp_path / "d.new")
    assert promote(Swap(new=str(tmp_path / "d.new"), current=str(tmp_path / "d")))
    assert Layout(tmp_path / "d").names() == ["latest", "latest.mounts"] and layout_problem(str(tmp_path / "d")) is None

"""status/prune decisions and the doctor's synthetic cache, without a registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest

from cacheport.errors import ConfigError
from cacheport.oci.format import (
    CACHECONFIG,
    Descriptor,
    Manifest,
    cache_format,
    created_at,
    sha256_digest,
    synthetic_cache,
)
from cacheport.oci.layout import Layout
from cacheport.ops.inventory import CacheTag, choose, directory_usage, list_caches, parse_age

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def tag(name: str, days: int, role: str = "", digest: str = "", fmt: str | None = "index") -> CacheTag:
    return CacheTag(name, digest or f"sha256:{name}", fmt, 100, NOW - timedelta(days=days), role)


def test_older_than_keeps_the_default_branch_and_kept_tags() -> None:
    tags = [tag("main", 90, "default branch"), tag("old", 30), tag("new", 1), tag("pinned", 60), tag("img", 99, fmt=None)]
    out = {p.tag.tag: (p.delete, p.reason) for p in choose(tags, older_than=timedelta(days=14), keep={"pinned"}, now=NOW)}
    assert out == {
        "main": (False, "default branch (name it to delete)"),
        "old": (True, "not updated for 30 days"),
        "new": (False, "recent"),
        "pinned": (False, "kept"),
        "img": (False, "not a cache"),
    }


def test_naming_a_tag_deletes_it_even_the_default_branch() -> None:
    out = choose([tag("main", 0, "default branch")], named={"main"}, now=NOW)
    assert [(p.delete, p.reason) for p in out] == [(True, "named")]


def test_branches_gone() -> None:
    tags = [tag("main", 0, "default branch"), tag("feature-a", 0), tag("feature-b", 0)]
    out = {p.tag.tag: p.delete for p in choose(tags, live_branch_tags={"main", "feature-a"}, now=NOW)}
    assert out == {"main": False, "feature-a": False, "feature-b": True}


def test_a_tag_sharing_its_manifest_with_a_kept_one_stays() -> None:
    tags = [tag("main", 90, "default branch", digest="sha256:same"), tag("copy", 90, digest="sha256:same")]
    out = {p.tag.tag: (p.delete, p.reason) for p in choose(tags, older_than=timedelta(days=1), now=NOW)}
    assert out["copy"] == (False, "shares its manifest with a tag that stays")


@pytest.mark.parametrize("text, expected", [("14d", timedelta(days=14)), ("12h", timedelta(hours=12)),
                                            ("2w", timedelta(weeks=2)), ("90m", timedelta(minutes=90))])
def test_ages(text: str, expected: timedelta) -> None:
    assert parse_age(text) == expected


def test_bad_age_is_one_line() -> None:
    with pytest.raises(ConfigError, match="expected a number and a unit"):
        parse_age("two weeks")


def test_synthetic_caches_are_in_the_two_formats() -> None:
    blobs, index = synthetic_cache(image_manifest=False)
    assert cache_format(index) == "index" and index.is_index
    assert {d.digest for d, _ in blobs} == {d.digest for d in index.descriptors()}
    _, manifest = synthetic_cache(image_manifest=True)
    assert cache_format(manifest) == "image-manifest"
    assert manifest.json["config"]["mediaType"] == CACHECONFIG


def test_created_at_reads_buildkit_nanoseconds() -> None:
    ds = [Descriptor("x", "sha256:a", 1, {"buildkit/createdat": "2026-11-01T10:00:00.123456789Z"}),
          Descriptor("x", "sha256:b", 1, {"buildkit/createdat": "2026-11-02T10:00:00Z"}), Descriptor("x", "sha256:c", 1)]
    assert created_at(ds) == datetime(2026, 11, 2, 10, tzinfo=UTC)
    assert created_at([]) is None


def test_an_image_is_not_a_cache() -> None:
    image = Manifest.from_json({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                           "digest": "sha256:" + "1" * 64, "size": 2}, "layers": []})
    assert cache_format(image) is None


def test_a_directory_store_counts_stale_blobs_and_prunes_what_only_one_cache_used(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "cache")
    blobs, manifest = synthetic_cache(image_manifest=True)
    for d, data in blobs:
        layout.put_blob(d, [data])
    layout.put_manifest("latest", manifest)
    stale = Descriptor("application/octet-stream", sha256_digest(b"y" * 7), 7)
    layout.put_blob(stale, [b"y" * 7])
    info = directory_usage(layout)
    assert info is not None
    assert (info["blobs"], info["stale_blobs"], info["stale_size"]) == (4, 1, 7)
    (only,) = list_caches(layout)
    assert (only.tag, only.format, only.digest) == ("latest", "image-manifest", manifest.digest)
    assert json.loads((tmp_path / "cache" / "index.json").read_text())["manifests"][0]["annotations"] == {
        "org.opencontainers.image.ref.name": "latest"}
    assert layout.delete("latest") and not layout.delete("latest")
    assert layout.names() == [] and layout.blobs() == {}


def test_other_keys_are_safe_from_each_other() -> None:
    tags = [tag("main", 0), tag("arm64-main", 90), tag("arm64-gone", 90), tag("feature-a", 0)]
    out = {p.tag.tag: p.delete for p in choose(tags, live_branch_tags={"main", "feature-a"}, default_tag="main", now=NOW)}
    assert out == {"main": False, "arm64-main": False, "arm64-gone": True, "feature-a": False}
    aged = {p.tag.tag: p.delete for p in choose(tags, older_than=timedelta(days=14), default_tag="main", now=NOW)}
    assert aged["arm64-main"] is False  # the default branch's cache under another key is protected too


# --- cache mounts beside their caches ----------------------------------------------------------------------------


def mounts_of(name: str, days: int, digest: str = "") -> CacheTag:
    return CacheTag(f"{name}.mounts", digest or f"sha256:{name}.mounts", "mounts", 50, NOW - timedelta(days=days))


def test_mounts_go_with_their_branch_and_are_never_a_stray_branch() -> None:
    tags = [tag("main", 0, "default branch"), attrs.evolve(tag("feature-a", 0), mounts=mounts_of("feature-a", 0)),
            tag("feature-b", 0), mounts_of("main", 0), mounts_of("feature-a-old", 30), mounts_of("feature-c", 0)]
    out = {p.tag.tag: (p.delete, p.reason) for p in choose(tags, live_branch_tags={"main", "feature-a", "feature-c"},
                                                             now=NOW)}
    assert out == {"main": (False, "default branch (name it to delete)"), "feature-a": (False, "branch exists"),
                   "feature-b": (True, "its branch is gone"), "main.mounts": (False, "branch exists"),
                   "feature-a-old.mounts": (True, "its branch is gone"),
                   "feature-c.mounts": (False, "branch exists")}
    out = {p.tag.tag: p.delete for p in choose(tags, named={"feature-c"}, default_tag="main", now=NOW)}
    assert out["feature-c.mounts"] and not out["main.mounts"] and not out["feature-a"]
    aged = {p.tag.tag: p.delete for p in choose(tags, older_than=timedelta(days=14), default_tag="main", now=NOW)}
    assert aged["feature-a-old.mounts"] and not aged["main.mounts"]


def test_mounts_that_share_a_manifest_with_ones_that_stay_are_not_deleted() -> None:
    shared = mounts_of("x", 0, digest="sha256:same")
    tags = [attrs.evolve(tag("main", 0, "default branch"), mounts=shared),
            attrs.evolve(tag("old", 30), mounts=attrs.evolve(shared, tag="old.mounts"))]
    (main, old) = choose(tags, older_than=timedelta(days=14), now=NOW)
    assert old.delete and old.tag.mounts is None and not main.delete


def test_listing_puts_mounts_beside_their_cache(tmp_path: Path) -> None:
    import gzip

    from cacheport.mounts import CacheMount, MountArchive, MountLimits
    from cacheport.mounts.archive import digest_of
    from cacheport.ops.mounts_store import publish

    layout = Layout(tmp_path / "d")
    blobs, manifest = synthetic_cache(image_manifest=True)
    for d, data in blobs:
        layout.put_blob(d, [data])
    layout.put_manifest("main", manifest)
    path = tmp_path / "m.tgz"
    path.write_bytes(gzip.compress(bytes(1024)))
    archive = MountArchive(CacheMount("pip", "/root/.cache/pip"), path, digest_of(path), path.stat().st_size)
    publish(layout, "main", [archive], limits=MountLimits())
    publish(layout, "gone", [archive], limits=MountLimits())
    listed = list_caches(layout, {"main": "this branch", "gone": "MR target"})
    assert [(t.tag, t.format, t.role) for t in listed] == [("gone.mounts", "mounts", "MR target"),
                                                          ("main", "image-manifest", "this branch")]
    main = listed[1]
    assert main.mounts is not None and main.mounts.tag == "main.mounts" and main.mounts.updated is not None
    assert main.as_dict()["mounts"]["size"] == main.mounts.size > archive.size
    assert "mounts" not in listed[0].as_dict()


def test_a_signature_goes_with_the_last_cache_that_points_at_what_it_signs() -> None:
    from cacheport.signing import signature_tag

    old, current, gone = "sha256:" + "a" * 64, "sha256:" + "b" * 64, "sha256:" + "c" * 64
    tags = [tag("main", 1, "default branch", current), tag("feature", 40, digest=gone),
            *(tag(signature_tag(d), 1, fmt=None) for d in (old, current, gone))]
    decided = {p.tag.tag: (p.delete, p.reason) for p in choose(tags, older_than=timedelta(days=30), now=NOW)}
    assert decided[signature_tag(current)] == (False, "the signature of a cache that stays")
    assert decided[signature_tag(old)] == (True, "the signature of a cache that is gone")  # an earlier build's
    assert decided[signature_tag(gone)] == (True, "the signature of a cache that is gone")
    assert decided["feature"][0] and not decided["main"][0]


def test_the_signature_of_mounts_beside_a_cache_stays_with_them_and_goes_with_them() -> None:
    from cacheport.signing import signature_tag

    kept, gone = "sha256:" + "d" * 64, "sha256:" + "e" * 64
    main = attrs.evolve(tag("main", 1, "default branch"), mounts=tag("main.mounts", 1, digest=kept, fmt="mounts"))
    old = attrs.evolve(tag("old", 40), mounts=tag("old.mounts", 40, digest=gone, fmt="mounts"))
    tags = [main, old, *(tag(signature_tag(d), 1, fmt=None) for d in (kept, gone))]
    decided = {p.tag.tag: (p.delete, p.reason) for p in choose(tags, older_than=timedelta(days=30), now=NOW)}
    assert decided[signature_tag(kept)] == (False, "the signature of a cache that stays")
    assert decided[signature_tag(gone)] == (True, "the signature of a cache that is gone")
    assert decided["old"][0] and not decided["main"][0]


class _LaggingStore:
    """A store that deletes in the background: a deleted name is still listed the first ``lag`` times after."""

    def __init__(self, names: list[str], lag: int) -> None:
        self.listed, self.gone, self.lag = list(names), set(), lag

    def delete(self, name: str, digest: str | None = None) -> bool:
        self.gone.add(name)
        return True

    def names(self) -> list[str]:
        if self.gone and self.lag:
            self.lag -= 1
            return self.listed
        return [n for n in self.listed if n not in self.gone]


def test_a_store_that_lists_a_deleted_name_for_a_moment_still_counts_it_deleted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cacheport.ops import inventory

    monkeypatch.setattr(inventory.time, "sleep", lambda _s: None)
    doomed = [tag("old", 40), tag("older", 50)]
    assert inventory.delete_each(_LaggingStore(["main", "old", "older"], lag=2), doomed) == ["old", "older"]  # type: ignore[arg-type]
    # listed still after every look: written again, not deleted
    assert inventory.delete_each(_LaggingStore(["main", "old", "older"], lag=99), doomed) == []  # type: ignore[arg-type]

"""status/prune decisions and the doctor's synthetic cache, without a registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cacheport.distribution import Descriptor, Manifest
from cacheport.errors import ConfigError
from cacheport.lifecycle import (
    CACHECONFIG,
    CacheTag,
    cache_format,
    choose,
    created_at,
    local_status,
    parse_age,
    synthetic_cache,
)

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


def test_local_status_counts_stale_blobs(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (blobs / ("a" * 64)).write_text(json.dumps({"layers": [{"digest": "sha256:" + "b" * 64}]}))
    (blobs / ("b" * 64)).write_bytes(b"x" * 10)
    (blobs / ("c" * 64)).write_bytes(b"y" * 7)
    (tmp_path / "index.json").write_text(json.dumps({"manifests": [{"digest": "sha256:" + "a" * 64}]}))
    info = local_status(tmp_path)
    assert (info["blobs"], info["stale_blobs"], info["stale_size"]) == (3, 1, 7)


def test_other_keys_are_safe_from_each_other() -> None:
    tags = [tag("main", 0), tag("arm64-main", 90), tag("arm64-gone", 90), tag("feature-a", 0)]
    out = {p.tag.tag: p.delete for p in choose(tags, live_branch_tags={"main", "feature-a"}, default_tag="main", now=NOW)}
    assert out == {"main": False, "arm64-main": False, "arm64-gone": True, "feature-a": False}
    aged = {p.tag.tag: p.delete for p in choose(tags, older_than=timedelta(days=14), default_tag="main", now=NOW)}
    assert aged["arm64-main"] is False  # the default branch's cache under another key is protected too

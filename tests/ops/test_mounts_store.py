"""Mount archives to and from a store session: a real OCI layout directory, and the fake registry over HTTP.
Fetch brings back the same bytes; publish sends nothing unchanged; a missing, foreign or hostile artifact and
a store outage are outcomes, never exceptions."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cacheport.errors import RegistryError
from cacheport.mounts import CacheMount, MountArchive, MountLimits
from cacheport.mounts.archive import digest_of
from cacheport.mounts.artifact import layers_of, manifest_for, mounts_name
from cacheport.oci.format import synthetic_cache
from cacheport.oci.layout import Layout
from cacheport.oci.registry import Registry
from cacheport.oci.repository import RegistryRepository
from cacheport.ops.mounts_store import chain, fetch, publish
from tests.fakes.caches import mount_archive
from tests.fakes.registry import FAST, FakeRegistry

PIP = CacheMount("pip", "/root/.cache/pip", "locked", 0, 0, 0o755, stage="0", line=3)
GO = CacheMount("gomod", "/go/pkg/mod")
LIMITS = MountLimits(per_mount=8 << 20, total=16 << 20)


@pytest.fixture
def archives(tmp_path: Path) -> list[MountArchive]:
    return [mount_archive(tmp_path / "pip.tgz", PIP, {"a.whl": os.urandom(300_000)}),
            mount_archive(tmp_path / "go.tgz", GO, {"mod/x": b"module x\n"})]


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "cache")


def test_publish_then_fetch_gives_the_same_bytes(layout: Layout, archives: list[MountArchive],
                                                 tmp_path: Path) -> None:
    saved = publish(layout, "main", archives, limits=LIMITS)
    assert [(o.id, o.action, o.name) for o in saved] == [("pip", "saved", "main.mounts"), ("gomod", "saved",
                                                                                            "main.mounts")]
    got, outcomes = fetch(layout, ["feature", "main"], tmp_path / "in", limits=LIMITS)
    assert [(o.id, o.action, o.name) for o in outcomes] == [("pip", "restored", "main.mounts"),
                                                            ("gomod", "restored", "main.mounts")]
    assert [g.path.read_bytes() for g in got] == [a.path.read_bytes() for a in archives]
    assert [g.mount.target for g in got] == [PIP.target, GO.target]


def test_an_unchanged_publish_writes_nothing_and_one_change_sends_only_that_layer(
        layout: Layout, archives: list[MountArchive], tmp_path: Path) -> None:
    publish(layout, "main", archives, limits=LIMITS)
    before = layout.manifest_digest("main.mounts")
    again = publish(layout, "main", archives, limits=LIMITS)
    assert {o.action for o in again} == {"unchanged"}
    assert layout.manifest_digest("main.mounts") == before
    changed = mount_archive(tmp_path / "go2.tgz", GO, {"mod/x": b"module x\n", "mod/y": b"module y\n"})
    written: list[str] = []
    put_blob = layout.put_blob
    layout.put_blob = lambda d, chunks, progress=None: (written.append(d.digest), put_blob(d, chunks, progress))
    third = publish(layout, "main", [archives[0], changed], limits=LIMITS)
    assert [o.action for o in third] == ["unchanged", "saved"]
    assert changed.digest in written and archives[0].digest not in written
    manifest = layout.get_manifest("main.mounts")
    assert manifest is not None
    assert [d.digest for _, d in layers_of(manifest)] == [archives[0].digest, changed.digest]


def test_a_dropped_mount_rewrites_the_manifest_without_uploading(layout: Layout,
                                                                 archives: list[MountArchive]) -> None:
    publish(layout, "main", archives, limits=LIMITS)
    outcomes = publish(layout, "main", archives[:1], limits=LIMITS)
    assert [o.action for o in outcomes] == ["unchanged"]
    manifest = layout.get_manifest("main.mounts")
    assert manifest is not None and [m.id for m, _ in layers_of(manifest)] == ["pip"]


def test_limits_leave_out_what_is_too_large(layout: Layout, archives: list[MountArchive]) -> None:
    small = MountLimits(per_mount=archives[0].size - 1, total=1 << 30)
    assert [o.action for o in publish(layout, "main", archives, limits=small)] == ["too-large", "saved"]
    total = MountLimits(per_mount=1 << 30, total=archives[0].size)
    assert [o.action for o in publish(layout, "b", archives, limits=total)] == ["saved", "too-large"]
    # the expanded size counts too: 1 MiB of zeros in a tiny archive
    zeros = mount_archive(layout.directory.parent / "zeros.tgz", PIP, {"z": bytes(1 << 20)})
    expanded = MountLimits(per_mount=zeros.size * 10, total=1 << 30)
    [outcome] = publish(layout, "c", [zeros], limits=expanded)
    assert outcome.action == "too-large" and "expands to more than" in outcome.detail


def test_a_restore_over_a_limit_names_the_limit(layout: Layout, archives: list[MountArchive], tmp_path: Path) -> None:
    publish(layout, "main", archives, limits=LIMITS)
    small = MountLimits(per_mount=archives[0].size - 1, total=1 << 30)
    _, outcomes = fetch(layout, ["main"], tmp_path / "in", limits=small)
    assert outcomes[0].detail == (f"{archives[0].size} bytes is over one mount's size limit ({small.per_mount} "
                                  "bytes); not restored")
    total = MountLimits(per_mount=1 << 30, total=archives[0].size)
    _, outcomes = fetch(layout, ["main"], tmp_path / "in2", limits=total)
    assert outcomes[1].detail == f"{archives[1].size} bytes is over all mounts' size limit ({total.total} bytes); " \
                                 "not restored"


def test_a_hostile_archive_is_neither_saved_nor_restored(layout: Layout, tmp_path: Path) -> None:
    path = tmp_path / "evil.tgz"
    with gzip.open(path, "wb") as gz, tarfile.open(fileobj=gz, mode="w|") as tar:
        info = tarfile.TarInfo("../../etc/cron.d/x")
        tar.addfile(info, io.BytesIO(b""))
    evil = MountArchive(PIP, path, digest_of(path), path.stat().st_size)
    [outcome] = publish(layout, "main", [evil], limits=LIMITS)
    assert outcome.action == "refused" and "points outside the mount" in outcome.detail
    # stored by someone else anyway: fetch refuses it, and leaves no file behind
    layout.put_blob(layers_of(manifest_for([evil]))[0][1], [path.read_bytes()])
    from cacheport.mounts.artifact import EMPTY_CONFIG, EMPTY_DATA
    layout.put_blob(EMPTY_CONFIG, [EMPTY_DATA])
    layout.put_manifest("main.mounts", manifest_for([evil]))
    got, [restored] = fetch(layout, ["main"], tmp_path / "in", limits=LIMITS)
    assert got == [] and restored.action == "refused"
    assert list((tmp_path / "in").iterdir()) == []


def test_missing_foreign_and_wanted(layout: Layout, archives: list[MountArchive], tmp_path: Path) -> None:
    got, outcomes = fetch(layout, ["feature", "main"], tmp_path / "in", limits=LIMITS, wanted=[PIP])
    assert got == [] and [(o.id, o.action) for o in outcomes] == [("pip", "missed")]
    # a layer cache where the mounts should be is passed over for the next name
    blobs, cache = synthetic_cache(image_manifest=True)
    for d, data in blobs:
        layout.put_blob(d, [data])
    layout.put_manifest("feature.mounts", cache)
    publish(layout, "main", archives, limits=LIMITS)
    other = CacheMount("npm", "/root/.npm")
    got, outcomes = fetch(layout, ["feature", "main"], tmp_path / "in", limits=LIMITS, wanted=[PIP, other])
    assert [(o.id, o.action) for o in outcomes] == [("pip", "restored"), ("npm", "missed")]
    assert [g.mount.id for g in got] == ["pip"]


def test_each_mount_comes_from_the_first_name_that_has_it(layout: Layout, archives: list[MountArchive],
                                                          tmp_path: Path) -> None:
    # The branch saved before the Dockerfile had the go mount; the default branch has both (docs: "the first
    # that has the mount").
    publish(layout, "main", archives, limits=LIMITS)
    publish(layout, "feature", archives[:1], limits=LIMITS)
    got, outcomes = fetch(layout, ["feature", "main"], tmp_path / "in", limits=LIMITS, wanted=[PIP, GO])
    assert [(o.id, o.action, o.name) for o in outcomes] == [("pip", "restored", "feature.mounts"),
                                                            ("gomod", "restored", "main.mounts")]
    assert [g.path.read_bytes() for g in got] == [a.path.read_bytes() for a in archives]
    # a mount no name has is missed, and says where it was looked for
    npm = CacheMount("npm", "/root/.npm")
    _, [missed] = fetch(layout, ["feature", "main"], tmp_path / "in2", limits=LIMITS, wanted=[npm])
    assert (missed.action, missed.detail) == ("missed", "no mount 'npm' under feature.mounts, main.mounts")


def test_a_fixed_cache_has_one_mounts_name() -> None:
    assert chain(["cache", "cache", "cache"]) == ["cache.mounts"]
    assert chain(["feature", "main"]) == ["feature.mounts", "main.mounts"]


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    with FakeRegistry() as registry:
        yield registry


def test_through_a_registry_and_an_outage(fake: FakeRegistry, archives: list[MountArchive], tmp_path: Path) -> None:
    with RegistryRepository(Registry(fake.host, retry=FAST), "app/cache") as session:
        assert {o.action for o in publish(session, "main", archives, limits=LIMITS)} == {"saved"}
        puts = len(fake.methods("PUT"))
        assert {o.action for o in publish(session, "main", archives, limits=LIMITS)} == {"unchanged"}
        assert len(fake.methods("PUT")) == puts  # nothing sent the second time
        got, _ = fetch(session, ["main"], tmp_path / "in", limits=LIMITS)
        assert [g.path.read_bytes() for g in got] == [a.path.read_bytes() for a in archives]
        fake.faults += [("GET", r"/manifests/", 500, {})] * 10
        got, outcomes = fetch(session, ["main"], tmp_path / "in2", limits=LIMITS)
        assert got == [] and [o.action for o in outcomes] == ["failed"] and "HTTP 500" in outcomes[0].detail
    fake.faults.clear()
    with RegistryRepository(Registry("127.0.0.1:9", retry=FAST), "app/cache") as down:
        outcomes = publish(down, "main", archives, limits=LIMITS)
        assert {o.action for o in outcomes} == {"failed"}
        _, missed = fetch(down, ["main"], tmp_path / "in3", limits=LIMITS)
        assert [o.action for o in missed] == ["failed"]


def test_a_fixed_tag_store_lists_its_mounts_too(fake: FakeRegistry, archives: list[MountArchive]) -> None:
    with RegistryRepository(Registry(fake.host, retry=FAST), "app/cache",
                            only=("buildcache", mounts_name("buildcache"))) as session:
        publish(session, "buildcache", archives, limits=LIMITS)
        fake.add_manifest("app/cache", "other", {"schemaVersion": 2, "mediaType": "x", "manifests": []})
        assert session.names() == [mounts_name("buildcache")]


def test_two_mounts_with_the_same_bytes_and_the_dockerfiles_settings_now(layout: Layout, tmp_path: Path) -> None:
    one = mount_archive(tmp_path / "one.tgz", PIP, {})
    two = MountArchive(GO, one.path, one.digest, one.size)  # two empty caches: the same archive
    assert [o.action for o in publish(layout, "main", [one, two], limits=LIMITS)] == ["saved", "saved"]
    changed = CacheMount("gomod", "/go/pkg/mod", uid=1000, gid=1000, mode=0o700)
    got, outcomes = fetch(layout, ["main"], tmp_path / "in", limits=LIMITS, wanted=[PIP, changed])
    assert [o.action for o in outcomes] == ["restored", "restored"]
    assert len({g.path for g in got}) == 2 and [g.mount for g in got] == [PIP, changed]


def test_a_mount_as_restored_from_another_name_is_saved_without_its_file(layout: Layout,
                                                                         archives: list[MountArchive],
                                                                         tmp_path: Path) -> None:
    publish(layout, "main", archives, limits=LIMITS)
    got, _ = fetch(layout, ["feature", "main"], tmp_path / "in", limits=LIMITS)
    for g in got:
        g.path.unlink()  # the caller's temporary files are gone; the layers are in the store
    changed = mount_archive(tmp_path / "go2.tgz", GO, {"mod/z": b"new"})
    written: list[str] = []
    put_blob = layout.put_blob
    layout.put_blob = lambda d, chunks, progress=None: (written.append(d.digest), put_blob(d, chunks, progress))
    outcomes = publish(layout, "feature", [got[0], changed], limits=LIMITS)
    assert [(o.action, o.name) for o in outcomes] == [("saved", "feature.mounts")] * 2
    assert "nothing uploaded" in outcomes[0].detail
    assert changed.digest in written and got[0].digest not in written
    again, _ = fetch(layout, ["feature"], tmp_path / "again", limits=LIMITS)
    assert [a.path.read_bytes() for a in again] == [archives[0].path.read_bytes(), changed.path.read_bytes()]


def test_a_failed_upload_keeps_what_was_stored_for_that_mount(layout: Layout, archives: list[MountArchive],
                                                               tmp_path: Path) -> None:
    publish(layout, "main", archives, limits=LIMITS)
    gone = mount_archive(tmp_path / "gone.tgz", GO, {"mod/q": b"q"})
    newer = mount_archive(tmp_path / "pip2.tgz", PIP, {"b.whl": b"b"})
    real = layout.put_blob

    def refuse(d, chunks, progress=None):  # type: ignore[no-untyped-def]
        if d.digest == gone.digest:
            raise RegistryError("HTTP 500 from the store")
        return real(d, chunks, progress)

    layout.put_blob = refuse  # type: ignore[method-assign]
    outcomes = publish(layout, "main", [newer, gone], limits=LIMITS)
    assert [o.action for o in outcomes] == ["saved", "failed"] and "HTTP 500" in outcomes[1].detail
    manifest = layout.get_manifest("main.mounts")
    assert manifest is not None
    assert [(m.id, d.digest) for m, d in layers_of(manifest)] == [("pip", newer.digest), ("gomod", archives[1].digest)]
    # only a failed upload: the stored artifact stays exactly as it was
    before = layout.manifest_digest("main.mounts")
    outcomes = publish(layout, "main", [newer, gone], limits=LIMITS)
    assert [o.action for o in outcomes] == ["unchanged", "failed"]
    assert layout.manifest_digest("main.mounts") == before


def test_a_download_that_breaks_off_continues_where_it_stopped(layout: Layout, archives: list[MountArchive],
                                                               tmp_path: Path) -> None:
    publish(layout, "main", archives[:1], limits=LIMITS)
    real = layout.open_blob
    offsets: list[int] = []

    @contextlib.contextmanager
    def breaking(digest: str, offset: int = 0) -> Iterator[Iterator[bytes]]:
        offsets.append(offset)

        def chunks() -> Iterator[bytes]:
            with real(digest, offset) as inner:
                for chunk in inner:
                    yield chunk[:50_000]
                    if len(offsets) < 3:
                        raise RegistryError("the blob stream broke")
                    yield chunk[50_000:]

        yield chunks()

    layout.open_blob = breaking  # type: ignore[method-assign]
    got, [outcome] = fetch(layout, ["main"], tmp_path / "in", limits=LIMITS)
    assert outcome.action == "restored" and offsets == [0, 50_000, 100_000]
    assert got[0].path.read_bytes() == archives[0].path.read_bytes()

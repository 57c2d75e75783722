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
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cacheport.errors import RegistryError
from cacheport.mounts import CacheMount, MountArchive, MountLimits
from cacheport.mounts.archive import digest_of
from cacheport.mounts.artifact import EMPTY_CONFIG, EMPTY_DATA, LAYER_TYPE, layers_of, manifest_for, mounts_name
from cacheport.oci.format import Descriptor, synthetic_cache
from cacheport.oci.layout import Layout
from cacheport.oci.registry import Registry
from cacheport.oci.repository import RegistryRepository
from cacheport.ops.mounts_store import chain, fetch, publish
from cacheport.ops.signatures import StoreSigning
from cacheport.records import StoreSession
from cacheport.signing import Policy, Signer, key_id, public_der, signature_tag
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


# --- trust = "signed": a protected job restores only signed mounts, by digest, and signs what it saves --------


def signing_for(key: Ed25519PrivateKey | None, *, signer: Ed25519PrivateKey | None = None) -> StoreSigning:
    der = public_der(signer or key)
    return StoreSigning(Policy((Signer(key_id(der), der),), "CACHE_SIGNING_KEY", timedelta(days=30), "group/app",
                               True), key)


def attacker_artifact(session: RegistryRepository, name: str, archive: MountArchive) -> str:
    """An artifact written straight to the registry, as a job with push rights and no key can."""
    session.put_blob(Descriptor(LAYER_TYPE, archive.digest, archive.size), [archive.path.read_bytes()])
    session.put_blob(EMPTY_CONFIG, [EMPTY_DATA])
    manifest = manifest_for([archive], None, name)
    session.put_manifest(name, manifest)
    return manifest.digest


@pytest.fixture
def repo(fake: FakeRegistry) -> Iterator[RegistryRepository]:
    with RegistryRepository(Registry(fake.host, retry=FAST), "group/app/cache") as session:
        yield session


def test_a_protected_save_signs_the_manifest_it_wrote_and_a_signed_artifact_restores(
        repo: RegistryRepository, archives: list[MountArchive], tmp_path: Path) -> None:
    signing = signing_for(Ed25519PrivateKey.generate())
    saved = publish(repo, "main", archives, limits=LIMITS, signing=signing)
    digest = repo.manifest_digest("main.mounts")
    assert digest is not None and [o.action for o in saved] == ["saved", "saved"]
    assert all(o.detail.endswith(f"signed ({digest})") for o in saved)
    assert repo.get_manifest(signature_tag(digest)) is not None
    got, outcomes = fetch(repo, ["main"], tmp_path / "in", limits=LIMITS, signing=signing)
    assert [(o.action, o.name) for o in outcomes] == [("restored", "main.mounts")] * 2
    assert [g.path.read_bytes() for g in got] == [a.path.read_bytes() for a in archives]
    assert {o.action for o in publish(repo, "main", archives, limits=LIMITS, signing=signing)} == {"unchanged"}


def test_an_attacker_s_unsigned_artifact_is_refused_and_the_next_name_or_a_miss_follows(
        repo: RegistryRepository, archives: list[MountArchive], tmp_path: Path) -> None:
    signing = signing_for(Ed25519PrivateKey.generate())
    publish(repo, "main", archives, limits=LIMITS, signing=signing)
    publish(repo, "develop", archives[:1], limits=LIMITS, signing=signing)
    evil = mount_archive(tmp_path / "evil.tgz", PIP, {"a.whl": b"poisoned"})
    foreign = attacker_artifact(repo, "main.mounts", evil)
    got, outcomes = fetch(repo, ["main", "develop"], tmp_path / "in", limits=LIMITS, wanted=[PIP], signing=signing)
    assert [(o.action, o.name) for o in outcomes] == [("refused", "main.mounts"), ("restored", "develop.mounts")]
    assert outcomes[0].detail == f"not signed ({foreign})"
    assert [g.path.read_bytes() for g in got] == [archives[0].path.read_bytes()]
    got, outcomes = fetch(repo, ["main"], tmp_path / "in2", limits=LIMITS, wanted=[PIP, GO], signing=signing)
    assert got == [] and [(o.id, o.action) for o in outcomes] == [("pip", "refused"), ("gomod", "refused")]
    # each mount falls back on its own: develop's holds pip only, and gomod, refused, has nothing more to say
    got, outcomes = fetch(repo, ["main", "develop"], tmp_path / "in4", limits=LIMITS, wanted=[PIP, GO],
                          signing=signing)
    assert [(o.id, o.action, o.name) for o in outcomes] == [("pip", "refused", "main.mounts"),
                                                            ("gomod", "refused", "main.mounts"),
                                                            ("pip", "restored", "develop.mounts")]
    # a job that is not a protected pipeline reads unverified, as it reads layer caches
    got, _ = fetch(repo, ["main"], tmp_path / "in3", limits=LIMITS, wanted=[PIP])
    assert [g.path.read_bytes() for g in got] == [evil.path.read_bytes()]


def test_a_signature_passes_only_for_its_own_name_and_key(repo: RegistryRepository, archives: list[MountArchive],
                                                         tmp_path: Path) -> None:
    key, theirs = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    signing = signing_for(key)
    publish(repo, "develop", archives, limits=LIMITS, signing=signing)
    develop = repo.get_manifest("develop.mounts")
    assert develop is not None
    repo.put_manifest("main.mounts", develop)  # a signed artifact of another name, replayed
    _, outcomes = fetch(repo, ["main"], tmp_path / "in", limits=LIMITS, wanted=[PIP], signing=signing)
    assert "signed as the cache 'develop.mounts', not 'main.mounts'" in outcomes[0].detail
    digest = attacker_artifact(repo, "main.mounts", archives[0])
    signing_for(key).sign(repo, "main", digest)  # a layer cache's signature (the name without .mounts)
    _, outcomes = fetch(repo, ["main"], tmp_path / "in2", limits=LIMITS, wanted=[PIP], signing=signing)
    assert "signed as the cache 'main', not 'main.mounts'" in outcomes[0].detail
    signing_for(theirs).sign(repo, "main.mounts", digest)  # the attacker's own key
    _, outcomes = fetch(repo, ["main"], tmp_path / "in3", limits=LIMITS, wanted=[PIP], signing=signing)
    assert outcomes[0].action == "refused" and "signed by an unknown key" in outcomes[0].detail


def test_a_tag_moved_after_the_check_still_yields_the_verified_bytes(
        repo: RegistryRepository, archives: list[MountArchive], tmp_path: Path) -> None:
    signing = signing_for(Ed25519PrivateKey.generate())
    publish(repo, "main", archives[:1], limits=LIMITS, signing=signing)
    evil = mount_archive(tmp_path / "evil.tgz", PIP, {"a.whl": b"poisoned"})

    class Racing:
        """The check, then the attacker moves the tag at once."""

        def check(self, session: StoreSession, name: str, digest: str) -> object:
            claim = signing.check(session, name, digest)
            attacker_artifact(repo, name, evil)
            return claim

    got, [outcome] = fetch(repo, ["main"], tmp_path / "in", limits=LIMITS, signing=Racing())  # type: ignore[arg-type]
    assert outcome.action == "restored" and got[0].path.read_bytes() == archives[0].path.read_bytes()
    assert repo.get_manifest("main.mounts") is not None  # the tag did move: to the attacker's
    [(_, layer)] = layers_of(repo.get_manifest("main.mounts"))  # type: ignore[arg-type]
    assert layer.digest == evil.digest


def test_a_protected_save_over_an_unsigned_artifact_writes_and_signs_its_own(
        repo: RegistryRepository, archives: list[MountArchive], tmp_path: Path) -> None:
    signing = signing_for(Ed25519PrivateKey.generate())
    publish(repo, "main", archives, limits=LIMITS)  # the same bytes, unsigned: not what is stored, for signing
    saved = publish(repo, "main", archives, limits=LIMITS, signing=signing)
    assert [o.action for o in saved] == ["saved", "saved"] and all("nothing uploaded" in o.detail for o in saved)
    got, _ = fetch(repo, ["main"], tmp_path / "in", limits=LIMITS, signing=signing)
    assert len(got) == 2
    keyless = signing_for(None, signer=Ed25519PrivateKey.generate())  # a job without the key
    unsigned = publish(repo, "develop", archives, limits=LIMITS, signing=keyless)
    assert {o.action for o in unsigned} == {"failed"}
    assert "written but not signed: this job has no key to sign with ($CACHE_SIGNING_KEY" in unsigned[0].detail

"""Keeping build records (cacheport.ops.history): in a registry repository as artifacts and in a directory; the
bound per branch; two writers at once never losing a record; hostile records and refusing registries never
failing a build; untrusted jobs never writing where protected builds read."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cacheport.entry import CacheEntry
from cacheport.errors import RecordError, RegistryError
from cacheport.kit import registry_client
from cacheport.oci.artifact import artifact
from cacheport.oci.format import OCI_MANIFEST, sha256_digest
from cacheport.oci.repository import RegistryRepository
from cacheport.ops.history import (
    DirectoryShelf,
    Shelf,
    Shelved,
    StoreShelf,
    directory_for,
    keep,
    leave_record,
    open_shelf,
    read_records,
    settings_of,
    signing_of,
)
from cacheport.ops.inventory import list_caches
from cacheport.ops.recorder import Recorder
from cacheport.ops.signatures import StoreSigning
from cacheport.plan import Plan
from cacheport.records import CacheStore, Context, Setting, ShownSetting, Source, Trust
from cacheport.report import BuildReport, ImportReport, Steps
from cacheport.report import record as rec
from cacheport.signing import is_signature_tag, public_der, signature_tag
from tests.fakes.registry import FakeRegistry

T0 = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
REPO = "group/app/cache"


def record(i: int, branch: str = "main", when: datetime | None = None) -> rec.BuildRecord:
    entry = CacheEntry("registry", {"ref": f"127.0.0.1:1/{REPO}:{branch}"})
    report = BuildReport("succeeded", steps=Steps(3, i % 4 and 3, 0 if i % 4 else 3),
                         imports=[ImportReport(entry, "hit" if i % 4 else "missed")], wall_seconds=1.0 + i)
    return rec.record_of(report, Context("gitlab", "group/app", branch=branch), "gitlab", {},
                         now=when or T0 + timedelta(seconds=i))


def plan(*, writes: bool = True, protected: bool = True, mode: str = "branch", read_only: bool = False,
         provider: str = "gitlab", **settings: object) -> Plan:
    trust = Trust("test", "a test", mode=mode, writes=writes, protected=protected)
    shown = tuple(ShownSetting(k.replace("_", "-"), Setting(v, Source("cli", k))) for k, v in settings.items())
    return Plan(Context(provider, "group/app", branch="main", trust=trust), "gitlab", (), (), settings=shown,
                read_only=read_only)


@pytest.fixture
def registry() -> FakeRegistry:
    with FakeRegistry() as fake:
        yield fake  # type: ignore[misc]


def store_shelf(fake: FakeRegistry) -> StoreShelf:
    return StoreShelf(RegistryRepository(registry_client(fake.host), REPO), f"{fake.host}/{REPO}")


def shelves(tmp_path: Path, fake: FakeRegistry) -> list[Shelf]:
    return [DirectoryShelf(tmp_path / "records"), store_shelf(fake)]


def test_records_come_back_oldest_first_and_only_the_newest_per_branch_stay(tmp_path: Path,
                                                                            registry: FakeRegistry) -> None:
    for shelf in shelves(tmp_path, registry):
        written = [record(i) for i in range(6)] + [record(10, "feature")]
        gone = []
        for r in written:
            gone += keep(shelf, r, 4)
        assert gone == [written[0].name, written[1].name]
        back = read_records(shelf)
        assert [r for _n, r in back.records] == written[2:]
        assert [r for _n, r in read_records(shelf, branch="main", last=2).records] == written[4:6]
        assert [n for n, _r in read_records(shelf, branch="feature").records] == [written[-1].name]


def test_a_record_in_a_registry_is_an_artifact_of_its_own_type(registry: FakeRegistry) -> None:
    r = record(1)
    keep(store_shelf(registry), r, 5)
    media_type, data = registry.manifests[REPO][r.name]
    import json

    doc = json.loads(data)
    assert media_type == OCI_MANIFEST and doc["artifactType"] == rec.ARTIFACT_TYPE
    assert [layer["mediaType"] for layer in doc["layers"]] == [rec.MEDIA_TYPE]
    assert doc["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"


def at_once(shelf_of: Callable[[], Shelf], made: list[rec.BuildRecord]) -> list[BaseException]:
    """Each record kept by its own writer (its own shelf, as another job would have), all let go at once."""
    start = threading.Barrier(len(made))
    errors: list[BaseException] = []

    def write(r: rec.BuildRecord) -> None:
        shelf = shelf_of()
        start.wait()
        try:
            keep(shelf, r, 30)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(r,)) for r in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.parametrize("writers", [2, 8])
def test_writers_at_once_never_lose_each_other_s_records(tmp_path: Path, registry: FakeRegistry,
                                                         writers: int) -> None:
    for shelf_of in (lambda: DirectoryShelf(tmp_path / "records"), lambda: store_shelf(registry)):
        same_moment = T0 + timedelta(days=writers)
        made = [record(i, when=same_moment) for i in range(writers)]  # the same millisecond, the same branch
        assert at_once(shelf_of, made) == []
        assert {r.name for r in made} <= {n for n, _r in read_records(shelf_of()).records}


def test_the_bound_never_deletes_a_record_a_writer_has_not_seen(tmp_path: Path) -> None:
    shelf = DirectoryShelf(tmp_path)
    old = [record(i) for i in range(3)]
    for r in old:
        keep(shelf, r, 3)
    newer = record(5)
    shelf.write(newer.name, rec.to_json(newer))  # another job's, written while this one lists
    keep(shelf, record(4), 3)
    names = {n for n, _r in read_records(shelf).records}
    assert newer.name in names and len(names) == 3


def hostile(fake: FakeRegistry, name: str, data: bytes, artifact_type: str = rec.ARTIFACT_TYPE) -> None:
    blobs, manifest = artifact(artifact_type, rec.MEDIA_TYPE, data)
    for _d, content in blobs:
        fake.add_blob(REPO, content)
    fake.add_manifest(REPO, name, manifest.json)


@pytest.mark.parametrize(("data", "artifact_type", "words"), [
    (b"not json", rec.ARTIFACT_TYPE, "not JSON"),
    (b'{"schema": 99, "cacheport": "9.0"}', rec.ARTIFACT_TYPE, "newer cacheport (9.0"),
    (b"{}", "application/vnd.example.other", "not a application/vnd.cacheport.build-record.v1 artifact"),
    (b"x" * (rec.MAX_SIZE + 1), rec.ARTIFACT_TYPE, "at most 65536 are read"),
])
def test_a_bad_record_in_the_store_is_one_line_naming_it_or_left_out(registry: FakeRegistry, data: bytes,
                                                                     artifact_type: str, words: str) -> None:
    shelf = store_shelf(registry)
    good = record(1)
    keep(shelf, good, 5)
    name = rec.record_name("main", T0 + timedelta(hours=1), "0badbad0")
    hostile(registry, name, data, artifact_type)
    with pytest.raises(RecordError) as caught:
        read_records(shelf)
    message = str(caught.value)
    assert name in message and words in message and "\n" not in message
    skipped = read_records(shelf, skip_bad=True)
    assert [n for n, _r in skipped.records] == [good.name]
    assert [n for n, _why in skipped.bad] == [name]


def test_a_record_deleted_since_it_was_listed_is_left_out_without_a_word(registry: FakeRegistry,
                                                                         tmp_path: Path) -> None:
    for shelf in shelves(tmp_path, registry):
        records = [record(i) for i in range(3)]
        for r in records:
            keep(shelf, r, 5)
        listed = shelf.names()
        shelf.delete(records[1].name)
        shelf.names = lambda listed=listed: listed  # type: ignore[method-assign]  # as Pulp lists it for a while
        assert [n for n, _r in read_records(shelf).records] == [records[0].name, records[2].name]


def test_a_record_whose_blob_lies_about_its_digest_is_refused(registry: FakeRegistry) -> None:
    shelf = store_shelf(registry)
    r = record(1)
    keep(shelf, r, 5)
    digest = rec.to_json(r)
    from cacheport.oci.format import sha256_digest

    registry.blobs[REPO][sha256_digest(digest)] = digest.replace(b'"main"', b'"evil"')
    with pytest.raises(RecordError, match="does not match its digest"):
        read_records(shelf)


def test_a_bad_record_never_stops_a_build_from_keeping_its_own(registry: FakeRegistry) -> None:
    shelf = store_shelf(registry)
    hostile(registry, rec.record_name("main", T0, "0badbad0"), b"garbage")
    mine = record(1)
    keep(shelf, mine, 1)  # the bound deletes by name, without reading anything
    assert [n for n, _r in read_records(shelf).records] == [mine.name]


def registry_store(fake: FakeRegistry) -> CacheStore:
    return CacheStore(f"{fake.host}/{REPO}", "image-manifest", lambda b: b, lambda n: n,
                      lambda: RegistryRepository(registry_client(fake.host), REPO))


def report() -> BuildReport:
    return BuildReport("succeeded", steps=Steps(2, 2, 0), wall_seconds=1.0)


def test_a_registry_refusing_the_artifact_is_one_warning_and_the_build_goes_on(registry: FakeRegistry,
                                                                                tmp_path: Path) -> None:
    registry.faults.append(("PUT", "/manifests/cacheport-history-", 400, {}))
    said: list[str] = []
    kept = leave_record(report(), plan(), lambda: registry_store(registry), "registry", {}, tmp_path, said.append)
    assert kept is None
    assert len(said) == 1 and said[0].startswith("warning: history: the build record was not kept in ")
    assert "the build is unaffected" in said[0]


def test_a_registry_refusing_to_delete_keeps_the_record_and_says_so(registry: FakeRegistry, tmp_path: Path) -> None:
    for _ in range(2):
        assert leave_record(report(), plan(history_keep=1), lambda: registry_store(registry), "registry", {},
                            tmp_path, print) is not None
    registry.faults.append(("DELETE", "/manifests/", 403, {}))
    said: list[str] = []
    kept = leave_record(report(), plan(history_keep=1), lambda: registry_store(registry), "registry", {}, tmp_path,
                        said.append)
    assert kept is not None and kept.name in registry.manifests[REPO]
    assert len(said) == 1 and "older build records" in said[0] and "were not deleted" in said[0]


def test_a_job_that_may_not_write_shared_caches_keeps_its_record_in_its_own_directory(registry: FakeRegistry,
                                                                                      tmp_path: Path) -> None:
    for untrusted in (plan(writes=False), plan(read_only=True), plan(mode="protected", protected=False)):
        said: list[str] = []
        kept = leave_record(report(), untrusted, lambda: registry_store(registry), "registry", {}, tmp_path,
                            said.append)
        assert kept is not None and not said
        assert (tmp_path / "cacheport-history" / f"{kept.name}.json").is_file()
    assert not any(n.startswith(rec.PREFIX) for n in registry.manifests.get(REPO, {}))
    trusted = leave_record(report(), plan(), lambda: registry_store(registry), "registry", {}, tmp_path, print)
    assert trusted is not None and trusted.name in registry.manifests[REPO]


# --- a build's record off its critical path: Recorder ------------------------------------------------------------


def recorder(fake: FakeRegistry, tmp_path: Path, said: list[str], **settings: object) -> Recorder:
    return Recorder(plan(**settings), lambda: registry_store(fake), "registry", {}, tmp_path, said.append)


def stored(fake: FakeRegistry) -> list[str]:
    return sorted(n for n in fake.manifests.get(REPO, {}) if rec.is_record(n))


def test_two_builds_recording_at_once_keep_both_records_and_the_next_build_restores_the_bound(
        registry: FakeRegistry, tmp_path: Path) -> None:
    old = [record(i) for i in range(2)]
    for r in old:
        keep(store_shelf(registry), r, 2)
    said: list[str] = []
    both = [recorder(registry, tmp_path, said, history_keep=2) for _ in range(2)]
    for each in both:
        each.begin()  # both list, and make room, while their builds run
    for each in both:
        each.keep(report())
    kept = [each.finish() for each in both]
    assert not said and all(kept)
    assert {k.name for k in kept if k} <= set(stored(registry))  # neither lost the other's
    assert old[0].name not in stored(registry) and len(stored(registry)) == 3  # one over, until the next build
    third = recorder(registry, tmp_path, said, history_keep=2)
    third.begin()
    third.keep(report())
    last = third.finish()
    assert last is not None and not said
    assert len(stored(registry)) == 2 and last.name in stored(registry)


def test_with_history_keep_1_the_branch_s_record_goes_only_once_the_new_one_is_written(
        registry: FakeRegistry, tmp_path: Path) -> None:
    first = record(0)
    keep(store_shelf(registry), first, 1)
    said: list[str] = []
    stopped = recorder(registry, tmp_path, said, history_keep=1)
    stopped.begin()
    assert stopped.finish() is None  # the build stopped before its report: no record written...
    assert stored(registry) == [first.name]  # ...and the branch still has its last one
    kept = recorder(registry, tmp_path, said, history_keep=1)
    kept.begin()
    kept.keep(report())
    new = kept.finish()
    assert new is not None and stored(registry) == [new.name] and not said


def test_a_record_that_fails_while_the_build_ends_is_one_line_said_when_the_build_is_done(
        registry: FakeRegistry, tmp_path: Path) -> None:
    registry.faults.append(("PUT", "/manifests/cacheport-history-", 400, {}))
    said: list[str] = []
    overlapped = recorder(registry, tmp_path, said)
    overlapped.begin()
    overlapped.keep(report())
    assert said == []  # nothing interleaved with the build's own report
    assert overlapped.finish() is None
    assert len(said) == 1 and said[0].startswith("warning: history: the build record was not kept in ")
    assert said[0].endswith("the build is unaffected") and not stored(registry)


def test_a_store_that_is_down_is_one_line_not_one_per_request(tmp_path: Path) -> None:
    with FakeRegistry() as gone:
        down = registry_store(gone)
    said: list[str] = []
    overlapped = Recorder(plan(), lambda: down, "registry", {}, tmp_path, said.append)
    overlapped.begin()
    overlapped.keep(report())
    assert overlapped.finish() is None
    assert len(said) == 1 and said[0].startswith("warning: history: the build record was not kept in "), said


def test_records_that_fail_to_be_written_never_wear_the_history_below_the_bound_less_one(
        registry: FakeRegistry, tmp_path: Path) -> None:
    for i in range(3):
        keep(store_shelf(registry), record(i), 3)
    for _ in range(3):
        registry.faults.append(("PUT", "/manifests/cacheport-history-", 400, {}))
        said: list[str] = []
        failing = recorder(registry, tmp_path, said, history_keep=3)
        failing.begin()
        failing.keep(report())
        assert failing.finish() is None and len(said) == 1
    assert len(stored(registry)) == 2


def test_a_build_that_never_started_says_nothing_and_history_off_opens_nothing(registry: FakeRegistry,
                                                                               tmp_path: Path) -> None:
    said: list[str] = []
    unstarted = recorder(registry, tmp_path, said)
    unstarted.begin()
    assert unstarted.finish() is None and not said and not stored(registry)

    def no_store() -> CacheStore:
        raise AssertionError("history is off: no store is opened")

    off = Recorder(plan(history="off"), no_store, "registry", {}, tmp_path, said.append)
    off.begin()
    off.keep(report())
    assert off.finish() is None and not said


def test_the_trend_after_a_build_is_read_while_it_runs_and_has_its_own_record_from_memory(
        registry: FakeRegistry, tmp_path: Path) -> None:
    earlier = [record(i) for i in range(3)]
    for r in earlier:
        keep(store_shelf(registry), r, 30)
    said: list[str] = []
    trend = Recorder(plan(), lambda: registry_store(registry), "registry", {}, tmp_path, said.append, trend=3)
    trend.begin()
    trend.keep(report())
    kept = trend.finish()
    assert kept is not None and not said and isinstance(trend.read, Shelved)
    assert [n for n, _r in trend.read.records] == [earlier[1].name, earlier[2].name, kept.name]
    assert not [path for path in registry.methods("GET") if kept.name in path]  # never read back


def test_a_record_s_write_asks_the_registry_only_about_the_blob_records_share(registry: FakeRegistry,
                                                                             tmp_path: Path) -> None:
    said: list[str] = []
    for _ in range(2):
        before = len(registry.log)
        written = recorder(registry, tmp_path, said)
        written.begin()
        written.keep(report())
        assert written.finish() is not None and not said
        heads = [path for method, path in registry.log[before:] if method == "HEAD" and "/blobs/" in path]
        assert len(heads) == 1  # the empty config, while the build runs; the record's own bytes are new
    assert len(stored(registry)) == 2


def test_where_directory_records_go(tmp_path: Path) -> None:
    local = CacheStore(str(tmp_path / "xdg" / "cacheport" / "app-1234" / "default"), "index", lambda b: "latest",
                       lambda n: None, lambda: None, fixed=True)  # type: ignore[arg-type,return-value]
    assert directory_for(plan(), None, {}, tmp_path) == tmp_path / "cacheport-history"  # a CI job's artifact
    laptop = attrs_plan(plan(provider="local"), str(tmp_path / "xdg" / "cacheport"))
    assert directory_for(laptop, local, {}, tmp_path) == \
        tmp_path / "xdg" / "cacheport" / "history" / "app-1234" / "default"
    assert directory_for(plan(history_dir="recs"), None, {}, tmp_path) == tmp_path / "recs"
    with open_shelf(laptop, local, "local", {}, tmp_path) as shelf:
        assert isinstance(shelf, DirectoryShelf)


def attrs_plan(p: Plan, cache_dir: str) -> Plan:
    import attrs

    from cacheport.records import EntryRequest

    return attrs.evolve(p, request=EntryRequest({}, p.context, None, cache_dir))


def test_history_off_writes_nothing_and_the_bound_is_a_setting(tmp_path: Path) -> None:
    assert settings_of(plan(history="off")).on is False
    assert settings_of(plan(history_keep=5)).keep == 5
    said: list[str] = []
    assert leave_record(report(), plan(history="off"), lambda: None, "gha", {}, tmp_path, said.append) is None
    assert not (tmp_path / "cacheport-history").exists() and not said


# --- trust = "signed": records in a store count only when signed for their current digest ----------------------


def signed_plan(fake: FakeRegistry, signer: Ed25519PrivateKey, *, protected: bool = True) -> Plan:
    src = Source("file", "cacheport.toml")
    shown = (ShownSetting("trust", Setting("signed", src)),
             ShownSetting("signers", Setting(base64.b64encode(public_der(signer)).decode(), src)),
             ShownSetting("signing-key-env", Setting("CACHE_SIGNING_KEY", src)),
             ShownSetting("signed-max-age", Setting(1, src)))
    trust = Trust("gitlab:branch", "", "protected", ("main",), "main", True, protected, True)
    context = Context("gitlab", "group/app", "main", "main", trust=trust, protected=protected)
    entries = (CacheEntry("registry", {"ref": f"{fake.host}/{REPO}:main"}),)
    return Plan(context, "gitlab", entries, entries, settings=shown)


def key_env(key: Ed25519PrivateKey) -> dict[str, str]:
    return {"CACHE_SIGNING_KEY": base64.b64encode(key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())).decode()}


def keep_signed(fake: FakeRegistry, key: Ed25519PrivateKey, tmp_path: Path, say: Callable[[str], None],
                **settings: object) -> rec.BuildRecord:
    plan = signed_plan(fake, key)
    plan = attrs.evolve(plan, settings=plan.settings + tuple(
        ShownSetting(k.replace("_", "-"), Setting(v, Source("cli", k))) for k, v in settings.items()))
    kept = leave_record(report(), plan, lambda: registry_store(fake), "registry", key_env(key), tmp_path, say,
                        signing=signing_of(plan, key_env(key), writing=True))
    assert kept is not None
    return kept


def reading(fake: FakeRegistry, key: Ed25519PrivateKey, *, protected: bool = True) -> StoreShelf:
    shelf = store_shelf(fake)
    shelf.signing = signing_of(signed_plan(fake, key, protected=protected), {})
    return shelf


def test_a_signed_record_counts_and_its_signature_is_for_the_manifest_written(registry: FakeRegistry,
                                                                             tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    said: list[str] = []
    mine = keep_signed(registry, key, tmp_path, said.append)
    assert said == []
    digest = sha256_digest(registry.manifests[REPO][mine.name][1])
    assert signature_tag(digest) in registry.manifests[REPO]
    for protected in (True, False):  # every job verifies records: none reads them unverified
        shelved = read_records(reading(registry, key, protected=protected))
        assert [n for n, _r in shelved.records] == [mine.name] and shelved.unsigned == ()
        assert shelved.unsigned_line() is None


def test_an_attacker_s_record_pushed_straight_to_the_registry_is_left_out_with_the_reason(
        registry: FakeRegistry, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    mine = keep_signed(registry, key, tmp_path, print)
    forged = record(9, when=datetime.now(UTC))
    hostile(registry, forged.name, rec.to_json(forged))
    other = Ed25519PrivateKey.generate()  # a key of the attacker's own, signing for the right name
    theirs = record(10, when=datetime.now(UTC) + timedelta(seconds=1))
    hostile(registry, theirs.name, rec.to_json(theirs))
    StoreSigning(signing_of(signed_plan(registry, other), {}).policy, other).sign(  # type: ignore[union-attr]
        store_shelf(registry).session, theirs.name, registry_digest(registry, theirs.name))
    shelved = read_records(reading(registry, key))  # no --skip-bad: never an error
    assert [n for n, _r in shelved.records] == [mine.name]
    why = dict(shelved.unsigned)
    assert why[forged.name].startswith("not signed (sha256:")
    assert why[theirs.name].startswith("signed by an unknown key")
    assert shelved.unsigned_line() == ("2 records left out: not signed by an allowed key (1: not signed; 1: "
                                       + why[theirs.name].rsplit(" (sha256:", 1)[0] + ")")


def registry_digest(fake: FakeRegistry, name: str) -> str:
    return sha256_digest(fake.manifests[REPO][name][1])


def test_a_signed_record_whose_tag_was_moved_to_other_content_is_left_out(registry: FakeRegistry,
                                                                          tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    mine = keep_signed(registry, key, tmp_path, print)
    signed = registry_digest(registry, mine.name)
    lie = attrs.evolve(mine, wall_seconds=9999.0)
    hostile(registry, mine.name, rec.to_json(lie))  # the same name, other content: its digest is not signed
    assert registry_digest(registry, mine.name) != signed
    shelved = read_records(reading(registry, key))
    assert shelved.records == () and [n for n, _w in shelved.unsigned] == [mine.name]
    assert "not signed" in shelved.unsigned[0][1]


def test_a_record_is_signed_with_the_key_the_build_signs_with_never_a_second_one(registry: FakeRegistry) -> None:
    key = Ed25519PrivateKey.generate()
    builds = object()  # under signing = "keyless", the build's signer: its one certificate signs the record too
    writer = signing_of(signed_plan(registry, key), key_env(key), writing=True, key=builds)
    assert writer is not None and writer.key is builds
    reader = signing_of(signed_plan(registry, key, protected=False), key_env(key), writing=True, key=builds)
    assert reader is not None and reader.key is None


def test_a_protected_job_without_its_key_keeps_its_record_unsigned_with_one_line(registry: FakeRegistry,
                                                                               tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    plan = signed_plan(registry, key)
    said: list[str] = []
    kept = leave_record(report(), plan, lambda: registry_store(registry), "registry", {}, tmp_path, said.append,
                        signing=signing_of(plan, {}, writing=True))
    assert kept is not None and kept.name in registry.manifests[REPO]
    [line] = said
    assert line.startswith(f"warning: history: the build record {kept.name} was kept but not signed")
    assert "$CACHE_SIGNING_KEY" in line and "cacheport history will leave it out" in line
    assert [n for n, _w in read_records(reading(registry, key)).unsigned] == [kept.name]


def test_trimming_old_records_deletes_their_signatures_and_prune_leaves_kept_ones_alone(
        registry: FakeRegistry, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    kept = [keep_signed(registry, key, tmp_path, print, history_keep=2) for _ in range(4)]
    names = registry.manifests[REPO]
    assert sorted(n for n in names if rec.is_record(n)) == sorted(r.name for r in kept[-2:])
    assert sorted(n for n in names if is_signature_tag(n)) == sorted(
        signature_tag(registry_digest(registry, r.name)) for r in kept[-2:])
    # prune never counts a record's signature as a cache's left behind
    assert [t.tag for t in list_caches(store_shelf(registry).session)] == []
    assert [n for n, _r in read_records(reading(registry, key)).records] == [r.name for r in kept[-2:]]


def test_a_directory_shelf_is_neither_signed_nor_verified(registry: FakeRegistry, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    plan = signed_plan(registry, key, protected=False)  # a job that may not write where protected builds read
    said: list[str] = []
    kept = leave_record(report(), attrs.evolve(plan, read_only=True), lambda: registry_store(registry), "registry",
                        {}, tmp_path, said.append, signing=signing_of(plan, {}, writing=True))
    assert kept is not None and said == []
    assert [n for n, _r in read_records(DirectoryShelf(tmp_path / "cacheport-history")).records] == [kept.name]


def test_a_record_keeps_no_secret_that_buildkit_echoed(registry: FakeRegistry, tmp_path: Path) -> None:
    """A record is read by every job that can pull the cache: a password BuildKit put in a reason is masked."""
    from cacheport.records import Login

    entry = CacheEntry("registry", {"ref": f"127.0.0.1:1/{REPO}:main"})
    leaky = BuildReport("succeeded", steps=Steps(2, 1, 1), wall_seconds=1.0, first_run="RUN echo hunter2-pw",
                        imports=[ImportReport(entry, "failed", "401 for user ci:hunter2-pw")])
    with_login = attrs.evolve(plan(), logins=(Login("127.0.0.1:1", "CI_PASS", "", "ci"),))
    kept = leave_record(leaky, with_login, lambda: registry_store(registry), "registry", {"CI_PASS": "hunter2-pw"},
                        tmp_path, print)
    assert kept is not None
    stored = rec.to_json(kept).decode()
    assert "hunter2-pw" not in stored and "401 for user ci:" in stored


# cacheport history --prune-bad: only records that can't be read are deleted, in a store and a directory; one from
# a newer cacheport, and one the store could not be asked for, stay.

def bad_name(i: int) -> str:
    return rec.record_name("main", T0 + timedelta(hours=i), f"0badbad{i}")


def test_prune_bad_deletes_only_the_records_that_cannot_be_read_in_a_store(registry: FakeRegistry) -> None:
    from cacheport.ops.history import prune_bad

    shelf = store_shelf(registry)
    good = record(1)
    keep(shelf, good, 30)
    hostile(registry, bad_name(1), b"not json")
    hostile(registry, bad_name(2), b"x" * (rec.MAX_SIZE + 1))
    hostile(registry, bad_name(3), b"{}", "application/vnd.example.other")
    hostile(registry, bad_name(4), b'{"schema": 99, "cacheport": "9.0"}')  # a newer cacheport reads it: kept
    gone = list(prune_bad(shelf))
    assert sorted(n for n, _why, _failed in gone) == [bad_name(1), bad_name(2), bad_name(3)]
    assert {n: why for n, why, _failed in gone}[bad_name(1)] == "not JSON"
    assert sorted(shelf.names()) == sorted([good.name, bad_name(4)])
    assert list(prune_bad(shelf)) == []


def test_prune_bad_in_a_directory_and_never_on_an_outage(tmp_path: Path) -> None:
    from cacheport.ops.history import prune_bad

    shelf = DirectoryShelf(tmp_path)
    good = record(1)
    keep(shelf, good, 30)
    (tmp_path / f"{bad_name(1)}.json").write_text("{not json")
    assert list(prune_bad(shelf)) == [(bad_name(1), "not JSON", None)]
    assert [n for n, _r in read_records(shelf).records] == [good.name]

    class Down(DirectoryShelf):
        def read(self, name: str, limit: int = rec.MAX_SIZE) -> bytes | None:
            raise RegistryError("127.0.0.1:9 is unreachable")

    (tmp_path / f"{bad_name(2)}.json").write_text("{not json")
    down: Shelf = Down(tmp_path)
    assert list(prune_bad(down)) == [] and len(down.names()) == 2


def newer_json(size: int, schema: int = rec.SCHEMA + 1) -> bytes:
    """A JSON object of ``schema`` padded to ``size`` bytes: over MAX_SIZE, a newer cacheport's may be that large."""
    head = b'{"schema": %d, "cacheport": "9.0", "pad": "' % schema
    return head + b"x" * (size - len(head) - 2) + b'"}'


def test_prune_bad_keeps_what_a_newer_cacheport_may_have_written_in_a_store(registry: FakeRegistry) -> None:
    from cacheport.ops.history import prune_bad

    shelf = store_shelf(registry)
    hostile(registry, bad_name(1), b'{"schema": 2}', "application/vnd.cacheport.build-record.v2")
    hostile(registry, bad_name(2), newer_json(rec.MAX_SIZE + 100))  # v1-typed, schema 2, too large for this one
    hostile(registry, bad_name(3), b"x" * (rec.PROBE_SIZE + 1))  # too large to tell
    hostile(registry, bad_name(4), newer_json(rec.MAX_SIZE + 100, schema=rec.SCHEMA))  # ours, too large: corrupt
    hostile(registry, bad_name(5), b"x" * (rec.MAX_SIZE + 100))  # not JSON at all: corrupt
    gone = list(prune_bad(shelf))
    assert sorted(gone) == [(bad_name(4), f"over {rec.MAX_SIZE} bytes, the most a record may be", None),
                            (bad_name(5), "not JSON", None)]
    assert sorted(shelf.names()) == [bad_name(1), bad_name(2), bad_name(3)]
    with pytest.raises(RecordError, match=r"newer cacheport .*upgrade cacheport \(--skip-bad leaves it out\)$"):
        read_records(shelf, names=[bad_name(1)])


def test_prune_bad_keeps_an_oversized_newer_record_in_a_directory(tmp_path: Path) -> None:
    from cacheport.ops.history import prune_bad

    shelf = DirectoryShelf(tmp_path)
    (tmp_path / f"{bad_name(1)}.json").write_bytes(newer_json(rec.MAX_SIZE + 100))
    (tmp_path / f"{bad_name(2)}.json").write_bytes(newer_json(rec.MAX_SIZE + 100, schema=rec.SCHEMA))
    (tmp_path / f"{bad_name(3)}.json").write_bytes(b" " * rec.PROBE_SIZE + b"{}")  # too large to tell
    assert [n for n, _why, _failed in prune_bad(shelf)] == [bad_name(2)]
    assert shelf.names() == [bad_name(1), bad_name(3)]


def test_prune_bad_keeps_a_record_it_cannot_read_and_goes_on_past_one_it_cannot_delete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cacheport.ops.history import prune_bad

    shelf = DirectoryShelf(tmp_path)
    (tmp_path / f"{bad_name(1)}.json").mkdir()  # named like a record, can't be read: kept, never an error
    (tmp_path / f"{bad_name(2)}.json").write_text("{not json")
    (tmp_path / f"{bad_name(3)}.json").write_text("{not json")
    real = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.name == f"{bad_name(2)}.json":
            raise PermissionError(13, "Permission denied")
        real(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    assert list(prune_bad(shelf)) == [(bad_name(2), "not JSON", "cannot delete: Permission denied"),
                                      (bad_name(3), "not JSON", None)]
    assert shelf.names() == [bad_name(1), bad_name(2)]
    with pytest.raises(RegistryError, match="cannot read: Is a directory"):
        shelf.read(bad_name(1))
    with pytest.raises(RecordError) as stopped:  # --prune-bad would keep it: not offered
        read_records(shelf, names=[bad_name(1)])
    assert str(stopped.value).endswith("unreadable: cannot read: Is a directory (--skip-bad leaves it out)")


def test_prune_bad_of_one_branch_leaves_the_others_alone(tmp_path: Path) -> None:
    from cacheport.ops.history import prune_bad

    shelf = DirectoryShelf(tmp_path)
    dev = rec.record_name("feature/x", T0, "0badbad9")
    for name in (bad_name(1), dev):
        (tmp_path / f"{name}.json").write_text("{not json")
    assert [n for n, _why, _failed in prune_bad(shelf, branch="feature/x")] == [dev]
    assert shelf.names() == [bad_name(1)]


def test_a_history_dir_that_is_a_file_is_one_warning_naming_the_key(tmp_path: Path) -> None:
    from cacheport.ops.history import leave_record

    (tmp_path / "passwd").write_text("root:x:0:0")
    said: list[str] = []
    p = plan(history_dir=str(tmp_path / "passwd"))
    assert leave_record(report(), p, lambda: None, "local", {}, tmp_path, said.append) is None
    assert len(said) == 1 and "history_dir = " in said[0] and "not a directory" in said[0], said
    assert "Error" not in said[0] and (tmp_path / "passwd").read_text() == "root:x:0:0"

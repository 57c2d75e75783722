"""Signed caches against a registry (cacheport.ops.signatures): verify and pin, sign and store, and the law that
no untrusted write makes a protected build import an unsigned or foreign digest."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacheport.entry import CacheEntry
from cacheport.errors import ConfigError
from cacheport.mounts import CacheMount, MountLimits
from cacheport.oci.format import sha256_digest
from cacheport.oci.registry import Registry
from cacheport.oci.repository import RegistryRepository
from cacheport.ops import signatures
from cacheport.ops.mounts_store import fetch, publish
from cacheport.records import Context, Plan, Setting, ShownSetting, Source, Trust
from cacheport.signing import policy, public_der, signature_tag
from tests.fakes.caches import mount_archive
from tests.fakes.registry import FAST, FakeRegistry, cache_index

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
REPO = "group/app/cache"
PIP = CacheMount("pip", "/root/.cache/pip")


def plan_for(fake: FakeRegistry, key: Ed25519PrivateKey, *, protected: bool = True, tags: tuple[str, ...] = ("main",),
             days: int = 30) -> Plan:
    src = Source("file", "cacheport.toml")
    shown = [ShownSetting("trust", Setting("signed", src)),
             ShownSetting("signers", Setting(base64.b64encode(public_der(key)).decode(), src)),
             ShownSetting("signing-key-env", Setting("CACHE_SIGNING_KEY", src)),
             ShownSetting("signed-max-age", Setting(days, src))]
    trust = Trust("gitlab:branch", "", "protected", ("main",), "main", True, protected, True)
    context = Context("gitlab", "group/app", "main", "main", trust=trust, protected=protected)
    entries = tuple(CacheEntry("registry", {"ref": f"{fake.host}/{REPO}:{t}"}) for t in tags)
    return Plan(context, "registry", entries, entries[:1], settings=tuple(shown))


def sign_tag(fake: FakeRegistry, plan: Plan, key: Ed25519PrivateKey, tag: str = "main",
             when: datetime = NOW) -> str:
    held = fake.manifests.get(REPO, {}).get(tag)
    digest = sha256_digest(held[1]) if held else cache_index(fake, REPO, tag).digest
    entry = CacheEntry("registry", {"ref": f"{fake.host}/{REPO}:{tag}"})
    assert signatures.sign(plan, [(entry, digest)], key, {}, when) == [f"signed {entry.get('ref')} ({digest})"]
    return digest


def test_a_signed_cache_is_imported_by_its_digest(fake: FakeRegistry) -> None:
    key = Ed25519PrivateKey.generate()
    plan = plan_for(fake, key)
    digest = cache_index(fake, REPO, "main").digest
    sign_tag(fake, plan, key)
    pinned, verdicts = signatures.pin(plan, {}, NOW)
    assert [v.ok for v in verdicts] == [True]
    assert [e.get("ref") for e in pinned.imports] == [f"{fake.host}/{REPO}@{digest}"]
    assert signature_tag(digest) in fake.manifests[REPO]


def test_an_attacker_s_cache_on_the_protected_tag_is_refused(fake: FakeRegistry) -> None:
    key = Ed25519PrivateKey.generate()
    plan = plan_for(fake, key)
    cache_index(fake, REPO, "main")
    sign_tag(fake, plan, key)
    foreign = cache_index(fake, REPO, "main", layers=3).digest  # pushed over it, without cacheport
    pinned, verdicts = signatures.pin(plan, {}, NOW)
    assert pinned.imports == ()
    assert verdicts[0].digest == foreign and signatures.line(verdicts[0]).startswith("refused ")
    assert "not signed" in verdicts[0].reason


def test_the_attacker_s_own_key_and_an_old_signature_are_refused(fake: FakeRegistry) -> None:
    key, theirs = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    plan = plan_for(fake, key)
    cache_index(fake, REPO, "main")
    sign_tag(fake, plan, theirs)
    assert "unknown key" in signatures.pin(plan, {}, NOW)[1][0].reason
    sign_tag(fake, plan, key, when=NOW - timedelta(days=40))  # a replayed old signed cache
    assert "older than signed-max-age" in signatures.pin(plan, {}, NOW)[1][0].reason


def test_a_missing_cache_is_no_news_and_an_unreachable_registry_is_an_outage(fake: FakeRegistry) -> None:
    key = Ed25519PrivateKey.generate()
    plan = plan_for(fake, key)
    verdict = signatures.pin(plan, {}, NOW)[1][0]
    assert verdict.missing and signatures.line(verdict).endswith("no cache there yet")
    down = plan_for(fake, key)
    down = Plan(down.context, "registry", (CacheEntry("registry", {"ref": f"127.0.0.1:9/{REPO}:main"}),), (),
                settings=down.settings)
    verdict = signatures.pin(down, {}, NOW)[1][0]
    assert not verdict.ok and "could not check" in verdict.reason and "\n" not in verdict.reason


def test_types_that_can_t_carry_a_signature_are_left_out_of_a_protected_build(fake: FakeRegistry) -> None:
    key = Ed25519PrivateKey.generate()
    plan = plan_for(fake, key)
    plan = Plan(plan.context, "local", (CacheEntry("local", {"src": "/tmp/x"}),), (), settings=plan.settings)
    pinned, verdicts = signatures.pin(plan, {}, NOW)
    assert pinned.imports == () and "can't carry a signature" in verdicts[0].reason


def test_an_unprotected_job_reads_as_configured(fake: FakeRegistry) -> None:
    key = Ed25519PrivateKey.generate()
    plan = plan_for(fake, key, protected=False)
    assert signatures.pin(plan, {}, NOW) == (plan, [])
    assert signatures.signing_key(plan, {}) is None


def test_a_protected_export_without_the_key_stops_and_a_wrong_key_is_one_line(fake: FakeRegistry) -> None:
    key = Ed25519PrivateKey.generate()
    plan = plan_for(fake, key)
    with pytest.raises(ConfigError, match=r"\$CACHE_SIGNING_KEY \(signing-key-env\) is not set"):
        signatures.signing_key(plan, {})
    with pytest.raises(ConfigError, match="not an unencrypted Ed25519 private key"):
        signatures.signing_key(plan, {"CACHE_SIGNING_KEY": "c2VjcmV0"})


def test_a_malformed_signature_on_the_registry_is_refused(fake: FakeRegistry) -> None:
    key = Ed25519PrivateKey.generate()
    plan = plan_for(fake, key)
    digest = cache_index(fake, REPO, "main").digest
    blob = b'{"payloadType": "nope"}'
    fake.add_manifest(REPO, signature_tag(digest), {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": fake.add_blob(REPO, b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": fake.add_blob(REPO, blob),
                    "size": len(blob)}]})
    assert "malformed signature" in signatures.pin(plan, {}, NOW)[1][0].reason


# Every step an untrusted job can take with registry write access: push its own cache to a protected tag, copy
# another tag (an old signed one) there, sign with its own key, or write junk where a signature goes.
_MOVES = st.lists(st.tuples(st.sampled_from(["push", "replay", "self-sign", "junk-signature", "protected-build"]),
                            st.sampled_from(["main", "release"])), max_size=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=_MOVES)
def test_no_untrusted_write_makes_a_protected_build_import_an_unsigned_or_foreign_digest(
        fake: FakeRegistry, moves: list[tuple[str, str]]) -> None:
    key, theirs = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    plan = plan_for(fake, key, tags=("main", "release"))
    fake.manifests.pop(REPO, None)
    trusted: dict[str, set[str]] = {"main": set(), "release": set()}  # digests a protected build signed, per name
    for n, (move, tag) in enumerate(moves):
        if move == "protected-build":
            trusted[tag].add(sign_tag(fake, plan, key, tag, NOW - timedelta(days=1)))
        elif move == "push":
            cache_index(fake, REPO, tag, layers=n % 4 + 1)
        elif move == "replay" and fake.manifests.get(REPO):
            other = "release" if tag == "main" else "main"
            if other in fake.manifests[REPO]:
                fake.manifests[REPO][tag] = fake.manifests[REPO][other]
        elif move == "self-sign" and tag in fake.manifests.get(REPO, {}):
            sign_tag(fake, plan, theirs, tag)
        elif move == "junk-signature" and tag in fake.manifests.get(REPO, {}):
            current = sha256_digest(fake.manifests[REPO][tag][1])
            fake.manifests[REPO][signature_tag(current)] = ("application/vnd.oci.image.manifest.v1+json", b"junk")
    pinned, verdicts = signatures.pin(plan, {}, NOW)
    assert all("@sha256:" in str(e.get("ref")) for e in pinned.imports), "imports are pinned by digest"
    assert len(pinned.imports) == sum(v.ok for v in verdicts)
    for verdict in verdicts:
        if verdict.ok:  # only a digest a protected build signed, under the name it is imported as
            assert verdict.digest in trusted[str(verdict.entry.get("ref")).rsplit(":", 1)[1]]


def test_only_what_buildkit_reports_writing_is_signed_and_an_export_without_a_digest_is_said(
        fake: FakeRegistry) -> None:
    from cacheport import report

    key = Ed25519PrivateKey.generate()
    plan = plan_for(fake, key)
    digest = cache_index(fake, REPO, "main").digest
    entry = plan.exports[0]
    lines = signatures.sign_written(plan, [report.ExportReport(entry, report.WRITTEN, digest=digest),
                                           report.ExportReport(entry, report.FAILED, digest="sha256:" + "0" * 64),
                                           report.ExportReport(entry, report.WRITTEN)], key, {})
    assert lines == [f"warning: not signed: BuildKit named no cache manifest for {entry.get('ref')}, so protected "
                     "builds will not import it", f"signed {entry.get('ref')} ({digest})"]
    assert [t for t in fake.manifests[REPO] if t.endswith(".cacheport-sig")] == [signature_tag(digest)]


def test_the_processes_a_build_runs_never_get_the_private_key(fake: FakeRegistry) -> None:
    key = Ed25519PrivateKey.generate()
    environ = {"CACHE_SIGNING_KEY": "secret", "PATH": "/bin"}
    assert signatures.without_key(plan_for(fake, key), environ) == {"PATH": "/bin"}
    assert signatures.key_values(plan_for(fake, key), environ) == ["secret"]


# The same law for cache mounts: an untrusted job writes its own <name>.mounts, copies another name's there, signs
# with its own key, or puts a signature of another digest under this one's; protected builds save signed ones.
_MOUNT_MOVES = st.lists(st.tuples(st.sampled_from(["push", "replay", "self-sign", "other-signature", "protected-save"]),
                                  st.sampled_from(["main", "release"])), max_size=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=_MOUNT_MOVES)
def test_no_untrusted_write_makes_a_protected_build_restore_mounts_a_protected_build_did_not_save(
        fake: FakeRegistry, tmp_path: Path, moves: list[tuple[str, str]]) -> None:
    key, theirs = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    found = policy(plan_for(fake, key))
    assert found is not None
    ours, attacker = signatures.StoreSigning(found, key), signatures.StoreSigning(found, theirs)
    fake.manifests.pop(REPO, None)
    work = tmp_path / uuid.uuid4().hex
    work.mkdir()
    trusted: dict[str, set[str]] = {"main": set(), "release": set()}  # archives a protected build saved, per name
    with RegistryRepository(Registry(fake.host, retry=FAST), REPO) as session:
        for n, (move, tag) in enumerate(moves):
            name, other = f"{tag}.mounts", "release.mounts" if tag == "main" else "main.mounts"
            current = session.manifest_digest(name)
            archive = mount_archive(work / f"{n}.tgz", PIP, {"wheel": f"{n} {move}".encode()})
            if move == "protected-save":
                publish(session, tag, [archive], limits=MountLimits(), signing=ours)
                trusted[tag].add(archive.digest)
            elif move == "push":
                publish(session, tag, [archive], limits=MountLimits())  # cacheport's code, without a key
            elif move == "replay" and session.manifest_digest(other):
                session.put_manifest(name, session.get_manifest(other))  # type: ignore[arg-type]
            elif move == "self-sign" and current:
                attacker.sign(session, name, current)
            elif move == "other-signature" and current and (theirs_ := session.manifest_digest(other)):
                signature = session.get_manifest(signature_tag(theirs_))
                if signature is not None:
                    session.put_manifest(signature_tag(current), signature)
        got, outcomes = fetch(session, ["main", "release"], work / "in", limits=MountLimits(), wanted=[PIP],
                              signing=ours)
    restored = [o for o in outcomes if o.action == "restored"]
    assert len(restored) == len(got) <= 1
    for outcome, archive in zip(restored, got, strict=True):  # only what a protected build saved under that name
        assert archive.digest in trusted[outcome.name.removesuffix(".mounts")]


def test_verify_stored_lists_only_names_that_hold_something_and_an_outage_for_each(tmp_path: Path) -> None:
    """verify's mounts half: a name with nothing there is no row; a store that can't be reached is one row per
    name saying so (verify exits 1), never an exception."""
    from cacheport.errors import RegistryError
    from cacheport.oci.layout import Layout
    from cacheport.records import CacheStore
    from cacheport.signing import Policy, Signer, key_id

    der = public_der(Ed25519PrivateKey.generate())
    found = Policy((Signer(key_id(der), der),), "CACHE_SIGNING_KEY", timedelta(days=30), "group/app", True)
    store = CacheStore(location=str(tmp_path / "d"), format="image-manifest", name_for=lambda b: b,
                       branch_of=lambda n: n, open=lambda: Layout(tmp_path / "d"))
    assert signatures.verify_stored(store, ["main.mounts", "develop.mounts"], found) == []

    def unreachable() -> Layout:
        raise RegistryError("127.0.0.1:1: connection refused")

    down = signatures.verify_stored(CacheStore(location="127.0.0.1:1/app/cache", format="image-manifest",
                                               name_for=lambda b: b, branch_of=lambda n: n, open=unreachable),
                                    ["main.mounts", "develop.mounts"], found)
    assert [(v.entry.type, v.entry.get("ref"), v.ok, v.reason) for v in down] == [
        ("mounts", f"127.0.0.1:1/app/cache:{n}.mounts", False,
         "could not check its signature: 127.0.0.1:1: connection refused") for n in ("main", "develop")]


def test_a_build_s_signature_checks_share_one_client_per_registry(tmp_path: Path) -> None:
    import json

    key = Ed25519PrivateKey.generate()
    config = tmp_path / "docker"
    config.mkdir()
    with FakeRegistry(auth="token") as fake:
        (config / "config.json").write_text(json.dumps(
            {"auths": {fake.host: {"auth": base64.b64encode(b"u:p").decode()}}}))
        environ = {"DOCKER_CONFIG": str(config)}
        plan = plan_for(fake, key, tags=("main", "feature", "release"))
        found = policy(plan)
        assert found is not None
        for entry in plan.imports:
            cache_index(fake, REPO, str(entry.get("ref")).rpartition(":")[2])
        alone = [signatures.verify_entry(e, found, (), environ) for e in plan.imports]
        tokens = fake.tokens_issued
        with signatures.Registries((), environ) as registries:
            shared = [signatures.verify_entry(e, found, (), environ, registries=registries) for e in plan.imports]
        assert [v.reason for v in shared] == [v.reason for v in alone] == ["not signed"] * 3
        assert tokens == 3 and fake.tokens_issued - tokens == 1  # one token for the three checks, not one each

"""Keyless signing at the edge (ops/fulcio.py, through ops/signatures.py) against a fake registry and the local
sigstore stand-in (tests/fakes/sigstore.py): what a protected build imports under signing = "keyless", and what
the token may reach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacheport.entry import CacheEntry
from cacheport.oci.format import sha256_digest
from cacheport.ops import signatures
from cacheport.ops.fulcio import GITHUB_REQUEST_TOKEN, KeylessSigner
from cacheport.records import Context, Plan, Setting, ShownSetting, Source, Trust
from tests.fakes.registry import FakeRegistry, cache_index
from tests.fakes.sigstore import FakeSigstore

REPO = "group/app/cache"


def plan_for(fake: FakeRegistry, sigstore: FakeSigstore, root: Path, tags: tuple[str, ...] = ("main",)) -> Plan:
    src = Source("file", "cacheport.toml")
    values = {"trust": "signed", "signers": None, "signing-key-env": "CACHE_SIGNING_KEY", "signed-max-age": 30,
              "signing": "keyless", "trusted-root": str(root), "fulcio-url": sigstore.url,
              "signer-identity": f"issuer={sigstore.url} repository=group/app refs=refs/heads/main,refs/heads/release",
              "id-token-env": "SIGSTORE_ID_TOKEN"}
    trust = Trust("gitlab:branch", "", "protected", ("main",), "main", True, True, True)
    context = Context("gitlab", "group/app", "main", "main", trust=trust, protected=True)
    entries = tuple(CacheEntry("registry", {"ref": f"{fake.host}/{REPO}:{t}"}) for t in tags)
    return Plan(context, "registry", entries, entries[:1],
                settings=tuple(ShownSetting(k, Setting(v, src)) for k, v in values.items()))


def sign_tag(fake: FakeRegistry, plan: Plan, token: str, tag: str) -> str:
    """What a job holding ``token`` signs as the cache on ``tag``, through cacheport's own signing."""
    held = fake.manifests.get(REPO, {}).get(tag)
    digest = sha256_digest(held[1]) if held else cache_index(fake, REPO, tag).digest
    entry = CacheEntry("registry", {"ref": f"{fake.host}/{REPO}:{tag}"})
    key = signatures.signing_key(plan, {"SIGSTORE_ID_TOKEN": token})
    assert isinstance(key, KeylessSigner)
    assert signatures.sign(plan, [(entry, digest)], key, {}) == [f"signed {entry.get('ref')} ({digest})"]
    return digest


def test_a_protected_job_s_keyless_signature_pins_its_import(fake: FakeRegistry, sigstore: FakeSigstore,
                                                             tmp_path: Path) -> None:
    plan = plan_for(fake, sigstore, sigstore.root_file(tmp_path))
    digest = sign_tag(fake, plan, sigstore.gitlab_token(ref="main"), "main")
    pinned, [verdict] = signatures.pin(plan, {})
    assert verdict.ok and verdict.reason.startswith("signed by group/app@refs/heads/main on ")
    assert pinned.imports[0].get("ref") == f"{fake.host}/{REPO}@{digest}"


_MOVES = st.lists(st.tuples(st.sampled_from(["protected-build", "push", "replay", "unprotected-ref",
                                             "other-project", "other-ca"]),
                            st.sampled_from(["main", "release"])), max_size=6)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=_MOVES)
def test_no_untrusted_certificate_makes_a_protected_build_import_what_it_did_not_sign(
        fake: FakeRegistry, sigstore: FakeSigstore, tmp_path: Path, moves: list[tuple[str, str]]) -> None:
    plan = plan_for(fake, sigstore, sigstore.root_file(tmp_path), tags=("main", "release"))
    fake.manifests.pop(REPO, None)
    trusted: dict[str, set[str]] = {"main": set(), "release": set()}  # digests a protected build signed, per name
    with FakeSigstore() as elsewhere:  # a CA that is not in trusted-root, with the very same claims
        (tmp_path / "elsewhere").mkdir(exist_ok=True)
        foreign_plan = plan_for(fake, elsewhere, elsewhere.root_file(tmp_path / "elsewhere"))
        for n, (move, tag) in enumerate(moves):
            if move == "protected-build":
                trusted[tag].add(sign_tag(fake, plan, sigstore.gitlab_token(ref=tag), tag))
            elif move == "push":
                cache_index(fake, REPO, tag, layers=n % 4 + 1)
            elif move == "replay" and fake.manifests.get(REPO):
                other = "release" if tag == "main" else "main"
                if other in fake.manifests[REPO]:
                    fake.manifests[REPO][tag] = fake.manifests[REPO][other]
            elif move == "unprotected-ref":
                sign_tag(fake, plan, sigstore.gitlab_token(ref=f"feature-{n}", protected=False), tag)
            elif move == "other-project":
                sign_tag(fake, plan, sigstore.gitlab_token(project="group/other", ref=tag), tag)
            elif move == "other-ca":
                sign_tag(fake, foreign_plan, elsewhere.gitlab_token(ref=tag), tag)
    pinned, verdicts = signatures.pin(plan, {}, datetime.now(UTC) + timedelta(minutes=1))
    assert all("@sha256:" in str(e.get("ref")) for e in pinned.imports), "imports are pinned by digest"
    for verdict in verdicts:
        if verdict.ok:  # only a digest a protected build signed, under the name it is imported as
            assert verdict.digest in trusted[str(verdict.entry.get("ref")).rsplit(":", 1)[1]]


def test_the_processes_a_build_runs_never_get_the_token(fake: FakeRegistry, sigstore: FakeSigstore,
                                                        tmp_path: Path) -> None:
    plan = plan_for(fake, sigstore, sigstore.root_file(tmp_path))
    environ = {"SIGSTORE_ID_TOKEN": "a.b.c", GITHUB_REQUEST_TOKEN: "bearer", "PATH": "/bin"}
    assert signatures.without_key(plan, environ) == {"PATH": "/bin"}
    assert sorted(signatures.key_values(plan, environ)) == ["a.b.c", "bearer"]


def test_keyless_signs_and_verifies_cache_mounts_as_it_does_layer_caches(fake: FakeRegistry, sigstore: FakeSigstore,
                                                                         tmp_path: Path) -> None:
    from cacheport.mounts import CacheMount, MountLimits
    from cacheport.oci.registry import Registry
    from cacheport.oci.repository import RegistryRepository
    from cacheport.ops.mounts_store import fetch, publish
    from tests.fakes.caches import mount_archive

    plan = plan_for(fake, sigstore, sigstore.root_file(tmp_path))
    pip = CacheMount("pip", "/root/.cache/pip")
    archive = mount_archive(tmp_path / "pip.tgz", pip, {"a.whl": b"a"})
    ours = signatures.store_signing(plan, signatures.signing_key(plan, {"SIGSTORE_ID_TOKEN": sigstore.gitlab_token(
        ref="main")}))
    theirs = signatures.store_signing(plan, signatures.signing_key(plan, {
        "SIGSTORE_ID_TOKEN": sigstore.gitlab_token(ref="feature")}))  # a merge request's job: its own ref
    assert ours is not None and theirs is not None
    with RegistryRepository(Registry(fake.host), REPO) as session:
        assert [o.action for o in publish(session, "main", [archive], limits=MountLimits(), signing=ours)] == ["saved"]
        _, [restored] = fetch(session, ["main"], tmp_path / "in", limits=MountLimits(), signing=ours)
        assert restored.action == "restored"
        publish(session, "main", [mount_archive(tmp_path / "evil.tgz", pip, {"a.whl": b"evil"})],
                limits=MountLimits(), signing=theirs)
        _, [refused] = fetch(session, ["main"], tmp_path / "in2", limits=MountLimits(), signing=ours)
        assert refused.action == "refused" and "refs/heads/feature" in refused.detail, refused


def test_the_exports_and_the_history_record_signed_at_once_share_one_certificate(fake: FakeRegistry,
                                                                                  sigstore: FakeSigstore,
                                                                                  tmp_path: Path) -> None:
    import threading

    from cacheport.signing import Claim

    plan = plan_for(fake, sigstore, sigstore.root_file(tmp_path))
    key = signatures.signing_key(plan, {"SIGSTORE_ID_TOKEN": sigstore.gitlab_token(ref="main")})
    assert isinstance(key, KeylessSigner)
    asked = len(sigstore.requests)
    start = threading.Barrier(4)
    leaves: list[bytes] = []

    def sign() -> None:
        start.wait()
        key.envelope(Claim("sha256:" + "0" * 64, "main", "group/app", datetime.now(UTC)))
        leaves.append(key.chain()[0])

    threads = [threading.Thread(target=sign) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sigstore.requests) == asked + 1 and len(set(leaves)) == 1

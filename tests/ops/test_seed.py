"""``cacheport seed``: which caches (asked of the backends' stores), index → image manifest conversion, and the
command against in-process fake registries (tests/fakes/registry.py) and directories. Real registries and
Pulp: tests/e2e/test_seed.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cacheport.context import Context
from cacheport.errors import CacheportError, ConversionError
from cacheport.kit import RegistryCache, login_credentials, registry_store
from cacheport.oci.auth import Credentials
from cacheport.oci.format import (
    CACHECONFIG,
    DOCKER_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    is_cache_index,
    to_image_manifest,
)
from cacheport.oci.registry import Registry
from cacheport.oci.repository import RegistryRepository
from cacheport.ops.seed import Pair, Side, branch_pairs, copy_pair, name_pairs, with_mounts
from cacheport.plugins import Plugins
from cacheport.records import CacheStore, EntryRequest, Login
from tests.fakes.registry import FakeRegistry, cache_index

CTX = Context("gitlab", "group/app", branch="feat", default_branch="main")
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def request(options: dict[str, object], key: str | None = None, environ: dict[str, str] | None = None) -> EntryRequest:
    return EntryRequest(options, CTX, key, "/tmp/cache", environ or {})


def options(plugins: Plugins, name: str, **given: object) -> dict[str, object]:
    backend = plugins.backend(name)
    return {o.name: given.get(o.name.replace("-", "_"), o.default) for o in backend.options}


# --- conversion -------------------------------------------------------------------------------------------------


def index_doc(**extra: object) -> dict[str, object]:
    return {
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": LAYER, "digest": "sha256:aa", "size": 3, "annotations": {"buildkit/createdat": "t1"}},
            {"mediaType": LAYER, "digest": "sha256:bb", "size": 4},
            {"mediaType": CACHECONFIG, "digest": "sha256:cc", "size": 5},
        ],
        **extra,
    }


def test_an_index_cache_becomes_the_image_manifest_buildkit_writes() -> None:
    index = Manifest.from_json(index_doc(annotations={"org.example": "kept"}))
    assert is_cache_index(index)
    out = to_image_manifest(index)
    assert out.media_type == OCI_MANIFEST and not out.is_index
    assert out.json == {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CACHECONFIG, "digest": "sha256:cc", "size": 5},
        "layers": [
            {"mediaType": LAYER, "digest": "sha256:aa", "size": 3, "annotations": {"buildkit/createdat": "t1"}},
            {"mediaType": LAYER, "digest": "sha256:bb", "size": 4},
        ],
        "annotations": {"org.example": "kept"},
    }
    assert to_image_manifest(index).digest == out.digest  # the same bytes every time: a rerun finds it up to date
    assert {d.digest for d in out.descriptors()} == {d.digest for d in index.descriptors()}


def test_docker_media_types_follow_the_targets_choice() -> None:
    doc = index_doc(mediaType=DOCKER_LIST)
    doc["manifests"][0]["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"  # type: ignore[index]
    index = Manifest.from_json(doc)
    assert [d["mediaType"] for d in to_image_manifest(index).json["layers"]] == [LAYER, LAYER]
    docker = to_image_manifest(index, oci=False)
    assert docker.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert {d["mediaType"] for d in docker.json["layers"]} == {"application/vnd.docker.image.rootfs.diff.tar.gzip"}


@pytest.mark.parametrize("doc", [
    {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": LAYER, "digest": "sha256:a", "size": 1}]},
    {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": CACHECONFIG, "digest": "sha256:a", "size": 1},
        {"mediaType": OCI_MANIFEST, "digest": "sha256:b", "size": 1}]},
    {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": CACHECONFIG, "digest": "sha256:a", "size": 1},
     "layers": []},
])
def test_only_a_cache_index_converts(doc: dict[str, object]) -> None:
    with pytest.raises(ConversionError, match="cannot convert"):
        to_image_manifest(Manifest.from_json(doc))


# --- which caches ---------------------------------------------------------------------------------------------


def store(plugins: Plugins, name: str, key: str | None = None, environ: dict[str, str] | None = None,
          **given: object) -> tuple[str, CacheStore]:
    """A backend's name and its store, for the request these options make."""
    backend = plugins.backend(name)
    assert backend.store is not None
    return name, backend.store(request(options(plugins, name, **given), key, environ))


def test_branches_map_through_each_backends_own_names(builtins: Plugins) -> None:
    old = store(builtins, "gitlab", ref="old.example/group/app/cache", image_manifest=False)
    new = store(builtins, "registry", ref="new.example/app/cache", insecure=True)
    pairs = branch_pairs(old, new, ["main", "feature/Login", "main"])
    assert [(p.branch, str(p.source), str(p.target)) for p in pairs] == [
        ("main", "old.example/group/app/cache:main", "new.example/app/cache:main"),
        ("feature/Login", "old.example/group/app/cache:feature-login", "new.example/app/cache:feature-login"),
    ]
    assert pairs[0].target.store.format == "image-manifest" and pairs[0].source.store.format == "index"


def test_a_key_scopes_both_sides(builtins: Plugins) -> None:
    old = store(builtins, "gitlab", key="arm64", ref="old.example/a")
    new = store(builtins, "registry", key="arm64", ref="new.example/b")
    (pair,) = branch_pairs(old, new, ["main"])
    assert (pair.source.name, pair.target.name) == ("arm64-main", "arm64-main")


def test_all_matches_names_to_the_branches_that_make_them(builtins: Plugins) -> None:
    old = store(builtins, "gitlab", key="arm64", ref="old.example/a")
    new = store(builtins, "registry", key="arm64", ref="new.example/b")
    pairs = name_pairs(old, new, ["arm64-main", "arm64-feature-x", "main"])
    assert [(p.branch, p.source.name, str(p.target)) for p in pairs] == [
        ("main", "arm64-main", "new.example/b:arm64-main"),
        ("feature-x", "arm64-feature-x", "new.example/b:arm64-feature-x"),
        (None, "main", "new.example/b:main"),  # no branch makes it under this key: the same tag name
    ]
    assert pairs[2].name == "tag main"


def test_a_fixed_ref_owns_only_its_tag(builtins: Plugins) -> None:
    _name, fixed = store(builtins, "gitlab", ref="old.example/app:buildcache")
    assert fixed.fixed and fixed.name_for("main") == fixed.name_for("dev") == "buildcache"
    assert fixed.branch_of("buildcache") is None
    # Copied to the name the new backend's default-branch builds read, not to a tag none of them reads.
    pairs = name_pairs(("gitlab", fixed), store(builtins, "registry", ref="new.example/b"), ["buildcache"], "main")
    assert [(str(p.source), str(p.target)) for p in pairs] == [
        ("old.example/app:buildcache", "new.example/b:main")]
    with pytest.raises(CacheportError, match="name the branch: --branch BRANCH"):
        name_pairs(("gitlab", fixed), store(builtins, "registry", ref="new.example/b"), ["buildcache"])


def test_two_sources_into_one_target_or_a_copy_onto_itself_is_refused(builtins: Plugins) -> None:
    old = store(builtins, "gitlab", ref="old.example/a")
    fixed = store(builtins, "registry", ref="new.example/b:one")
    with pytest.raises(CacheportError, match=r"would both be copied to new\.example/b:one"):
        branch_pairs(old, fixed, ["main", "dev"])
    same = store(builtins, "registry", ref="old.example/a")
    with pytest.raises(CacheportError, match="same cache"):
        branch_pairs(old, same, ["main"])


def test_a_local_directory_is_a_store_too(builtins: Plugins) -> None:
    _name, local = store(builtins, "local")
    assert local.location == "/tmp/cache/group-app/default" and local.fixed
    (pair,) = branch_pairs(("local", local), store(builtins, "registry", ref="new.example/b"), ["main"])
    assert (str(pair.source), str(pair.target)) == ("/tmp/cache/group-app/default:latest", "new.example/b:main")


def test_credentials_come_from_the_backends_logins_then_the_docker_config(builtins: Plugins, tmp_path: Path) -> None:
    logins = [Login("reg.example", "NOPE"), Login("reg.example", "PW", "USER"), Login("reg.example", "TOKEN", username="ci")]
    assert login_credentials(logins, "reg.example", {"PW": "p", "USER": "u", "TOKEN": "t"}) == Credentials("u", "p")
    assert login_credentials(logins, "reg.example", {"PW": "p", "TOKEN": "t"}) == Credentials("ci", "t")
    assert login_credentials(logins, "other.example", {"PW": "p", "USER": "u"}) is None
    env = {"CI_REGISTRY_USER": "gl", "CI_REGISTRY_PASSWORD": "secret"}
    with store(builtins, "gitlab", environ=env, ref="reg.example/a")[1].open() as session:
        assert isinstance(session, RegistryRepository)
        assert session.registry.credentials == Credentials("gl", "secret")
        assert "secret" not in repr(session) + repr(session.registry)
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"reg.example": {"username": "d", "password": "c"}}}))
    with store(builtins, "registry", environ={"DOCKER_CONFIG": str(tmp_path)}, ref="reg.example/a")[1].open() as s:
        assert isinstance(s, RegistryRepository) and s.registry.credentials == Credentials("d", "c")


# --- copying ----------------------------------------------------------------------------------------------------


def side(host: str, ref: str, image_manifest: bool = False) -> Side:
    repo, _, tag = ref.partition(":")
    cache = RegistryCache.from_options(f"{host}/{repo}", {"image-manifest": True} if image_manifest else {})
    return Side("x", registry_store(cache, request({})), tag)


def session(registry: Registry, ref: str) -> RegistryRepository:
    return RegistryRepository(registry, ref.partition(":")[0])


def test_copy_writes_blobs_first_and_the_manifest_last_then_finds_it_up_to_date() -> None:
    with FakeRegistry() as a, FakeRegistry(auth="bearer") as b, Registry(a.host) as src, \
            Registry(b.host, Credentials("u", "p")) as dst:
        index = cache_index(a, "old/cache", "main", layers=3)
        pair = Pair("main", side(a.host, "old/cache:main"), side(b.host, "new/cache:main", image_manifest=True))
        outcome = copy_pair(pair, session(src, "old/cache"), session(dst, "new/cache"))
        assert (outcome.status, outcome.converted, outcome.uploaded) == ("copied", True, 4)
        puts = [path for method, path in b.log if method == "PUT" and "/manifests/" in path]
        assert puts == ["/v2/new/cache/manifests/main"]
        assert b.log.index(("PUT", puts[0])) > max(i for i, (m, p) in enumerate(b.log) if "/uploads/" in p)
        stored = dst.get_manifest("new/cache", "main")
        assert stored is not None and stored.json == to_image_manifest(index).json
        again = copy_pair(pair, session(src, "old/cache"), session(dst, "new/cache"))
        assert again.status == "up-to-date" and dst.counters.manifests_put == 1


def test_an_interrupted_copy_resumes_and_never_leaves_a_dangling_manifest() -> None:
    with FakeRegistry() as a, FakeRegistry() as b, Registry(a.host) as src, Registry(b.host) as dst:
        cache_index(a, "old/cache", "main", layers=3)
        pair = Pair("main", side(a.host, "old/cache:main"), side(b.host, "new/cache:main"))
        calls = {"n": 0}
        real = dst.upload_resumable
        lock = threading.Lock()

        def flaky(*args: object, **kwargs: object) -> int:
            with lock:
                calls["n"] += 1
                n = calls["n"]
            if n == 3:
                raise CacheportError("connection lost")
            return real(*args, **kwargs)  # type: ignore[arg-type]

        dst.upload_resumable = flaky  # type: ignore[method-assign]
        first = copy_pair(pair, session(src, "old/cache"), session(dst, "new/cache"))
        assert first.status == "failed" and first.error == "connection lost"
        assert dst.get_manifest("new/cache", "main") is None
        dst.upload_resumable = real  # type: ignore[method-assign]
        second = copy_pair(pair, session(src, "old/cache"), session(dst, "new/cache"))
        # the blobs beside the one that failed were all copied the first time
        assert (second.status, second.present, second.uploaded) == ("copied", 3, 1)


def test_an_image_index_is_copied_with_its_child_manifests() -> None:
    with FakeRegistry() as a, FakeRegistry() as b, Registry(a.host) as src, Registry(b.host) as dst:
        config, layer = a.add_blob("img", b"{}"), a.add_blob("img", b"layer")
        child = a.add_manifest("img", "child", {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                                "config": {"mediaType": "c", "digest": config, "size": 2},
                                                "layers": [{"mediaType": LAYER, "digest": layer, "size": 5}]})
        a.add_manifest("img", "v1", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": child.digest, "size": len(child.data)}]})
        outcome = copy_pair(Pair("v1", side(a.host, "img:v1"), side(b.host, "img2:v1")), session(src, "img"),
                            session(dst, "img2"))
        assert outcome.status == "copied" and outcome.uploaded == 2
        assert dst.get_manifest("img2", child.digest) is not None


def test_a_missing_source_fails_that_ref_only() -> None:
    with FakeRegistry() as a, Registry(a.host) as client:
        outcome = copy_pair(Pair("gone", side(a.host, "old/cache:gone"), side(a.host, "new/cache:gone")),
                            session(client, "old/cache"), session(client, "new/cache"))
    assert outcome.status == "failed" and outcome.error == f"no cache at {a.host}/old/cache:gone"


# --- the command ------------------------------------------------------------------------------------------------

def seed_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``cacheport seed`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "cacheport", "seed", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture
def two(clean_env: dict[str, str]) -> Iterator[tuple[FakeRegistry, FakeRegistry, dict[str, str]]]:
    """An old registry (bearer auth, the gitlab backend) and a new one (the registry backend), configured."""
    with FakeRegistry(auth="bearer", user="gl", password="gl-pw") as old, FakeRegistry() as new:
        Path("cacheport.toml").write_text(
            f'backend = "registry"\n[registry]\nref = "{new.host}/new/cache"\n'
            f'[gitlab]\nref = "{old.host}/group/app/cache"\n[migration]\nfrom = "gitlab"\n')
        env = {**clean_env, "CACHEPORT_LOAD_PLUGINS": "", "CI_REGISTRY_USER": "gl", "CI_REGISTRY_PASSWORD": "gl-pw"}
        yield old, new, env


def test_seed_command_copies_then_finds_everything_up_to_date(two: tuple[FakeRegistry, FakeRegistry, dict[str, str]]) -> None:
    old, new, env = two
    cache_index(old, "group/app/cache", "main")
    cache_index(old, "group/app/cache", "feature-x")
    out = seed_cli("--branch", "main", "--branch", "feature/X", env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"✓ main: {old.host}/group/app/cache:main → {new.host}/new/cache:main: 3 blob(s) uploaded")
    assert lines[1].startswith("✓ feature/X: ")
    assert lines[2].startswith("seeded gitlab → registry: 2 copied, 0 up to date, 0 failed;")
    assert sorted(t for t in new.manifests["new/cache"] if not t.startswith("sha256:")) == ["feature-x", "main"]
    again = seed_cli("--branch", "main", "--branch", "feature/X", "--format", "json", env=env)
    summary = json.loads(again.stdout)
    assert (summary["copied"], summary["up_to_date"], summary["bytes_uploaded"]) == (0, 2, 0)
    assert [r["status"] for r in summary["refs"]] == ["up-to-date", "up-to-date"]


def test_dry_run_writes_nothing(two: tuple[FakeRegistry, FakeRegistry, dict[str, str]]) -> None:
    old, new, env = two
    cache_index(old, "group/app/cache", "main")
    out = seed_cli("--all", "--dry-run", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"~ main: {old.host}/group/app/cache:main → {new.host}/new/cache:main: "
                                 "3 blob(s) to upload (")
    assert "nothing written" in out.stdout
    assert {m for m, _ in new.log} <= {"GET", "HEAD"} and {m for m, _ in old.log} <= {"GET", "HEAD"}


def test_same_host_seed_mounts_and_the_new_backends_format_is_used(clean_env: dict[str, str]) -> None:
    with FakeRegistry() as reg:
        index = cache_index(reg, "group/app/cache", "main")
        Path("cacheport.toml").write_text(
            f'backend = "registry"\n[registry]\nref = "{reg.host}/new/cache"\nimage-manifest = true\n'
            f'[gitlab]\nref = "{reg.host}/group/app/cache"\n')
        out = seed_cli("--from", "gitlab", "--branch", "main", "--format", "json",
                       env={**clean_env, "CACHEPORT_LOAD_PLUGINS": ""})
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        assert (summary["blobs_mounted"], summary["bytes_uploaded"], summary["refs"][0]["converted"]) == (3, 0, True)
        media_type, data = reg.manifests["new/cache"]["main"]
        assert media_type == OCI_MANIFEST and json.loads(data) == to_image_manifest(index).json


def test_a_failed_ref_is_one_line_and_exit_1_while_the_others_are_copied(
        two: tuple[FakeRegistry, FakeRegistry, dict[str, str]]) -> None:
    old, new, env = two
    cache_index(old, "group/app/cache", "main")
    out = seed_cli("--branch", "gone", "--branch", "main", env=env)
    assert out.returncode == 1
    assert f"✗ gone: {old.host}/group/app/cache:gone → {new.host}/new/cache:gone: no cache at " in out.stdout
    assert "✓ main:" in out.stdout
    assert out.stderr.strip() == "cacheport: error: 1 of 2 ref(s) failed: gone"


def test_wrong_credentials_fail_with_one_line(two: tuple[FakeRegistry, FakeRegistry, dict[str, str]]) -> None:
    _old, _new, env = two
    out = seed_cli("--branch", "main", env={**env, "CI_REGISTRY_PASSWORD": "wrong"})
    assert out.returncode == 1
    assert "refused a token as 'gl' (HTTP 401)" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "wrong" not in out.stderr


def test_an_unreachable_registry_is_one_line(two: tuple[FakeRegistry, FakeRegistry, dict[str, str]]) -> None:
    _old, new, env = two
    new.__exit__()
    out = seed_cli("--branch", "main", env=env)
    assert out.returncode == 1
    assert out.stderr.startswith(f"cacheport: error: {new.host} is unreachable: ")
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize(("args", "message"), [
    ((), "say what to copy: --branch BRANCH (repeatable) or --all"),
    (("--branch", "a", "--all"), "say what to copy"),
    (("--from", "registry", "--branch", "a"), "--from and --to both name 'registry'; nothing to copy"),
    (("--from", "gha", "--branch", "a"), "backend 'gha' keeps its cache where cacheport can't reach it"),
    (("--from", "nope", "--branch", "a"), "nope"),
    (("--to", "gitlab", "--backend", "registry", "--branch", "a"), "--to gitlab and --backend registry disagree"),
    (("--read-only", "--branch", "a"), "--read-only contradicts it"),
])
def test_bad_input_is_one_line_and_exit_2(two: tuple[FakeRegistry, FakeRegistry, dict[str, str]],
                                          args: tuple[str, ...], message: str) -> None:
    out = seed_cli(*args, env=two[2])
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("cacheport: error: ") and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_from_defaults_to_the_migration_table(clean_env: dict[str, str]) -> None:
    Path("cacheport.toml").write_text('backend = "registry"\n[registry]\nref = "127.0.0.1:1/a"\n')
    out = seed_cli("--branch", "main", env={**clean_env, "CACHEPORT_LOAD_PLUGINS": ""})
    assert out.returncode == 2
    assert 'give --from OLD, or set [migration] from = "OLD"' in out.stderr


def test_seed_refuses_jobs_the_trust_rules_keep_off_protected_names(
        two: tuple[FakeRegistry, FakeRegistry, dict[str, str]]) -> None:
    old, new, env = two
    cache_index(old, "group/app/cache", "main")
    unprotected = {**env, "CACHEPORT_TRUST": "protected"}  # a laptop is no protected pipeline
    out = seed_cli("--branch", "main", env=unprotected)
    assert out.returncode == 2 and "not seeding from this job" in out.stderr, out.stderr
    assert {m for m, _ in new.log} <= {"GET", "HEAD"}
    assert seed_cli("--branch", "main", "--dry-run", env=unprotected).returncode == 0


def test_a_caches_mounts_go_with_it_to_the_name_beside_the_new_one(builtins: Plugins) -> None:
    old = store(builtins, "gitlab", key="arm64", ref="old.example/a")
    new = store(builtins, "registry", key="arm64", ref="new.example/b")
    names = ["arm64-main", "arm64-main.mounts", "arm64-feature-x", "arm64-gone.mounts"]
    assert old[1].branch_of("arm64-main.mounts") is None
    pairs = name_pairs(old, new, names)
    # never a branch called "main.mounts"; mounts whose cache is gone are not copied on their own
    assert [(p.name, p.source.name, p.target.name) for p in pairs] == [
        ("main", "arm64-main", "arm64-main"),
        ("main (mounts)", "arm64-main.mounts", "arm64-main.mounts"),
        ("feature-x", "arm64-feature-x", "arm64-feature-x"),
    ]
    _name, local = store(builtins, "local")
    pairs = with_mounts(branch_pairs(("local", local), new, ["main"]), {"latest.mounts"}.__contains__)
    assert [(p.source.name, p.target.name) for p in pairs] == [("latest", "arm64-main"),
                                                               ("latest.mounts", "arm64-main.mounts")]


def test_a_signature_goes_with_a_cache_copied_as_it_is_and_not_with_a_converted_one() -> None:
    from cacheport.ops.signatures import store as store_signature
    from cacheport.signing import signature_tag

    with FakeRegistry() as a, FakeRegistry() as b, Registry(a.host) as src, Registry(b.host) as dst:
        index = cache_index(a, "old/cache", "main")
        store_signature(src, "old/cache", index.digest, b'{"payloadType": "stand-in"}')
        same = Pair("main", side(a.host, "old/cache:main"), side(b.host, "new/cache:main"))
        assert copy_pair(same, session(src, "old/cache"), session(dst, "new/cache")).status == "copied"
        assert dst.get_manifest("new/cache", signature_tag(index.digest)) == src.get_manifest(
            "old/cache", signature_tag(index.digest))
        converted = Pair("main", side(a.host, "old/cache:main"), side(b.host, "other/cache:main", image_manifest=True))
        assert copy_pair(converted, session(src, "old/cache"), session(dst, "other/cache")).converted
        assert [t for t in b.manifests["other/cache"] if t.endswith(".cacheport-sig")] == []


def test_a_mounts_artifact_s_signature_goes_with_it_even_into_an_image_manifest_backend(tmp_path: Path) -> None:
    """Mounts are never converted, so their digest, and with it their signature, survives any copy."""
    from cacheport.mounts import CacheMount, MountLimits
    from cacheport.ops.mounts_store import publish
    from cacheport.ops.signatures import store_in
    from cacheport.signing import signature_tag
    from tests.fakes.caches import mount_archive

    archive = mount_archive(tmp_path / "pip.tgz", CacheMount("pip", "/root/.cache/pip"), {"a.whl": b"a"})
    with FakeRegistry() as a, FakeRegistry() as b, Registry(a.host) as src, Registry(b.host) as dst:
        publish(session(src, "old/cache"), "main", [archive], limits=MountLimits())
        digest = str(src.manifest_digest("old/cache", "main.mounts"))
        store_in(session(src, "old/cache"), digest, b'{"payloadType": "stand-in"}')
        pair = Pair("main", side(a.host, "old/cache:main.mounts"),
                    side(b.host, "new/cache:main.mounts", image_manifest=True))
        outcome = copy_pair(pair, session(src, "old/cache"), session(dst, "new/cache"))
        assert outcome.status == "copied" and not outcome.converted
        assert dst.manifest_digest("new/cache", "main.mounts") == digest
        assert dst.get_manifest("new/cache", signature_tag(digest)) == src.get_manifest("old/cache",
                                                                                        signature_tag(digest))

"""Signed caches (trust = "signed", docs/signed-caches.md) against a token-auth distribution registry and Pulp,
with real builds.

The proof: a protected build signs its export; an "attacker" with the registry's write credentials pushes its
own cache onto the protected tag with plain buildx; the next protected build refuses it, says so and builds cold,
and signs what it exports; the one after is warm again. A tag moved between the check (`cacheport args`) and the
build changes nothing, because the import is by digest; an older signed cache replayed onto the tag is imported
while its signature is younger than signed-max-age (the design's answer to rollback; the bound itself is tested in
tests/test_signing.py). Seeding from the registry to Pulp carries the signature, so Pulp alone is warm for a
protected build, and prune removes a signature no cache points at any more. Cache mounts the same way: an
attacker's own ``main.mounts`` is refused by the next protected build, whose step then downloads everything again,
and ``cacheport verify`` reports it as it reports a layer cache.
History records too: a protected build signs the record it leaves, and a record the attacker pushes under a
record name is left out of ``cacheport history`` and of the trend the next build shows, with one line.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .harness import Harness, Pulp, clean_environ, gitlab_env, pulp_env

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@attrs.frozen
class Store:
    """Where the protected cache lives, and the write credentials both the protected job and the attacker have."""

    registry: str
    repository: str
    user: str
    password: str
    env: dict[str, str]


def keys() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = base64.b64encode(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())).decode()
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    return private, public


@contextmanager
def token_store(harness: Harness, tmp: Path) -> Iterator[Store]:
    (tmp / "registry").mkdir()
    with harness.token_registry(tmp / "registry") as reg:
        env = gitlab_env(f"{reg.host}/group/app", "main", CI_REGISTRY_USER=reg.user, CI_REGISTRY_PASSWORD=reg.password)
        yield Store(reg.host, "group/app/cache", reg.user, reg.password, env)


@contextmanager
def pulp_store(pulp: Pulp) -> Iterator[Store]:
    project = f"E2E/Signed-{uuid.uuid4().hex[:8]}"
    yield Store(pulp.registry, f"{project.lower()}/cache", pulp.user, pulp.password, pulp_env(pulp, project))


def protected(store: Store, private: str, public: str) -> dict[str, str]:
    return {**store.env, "CI_COMMIT_REF_PROTECTED": "true", "CACHEPORT_TRUST": "signed", "CACHEPORT_SIGNERS": public,
            "CACHE_SIGNING_KEY": private}


def api(store: Store, method: str, path: str, data: bytes | None = None,
        content_type: str = "") -> tuple[bytes, dict[str, str]]:
    """The registry's API with the write credentials (distribution's token flow, or Pulp's basic auth)."""
    url = f"http://{store.registry}/v2/{store.repository}/{path}"
    basic = "Basic " + base64.b64encode(f"{store.user}:{store.password}".encode()).decode()
    headers = {"Authorization": basic}
    if path.startswith("manifests/"):
        headers["Accept"] = OCI_MANIFEST + ", application/vnd.oci.image.index.v1+json"
    if content_type:
        headers["Content-Type"] = content_type
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=30) as r:
            return r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        challenge = exc.headers.get("WWW-Authenticate", "")
        if exc.code != 401 or not challenge.startswith("Bearer"):
            raise
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        scope = f"repository:{store.repository}:pull,push"
        token_url = f"{params['realm']}?service={params['service']}&scope={scope}"
        with urllib.request.urlopen(urllib.request.Request(token_url, headers={"Authorization": basic}),
                                    timeout=30) as r:
            token = json.load(r)["token"]
        headers["Authorization"] = f"Bearer {token}"
        with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=30) as r:
            return r.read(), dict(r.headers)


def digest_of(store: Store, tag: str) -> str:
    _body, headers = api(store, "HEAD", f"manifests/{tag}")
    return {k.lower(): v for k, v in headers.items()}["docker-content-digest"]


def move_tag(store: Store, tag: str, digest: str) -> None:
    """What an attacker with the job token can do: point a tag at any manifest the repository holds."""
    body, headers = api(store, "GET", f"manifests/{digest}")
    kind = {k.lower(): v for k, v in headers.items()}["content-type"]
    api(store, "PUT", f"manifests/{tag}", body, kind)


def buildx(harness: Harness, store: Store, ctx: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``docker buildx build`` by hand, logged in to the store with the write credentials (a docker config of its
    own beside the harness's, with the same buildx)."""
    config = ctx.parent / f"docker-{uuid.uuid4().hex[:8]}"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"auths": {store.registry: {
        "auth": base64.b64encode(f"{store.user}:{store.password}".encode()).decode()}}}))
    plugins = Path(harness.docker_env["DOCKER_CONFIG"]) / "cli-plugins"
    if plugins.is_dir():
        (config / "cli-plugins").symlink_to(plugins)
    return subprocess.run([harness.env["CACHEPORT_E2E_DOCKER_BIN"], "buildx", "build", "--network=host", *args, "."],
                          cwd=ctx, env={**clean_environ(), **harness.docker_env, "DOCKER_CONFIG": str(config)},
                          capture_output=True, text=True, timeout=300)


def attacker_push(harness: Harness, store: Store, tmp: Path) -> None:
    """Another job's own build pushed to the protected tag with docker buildx, not cacheport."""
    cache = (f"type=registry,ref={store.registry}/{store.repository}:main,image-manifest=true,oci-mediatypes=true,"
             "mode=max,registry.insecure=true")
    done = buildx(harness, store, harness.project(tmp / "evil"), f"--cache-to={cache}")
    assert done.returncode == 0, done.stdout + done.stderr


def signed_digest(log: str, store: Store) -> str:
    found = re.search(rf"signature: signed {re.escape(store.registry)}/{re.escape(store.repository)}:main "
                      r"\((sha256:[0-9a-f]{64})\)", log)
    assert found, log
    return found.group(1)


def scenario(harness: Harness, store: Store, tmp: Path) -> None:
    private, public = keys()
    env = protected(store, private, public)
    ctx = harness.project(tmp)

    harness.prune()
    first = harness.build(ctx, env=env)  # 1. a protected build signs its export
    assert first.code == 0 and first.ran, first.log
    signed = signed_digest(first.log, store)
    assert digest_of(store, "main") == signed
    assert f"sha256-{signed.removeprefix('sha256:')}.cacheport-sig" in _tags(store)

    attacker_push(harness, store, tmp)  # 2. an untrusted job overwrites the protected tag
    foreign = digest_of(store, "main")
    assert foreign != signed

    harness.prune()
    refused = harness.build(ctx, env=env)  # 3. refused, and cold
    assert refused.code == 0, refused.log
    assert (f"signature: refused {store.registry}/{store.repository}:main ({foreign}): not signed; building "
            "without it") in refused.log
    assert len(refused.ran) == 3, refused.log
    assert "refused: not signed" in refused.log  # in the cache report too
    rebuilt = signed_digest(refused.log, store)

    harness.prune()
    warm = harness.build(ctx, env=env)  # 4. after the protected rebuild, hits come back
    assert warm.code == 0 and warm.ran == [], warm.log
    assert warm.rand == refused.rand
    assert f"signature: verified {store.registry}/{store.repository}:main ({rebuilt})" in warm.log
    for result in (first, refused, warm):
        assert private not in result.log

    # A tag moved between the check and the build: the flags `cacheport args` printed import by digest.
    flags = subprocess.run([sys.executable, "-m", "cacheport", "args", "--lines"], cwd=ctx, capture_output=True,
                           text=True, env={**clean_environ(), **harness.docker_env, **env, "CACHEPORT_READ_ONLY": "1"},
                           timeout=120)
    assert f"--cache-from=type=registry,ref={store.registry}/{store.repository}@{digest_of(store, 'main')}" in \
        flags.stdout, flags.stdout + flags.stderr
    move_tag(store, "main", foreign)
    harness.prune()
    pinned = buildx(harness, store, ctx, *flags.stdout.split(), f"--output=type=local,dest={tmp / 'pinned'}")
    assert pinned.returncode == 0, pinned.stderr
    assert (tmp / "pinned" / "rand").read_text() == warm.rand  # warm from the signed cache, not the tag's

    # Rollback: the first signed cache replayed onto main is imported while younger than signed-max-age.
    move_tag(store, "main", signed)
    verified = subprocess.run([sys.executable, "-m", "cacheport", "verify", "--format", "json"], cwd=ctx,
                              capture_output=True, text=True, env={**clean_environ(), **harness.docker_env, **env},
                              timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert [d["digest"] for d in json.loads(verified.stdout)] == [signed]


def _tags(store: Store) -> list[str]:
    body, _headers = api(store, "GET", "tags/list")
    return list(json.loads(body).get("tags") or [])


def test_signed_caches_on_a_token_auth_registry(harness: Harness, tmp_path: Path) -> None:
    with token_store(harness, tmp_path) as store:
        scenario(harness, store, tmp_path)


def test_signed_caches_on_pulp(harness: Harness, pulp: Pulp, tmp_path: Path) -> None:
    with pulp_store(pulp) as store:
        scenario(harness, store, tmp_path)


def test_a_protected_build_without_the_key_stops_before_building(harness: Harness, tmp_path: Path) -> None:
    with token_store(harness, tmp_path) as store:
        _private, public = keys()
        env = protected(store, "", public)
        result = harness.build(harness.project(tmp_path), env=env)
        assert result.code == 2, result.log
        assert ("cacheport: error: trust = \"signed\": this protected pipeline exports, but $CACHE_SIGNING_KEY "
                "(signing-key-env) is not set: give the job the protected CI/CD variable holding the private key, "
                "or the cache it writes will be refused by every protected build") in result.log.splitlines()
        assert "Traceback" not in result.log and "#1 " not in result.log  # no build started
        with pytest.raises(urllib.error.HTTPError) as nothing:  # and nothing was written: no such repository
            _tags(store)
        assert nothing.value.code == 404, nothing.value


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def test_seed_carries_signatures_to_pulp_and_prune_removes_the_stale_ones(harness: Harness, pulp: Pulp,
                                                                          tmp_path: Path) -> None:
    """GitLab's registry (token auth) to Pulp under trust = "signed": the seeded cache's signature comes along, so
    the first protected build from Pulp alone is warm; prune then removes the signature no cache points at."""
    private, public = keys()
    project = f"E2E/Seeded-{uuid.uuid4().hex[:8]}"
    repo = f"{project.lower()}/cache"
    (tmp_path / "registry").mkdir()
    with harness.token_registry(tmp_path / "registry") as reg:
        env = {**pulp_env(pulp, project), "CI_REGISTRY_IMAGE": f"{reg.host}/group/app",
               "CI_REGISTRY_USER": reg.user, "CI_REGISTRY_PASSWORD": reg.password,
               "CI_COMMIT_REF_PROTECTED": "true", "CACHEPORT_TRUST": "signed", "CACHEPORT_SIGNERS": public,
               "CACHE_SIGNING_KEY": private,
               "CACHEPORT_HISTORY": "off"}  # build records are signed too: only caches' signatures here
        ctx = harness.project(tmp_path)
        harness.prune()
        first = harness.build(ctx, "--backend", "gitlab", env=env)
        assert first.code == 0 and "signature: signed" in first.log, first.log

        def cacheport(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "cacheport", *args], cwd=ctx, capture_output=True,
                                  text=True, env={**clean_environ(), **harness.docker_env, **env}, timeout=300)

        seeded = cacheport("seed", "--from", "gitlab", "--to", "pulp", "--branch", "main", "--progress", "quiet")
        assert seeded.returncode == 0, seeded.stdout + seeded.stderr
        harness.prune()
        warm = harness.build(ctx, env=env)
        assert warm.code == 0 and warm.ran == [], warm.log
        assert f"signature: verified {pulp.registry}/{repo}:main" in warm.log
        (ctx / "Dockerfile").write_text((ctx / "Dockerfile").read_text() + "RUN echo changed > /changed\n")
        changed = harness.build(ctx, env=env)  # a new cache, signed; the seeded one's signature is now stale
        assert changed.code == 0 and "signature: signed" in changed.log, changed.log
        signatures_ = [t for t in harness.tags(pulp.registry, repo, auth=(pulp.user, pulp.password))
                       if t.endswith(".cacheport-sig")]
        assert len(signatures_) >= 2, signatures_
        pruned = cacheport("prune", "--older-than", "30d", "--yes")
        assert pruned.returncode == 0, pruned.stdout + pruned.stderr
        # Pulp deletes in a task, and its tag list and manifests catch up with each other only after a while:
        # wait (a minute at most) until what it lists is settled, then only the current cache's signature is left.
        deadline = time.monotonic() + 60
        while True:
            kept = f"sha256-{digest_of(_pulp_store(pulp, repo), 'main').removeprefix('sha256:')}.cacheport-sig"
            left = [t for t in _tags(_pulp_store(pulp, repo)) if t.endswith(".cacheport-sig")]
            if left == [kept] or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert left == [kept], pruned.stdout + pruned.stderr


def _pulp_store(pulp: Pulp, repo: str) -> Store:
    return Store(pulp.registry, repo, pulp.user, pulp.password, {})


def attacker_mounts(store: Store, name: str, mount_id: str, target: str, files: dict[str, bytes]) -> str:
    """Another job's own cache-mounts artifact, written to ``name`` with the registry client and the write
    credentials (not through cacheport's save): an archive of ``files`` for the mount ``mount_id``."""
    import gzip
    import hashlib
    import io
    import tarfile

    from cacheport.oci.auth import Credentials
    from cacheport.oci.registry import Registry
    from cacheport.records import Manifest

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.uid, info.gid = len(data), 1000, 1000
            tar.addfile(info, io.BytesIO(data))
    layer, config = gzip.compress(raw.getvalue()), b"{}"
    digest = {blob: "sha256:" + hashlib.sha256(blob).hexdigest() for blob in (layer, config)}
    key = "io.cacheport.mount."
    manifest = Manifest.from_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.cacheport.mounts.v1",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest[config], "size": 2},
        "layers": [{"mediaType": "application/vnd.cacheport.mount.v1.tar+gzip", "digest": digest[layer],
                    "size": len(layer), "annotations": {
                        key + "id": mount_id, key + "target": target, key + "sharing": "locked", key + "uid": "1000",
                        key + "gid": "1000", key + "mode": "750"}}]})
    with Registry(store.registry, Credentials(store.user, store.password), insecure=True) as client:
        for blob in (layer, config):
            client.upload_blob(store.repository, digest[blob], len(blob), [blob])
        client.put_manifest(store.repository, name, manifest)
    return manifest.digest


def verify_mounts(harness: Harness, ctx: Path, env: dict[str, str], code: int = 0) -> list[tuple[str, str, bool, str]]:
    """What ``cacheport verify --format json`` says of cache mounts: (ref, digest, verified, reason) each."""
    done = subprocess.run([sys.executable, "-m", "cacheport", "verify", "--format", "json"], cwd=ctx,
                          capture_output=True, text=True, env={**clean_environ(), **harness.docker_env, **env},
                          timeout=120)
    assert done.returncode == code, done.stdout + done.stderr
    return [(d["ref"], d["digest"], d["verified"], d["reason"]) for d in json.loads(done.stdout)
            if d["type"] == "mounts"]


def test_a_poisoned_cache_mount_is_refused_by_the_next_protected_build(harness: Harness, tmp_path: Path) -> None:
    """A protected build saves and signs its cache mounts; an "attacker" with the write credentials puts its own
    artifact (every file the step wants, poisoned) at ``main.mounts``; the next protected build refuses it, and
    its step downloads everything again, with nothing of the attacker's in the image; after that protected
    rebuild, the mounts restore again."""
    from .harness import Downloads, downloads_context, mount_said

    private, public = keys()
    mount_id, target = f"downloads-{uuid.uuid4().hex[:8]}", "/var/cache/dl"

    def project(files: list[str]) -> Path:
        return downloads_context(harness, tmp_path / "app", server.port, files, mount_id, target=target,
                                 options="sharing=locked,uid=1000,gid=1000,mode=0750")

    server = Downloads()
    try:
        with token_store(harness, tmp_path) as store:
            env = {**protected(store, private, public),
                   "CACHEPORT_MOUNTS__HELPER_IMAGE": harness.env["CACHEPORT_E2E_HELPER_IMAGE"]}
            harness.prune()
            first = harness.build(project(["a", "b", "c"]), env=env)
            assert first.code == 0, first.log
            assert server.counts == {"a": 1, "b": 1, "c": 1}
            signed = digest_of(store, "main.mounts")
            assert mount_said(first.log, mount_id, "saved", "main.mounts") and f"signed ({signed})" in first.log
            assert f"sha256-{signed.removeprefix('sha256:')}.cacheport-sig" in _tags(store)
            ref = f"{store.registry}/{store.repository}:main.mounts"
            checked = verify_mounts(harness, tmp_path / "app", env)
            assert checked == [(ref, signed, True, checked[0][3])] and checked[0][3].startswith("signed by key ")

            foreign = attacker_mounts(store, "main.mounts", mount_id, target,
                                      {f: b"poisoned" for f in ("a", "b", "c", "d")})
            assert digest_of(store, "main.mounts") == foreign != signed
            assert verify_mounts(harness, tmp_path / "app", env, code=1) == [(ref, foreign, False, "not signed")]

            harness.prune()
            refused = harness.build(project(["a", "b", "c", "d"]), env=env)
            assert refused.code == 0, refused.log
            assert mount_said(refused.log, mount_id, "refused", "main.mounts"), refused.log
            assert f"not signed ({foreign})" in refused.log
            assert server.counts == {"a": 2, "b": 2, "c": 2, "d": 1}, refused.log  # all downloaded again
            assert b"poisoned" not in b"".join((refused.out / "deps" / f).read_bytes() for f in "abcd")
            resigned = digest_of(store, "main.mounts")
            assert resigned != foreign and f"signed ({resigned})" in refused.log

            harness.prune()
            warm = harness.build(project(["a", "b", "c", "d", "e"]), env=env)
            assert warm.code == 0, warm.log
            assert mount_said(warm.log, mount_id, "restored", "main.mounts"), warm.log
            assert server.counts == {"a": 2, "b": 2, "c": 2, "d": 1, "e": 1}, warm.log
            for result in (first, refused, warm):
                assert private not in result.log
    finally:
        server.close()


def test_seed_carries_a_mounts_signature_to_pulp_where_a_protected_build_restores_them(
        harness: Harness, pulp: Pulp, tmp_path: Path) -> None:
    """Cache mounts saved and signed on GitLab's registry, seeded into Pulp: their signature comes along, so the
    first protected build from Pulp alone restores them, verified, and its step downloads only what is new."""
    from .harness import Downloads, downloads_context, mount_said

    private, public = keys()
    project = f"E2E/SeededMounts-{uuid.uuid4().hex[:8]}"
    repo = f"{project.lower()}/cache"
    mount_id = f"downloads-{uuid.uuid4().hex[:8]}"
    server = Downloads()
    try:
        def ctx(files: list[str]) -> Path:
            return downloads_context(harness, tmp_path / "app", server.port, files, mount_id)

        (tmp_path / "registry").mkdir()
        with harness.token_registry(tmp_path / "registry") as reg:
            env = {**pulp_env(pulp, project), "CI_REGISTRY_IMAGE": f"{reg.host}/group/app",
                   "CI_REGISTRY_USER": reg.user, "CI_REGISTRY_PASSWORD": reg.password,
                   "CI_COMMIT_REF_PROTECTED": "true", "CACHEPORT_TRUST": "signed", "CACHEPORT_SIGNERS": public,
                   "CACHE_SIGNING_KEY": private,
                   "CACHEPORT_MOUNTS__HELPER_IMAGE": harness.env["CACHEPORT_E2E_HELPER_IMAGE"]}
            harness.prune()
            first = harness.build(ctx(["a", "b"]), "--backend", "gitlab", env=env)
            assert first.code == 0 and mount_said(first.log, mount_id, "saved", "main.mounts"), first.log
            seeded = subprocess.run([sys.executable, "-m", "cacheport", "seed", "--from", "gitlab", "--to", "pulp",
                                     "--branch", "main", "--progress", "quiet"], cwd=tmp_path / "app",
                                    capture_output=True, text=True, timeout=300,
                                    env={**clean_environ(), **harness.docker_env, **env})
            assert seeded.returncode == 0, seeded.stdout + seeded.stderr
        digest = digest_of(_pulp_store(pulp, repo), "main.mounts")
        assert f"sha256-{digest.removeprefix('sha256:')}.cacheport-sig" in harness.tags(
            pulp.registry, repo, auth=(pulp.user, pulp.password))
        harness.prune()
        warm = harness.build(ctx(["a", "b", "c"]), env=env)
        assert warm.code == 0 and mount_said(warm.log, mount_id, "restored", "main.mounts"), warm.log
        assert server.counts == {"a": 1, "b": 1, "c": 1}, warm.log
        assert private not in first.log + seeded.stdout + seeded.stderr + warm.log
    finally:
        server.close()


def gone_from(store: Store, names: set[str]) -> list[str]:
    """The store's tags once none of ``names`` is listed any more, or after a minute (the caller asserts)."""
    import time

    deadline = time.monotonic() + 60
    tags = _tags(store)
    while names & set(tags) and time.monotonic() < deadline:
        time.sleep(1)
        tags = _tags(store)
    return tags


def records_scenario(harness: Harness, store: Store, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from cacheport.kit import registry_client
    from cacheport.oci.repository import RegistryRepository
    from cacheport.ops.history import StoreShelf
    from cacheport.records import Context
    from cacheport.report import BuildReport, Steps
    from cacheport.report import record as rec

    private, public = keys()
    env = protected(store, private, public)
    ctx = harness.project(tmp_path)
    harness.prune()
    first = harness.build(ctx, env=env)  # a protected build signs its cache and its record
    assert first.code == 0, first.log
    [mine] = [t for t in _tags(store) if t.startswith(rec.PREFIX)]
    mine_signature = f"sha256-{digest_of(store, mine).removeprefix('sha256:')}.cacheport-sig"
    assert mine_signature in _tags(store)

    # The attacker's record: a warm build that "took" a second, written with the write credentials alone.
    faked = rec.record_of(BuildReport("succeeded", steps=Steps(3, 3, 0), wall_seconds=1.0),
                          Context("gitlab", "group/app", branch="main"), "gitlab", {}, now=datetime.now(UTC))
    with registry_client(store.registry, store.user, store.password) as client:
        StoreShelf(RegistryRepository(client, store.repository), "attacker").write(faked.name, rec.to_json(faked))
    assert faked.name in _tags(store)

    shown = subprocess.run([sys.executable, "-m", "cacheport", "history", "--format", "json"], cwd=ctx,
                           capture_output=True, text=True, env={**clean_environ(), **harness.docker_env, **env},
                           timeout=300)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert [b["name"] for b in doc["builds"]] == [mine]
    assert doc["left_out"]["count"] == 1
    [out] = doc["left_out"]["records"]
    assert (out["name"], out["kind"]) == (faked.name, "unsigned") and out["reason"].startswith("not signed")
    assert "1 record left out: not signed by an allowed key (1: not signed)" in shown.stderr

    harness.prune()
    # The trend after the build counts its own record only; keeping 2, it trims the first, signature and all.
    second = harness.build(ctx, env={**env, "CACHEPORT_HISTORY_KEEP": "2"})
    assert second.code == 0, second.log
    assert "history: 1 record left out: not signed by an allowed key (1: not signed)" in second.log
    tags = gone_from(store, {mine, mine_signature})  # Pulp lists a deleted tag for a while
    [newest] = [t for t in tags if t.startswith(rec.PREFIX) and t not in (mine, faked.name)]
    assert mine not in tags and mine_signature not in tags, second.log
    assert f"sha256-{digest_of(store, newest).removeprefix('sha256:')}.cacheport-sig" in tags
    assert private not in first.log + second.log + shown.stderr


def test_a_record_pushed_by_an_attacker_is_left_out_of_the_history(harness: Harness, tmp_path: Path) -> None:
    with token_store(harness, tmp_path) as store:
        records_scenario(harness, store, tmp_path)


def test_a_record_pushed_by_an_attacker_is_left_out_of_the_history_on_pulp(harness: Harness, pulp: Pulp,
                                                                          tmp_path: Path) -> None:
    with pulp_store(pulp) as store:
        records_scenario(harness, store, tmp_path)

"""``cacheport seed`` between real registries, into a real Pulp and through a real token server, proven by builds.

Each proof: a cache BuildKit exported to the old backend is seeded into the new one; after a prune, a build
that imports from the new backend alone runs no RUN step and gives the same random value. Same-host seeds
mount (no blob bytes move), a second run copies nothing, ``--dry-run`` writes nothing, and a blob larger than
anything a cache here holds is streamed with flat memory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from cacheport.oci.auth import Credentials
from cacheport.oci.format import CACHECONFIG, OCI_INDEX, OCI_MANIFEST, Manifest, sha256_digest
from cacheport.oci.registry import Registry

from .conftest import unavailable
from .harness import Harness, Pulp, Result, TokenRegistry, clean_environ, gitlab_env

RUN_SEED = ("import atexit, re, sys\n"
            # VmHWM is this process's own peak; getrusage's maxrss would include pytest's at fork time
            "atexit.register(lambda: print('maxrss-kb:', re.search(r'VmHWM:\\s*(\\d+)', "
            "open('/proc/self/status').read()).group(1), file=sys.stderr))\n"
            "from cacheport.cli import main\nmain(sys.argv[1:])\n")


@attrs.frozen
class Seeded:
    """One ``cacheport seed --format json`` run."""

    code: int
    summary: dict[str, Any]
    stderr: str
    seconds: float

    @property
    def maxrss_mb(self) -> float:
        line = next(x for x in self.stderr.splitlines() if x.startswith("maxrss-kb:"))
        return int(line.split()[1]) / 1024


def seed(cwd: Path, *args: str, env: dict[str, str]) -> Seeded:
    """``cacheport seed ARGS --format json``, recording the process's peak memory."""
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", RUN_SEED, "seed", *args, "--format", "json"], cwd=cwd,
                          capture_output=True, text=True, env={**clean_environ(), **env}, timeout=600)
    assert proc.stdout.strip(), proc.stderr
    return Seeded(proc.returncode, json.loads(proc.stdout), proc.stderr, time.monotonic() - began)


def warm_from(h: Harness, ctx: Path, cold: Result, env: dict[str, str]) -> Result:
    """After a prune, a build whose only imports are ``env``'s backend must run nothing."""
    h.prune()
    warm = h.build(ctx, env=env)
    assert warm.code == 0, warm.log
    assert warm.ran == [], f"steps ran despite the seeded cache:\n{warm.log}"
    assert warm.rand == cold.rand
    assert ": 4/4 steps cached, 0 executed" in warm.log
    return warm


def report(what: str, s: Seeded) -> None:
    print(f"\n[seed] {what}: {s.summary['seconds']:.2f}s copying ({s.seconds:.2f}s with start-up), "
          f"{s.summary['bytes_uploaded']} bytes uploaded, "
          f"{s.summary['blobs_uploaded']} uploaded / {s.summary['blobs_mounted']} mounted / "
          f"{s.summary['blobs_present']} present, max RSS {s.maxrss_mb:.0f} MB")


@attrs.frozen
class OldCache:
    """The reference build's cache in the auth registry (the GitLab stand-in), for main and feature/Login."""

    ctx: Path
    cold: Result
    env: dict[str, str]  # the gitlab backend's settings and credentials, without a branch
    registry: str
    repository: str


@pytest.fixture(scope="module")
def old_cache(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> OldCache:
    reg = harness.env["CACHEPORT_E2E_AUTH_REGISTRY"]
    user, password = harness.env["CACHEPORT_E2E_AUTH_USER"], harness.env["CACHEPORT_E2E_AUTH_PASSWORD"]
    image = f"{reg}/seed-{uuid.uuid4().hex[:8]}/app"
    ctx = harness.project(tmp_path_factory.mktemp("seed"), work=2.0)
    # The index format, as every BuildKit before v0.21 wrote by default: the caches seed must convert for Pulp.
    index = {"CACHEPORT_GITLAB__IMAGE_MANIFEST": "false"}
    env = {k: v for k, v in gitlab_env(image, "main", CI_REGISTRY_USER=user, CI_REGISTRY_PASSWORD=password).items()
           if k not in ("CI_COMMIT_BRANCH", "CI_COMMIT_REF_NAME")} | index
    harness.prune()
    cold = harness.build(ctx, env=gitlab_env(image, "main", CI_REGISTRY_USER=user, CI_REGISTRY_PASSWORD=password,
                                             **index))
    assert cold.code == 0 and cold.ran, cold.log
    feature = harness.build(ctx, env=gitlab_env(image, "feature/Login", CI_REGISTRY_USER=user,
                                                CI_REGISTRY_PASSWORD=password, **index))
    assert feature.code == 0, feature.log
    repo = image.partition("/")[2] + "/cache"
    assert harness.tags(reg, repo, auth=(user, password)) == ["feature-login", "main"]
    return OldCache(ctx, cold, env, reg, repo)


def registry_env(ref: str, branch: str = "main", **extra: str) -> dict[str, str]:
    """A GitLab job whose cache backend is ``registry`` at ``ref`` (nothing else is imported)."""
    return {**gitlab_env("registry.invalid/unused", branch), "CACHEPORT_BACKEND": "registry",
            "CACHEPORT_REGISTRY__REF": ref, **extra}


def test_seed_across_registries_then_the_new_backend_alone_is_warm(harness: Harness, old_cache: OldCache) -> None:
    new_ref = f"{harness.env['CACHEPORT_E2E_REGISTRY']}/seed-{uuid.uuid4().hex[:8]}/cache"
    env = {**old_cache.env, "CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": new_ref}
    s = seed(old_cache.ctx, "--from", "gitlab", "--branch", "main", "--branch", "feature/Login", env=env)
    report("cross-host, 2 refs", s)
    assert s.code == 0, s.stderr
    assert (s.summary["copied"], s.summary["failed"], s.summary["blobs_mounted"]) == (2, 0, 0)
    assert s.summary["blobs_uploaded"] > 0 and s.summary["bytes_uploaded"] > 1_000_000
    # the second ref shares every blob with the first: only its manifest is new
    assert s.summary["refs"][1]["blobs"]["present"] == s.summary["blobs_present"] > 0
    warm = warm_from(harness, old_cache.ctx, old_cache.cold, registry_env(new_ref, "feature/Login"))
    assert warm.cache["import"][f"registry {new_ref}:feature-login"] == "hit" and old_cache.registry not in warm.log


def test_same_host_seed_mounts_resumes_and_dry_run_writes_nothing(harness: Harness, old_cache: OldCache) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    base = f"{reg}/seed-{uuid.uuid4().hex[:8]}"
    # First into a gitlab-style repository on the plain registry (from the auth registry)...
    gitlab_here = {**gitlab_env(f"{base}/app", "main"), "CI_REGISTRY_USER": "", "CI_REGISTRY_PASSWORD": ""}
    first = seed(old_cache.ctx, "--from", "gitlab", "--to", "registry", "--branch", "main",
                 env={**old_cache.env, "CACHEPORT_REGISTRY__REF": f"{base}/app/cache"})
    assert first.code == 0, first.stderr
    # ...then from there to another repository on the same registry.
    env = {**gitlab_here, "CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{base}/new"}
    dry = seed(old_cache.ctx, "--from", "gitlab", "--branch", "main", "--dry-run", env=env)
    assert dry.code == 0, dry.stderr
    assert dry.summary["refs"][0]["status"] == "would-copy"
    assert dry.summary["refs"][0]["blobs"]["mounted"] == first.summary["blobs_uploaded"]
    assert harness.tags(reg, base.partition("/")[2] + "/new") == []
    same = seed(old_cache.ctx, "--from", "gitlab", "--branch", "main", env=env)
    report("same host, 1 ref (mounts)", same)
    report("cross host, 1 ref", first)
    assert same.code == 0, same.stderr
    assert same.summary["bytes_uploaded"] == 0 and same.summary["blobs_uploaded"] == 0
    assert same.summary["blobs_mounted"] == first.summary["blobs_uploaded"] > 0
    again = seed(old_cache.ctx, "--from", "gitlab", "--branch", "main", env=env)
    assert again.code == 0, again.stderr
    assert again.summary["up_to_date"] == 1
    assert (again.summary["blobs_mounted"], again.summary["blobs_uploaded"], again.summary["blobs_present"]) == (0, 0, 0)
    warm_from(harness, old_cache.ctx, old_cache.cold, registry_env(f"{base}/new"))


def test_all_copies_every_cache_tag(harness: Harness, old_cache: OldCache) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    repo = f"seed-{uuid.uuid4().hex[:8]}/all"
    env = {**old_cache.env, "CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{reg}/{repo}",
           "CACHEPORT_MIGRATION__FROM": "gitlab"}
    s = seed(old_cache.ctx, "--all", env=env)
    assert s.code == 0, s.stderr
    assert sorted((r["branch"], r["target"]) for r in s.summary["refs"]) == [
        ("feature-login", f"{reg}/{repo}:feature-login"), ("main", f"{reg}/{repo}:main")]
    assert harness.tags(reg, repo) == ["feature-login", "main"]


def test_seed_into_pulp_converts_the_index_and_a_build_from_pulp_alone_is_warm(
        harness: Harness, pulp: Pulp, old_cache: OldCache) -> None:
    repo = f"seed-{uuid.uuid4().hex[:8]}/cache"
    creds = {"PULP_USERNAME": pulp.user, "PULP_PASSWORD": pulp.password}
    if importlib.util.find_spec("cacheport_pulp") is not None:
        new = {"CACHEPORT_BACKEND": "pulp", "CACHEPORT_PULP__URL": pulp.url, "CACHEPORT_PULP__REPOSITORY": repo}
    else:  # the pulp plugin is not installed: the registry backend, set up the way Pulp needs
        new = {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{pulp.registry}/{repo}",
               "CACHEPORT_REGISTRY__IMAGE_MANIFEST": "true", "CACHEPORT_REGISTRY__OCI_MEDIATYPES": "true",
               "CACHEPORT_REGISTRY__USERNAME_ENV": "PULP_USERNAME", "CACHEPORT_REGISTRY__PASSWORD_ENV": "PULP_PASSWORD"}
    s = seed(old_cache.ctx, "--from", "gitlab", "--branch", "main", env={**old_cache.env, **new, **creds})
    report("into Pulp, converted", s)
    assert s.code == 0, s.stderr
    assert s.summary["refs"][0]["converted"] is True
    with Registry(pulp.registry, Credentials(pulp.user, pulp.password)) as client:
        stored = client.get_manifest(repo, "main")
        assert stored is not None and stored.media_type == OCI_MANIFEST
        # Pulp answers a mount it cannot do with 404 (not 202): the client says no, and seed streams instead.
        assert client.mount_blob(f"{repo}-mount", stored.descriptors()[0].digest, "seed-nonexistent/x") is False
    assert stored.json["config"]["mediaType"] == CACHECONFIG
    assert all("buildkit/createdat" in layer["annotations"] for layer in stored.json["layers"])
    again = seed(old_cache.ctx, "--from", "gitlab", "--branch", "main", env={**old_cache.env, **new, **creds})
    assert again.summary["up_to_date"] == 1, again.stderr
    build_env = {**gitlab_env("registry.invalid/unused", "main"), **new, **creds}
    warm_from(harness, old_cache.ctx, old_cache.cold, build_env)


# --- flat memory ------------------------------------------------------------------------------------------------

BIG = 256 << 20


def test_a_large_blob_is_streamed_with_flat_memory_and_an_interrupted_seed_resumes(harness: Harness,
                                                                                     tmp_path: Path) -> None:
    import hashlib

    block = os.urandom(1 << 20)

    def chunks() -> Iterator[bytes]:
        """The same bytes every time, never more than 1 MiB of them at once."""
        for i in range(BIG >> 20):
            yield i.to_bytes(8, "big") + block[8:]

    hashed = hashlib.sha256()
    for chunk in chunks():
        hashed.update(chunk)
    digest = "sha256:" + hashed.hexdigest()
    src_host, dst_host = harness.env["CACHEPORT_E2E_REGISTRY"], harness.env["CACHEPORT_E2E_AUTH_REGISTRY"]
    repo = f"seed-{uuid.uuid4().hex[:8]}/big"
    config = json.dumps({"layers": [], "records": []}).encode()
    with Registry(src_host) as source:
        source.upload_blob(repo, digest, BIG, chunks())
        source.upload_blob(repo, sha256_digest(config), len(config), [config])
        index = Manifest.from_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": BIG},
            {"mediaType": CACHECONFIG, "digest": sha256_digest(config), "size": len(config)}]})
        source.put_manifest(repo, "main", index)
    user, password = harness.env["CACHEPORT_E2E_AUTH_USER"], harness.env["CACHEPORT_E2E_AUTH_PASSWORD"]
    env = {"CACHEPORT_GITLAB__REF": f"{src_host}/{repo}", "CACHEPORT_BACKEND": "registry",
           "CACHEPORT_REGISTRY__REF": f"{dst_host}/{repo}", "CACHEPORT_REGISTRY__USERNAME": user,
           "CACHEPORT_REGISTRY__PASSWORD_ENV": "E2E_PW", "E2E_PW": password}
    # Killed in the middle of the big blob: the target has no manifest, so no build can import a broken cache.
    killed = subprocess.Popen([sys.executable, "-c", RUN_SEED, "seed", "--from", "gitlab", "--branch", "main"],
                              cwd=tmp_path, env={**clean_environ(), **env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(0.8)
    killed.kill()
    assert killed.wait(timeout=30) == -9, "the seed finished before it could be interrupted"
    assert harness.tags(dst_host, repo, auth=(user, password)) == []
    s = seed(tmp_path, "--from", "gitlab", "--branch", "main", env=env)  # ...and run again, it completes
    report(f"one {BIG >> 20} MiB blob, cross host", s)
    assert s.code == 0, s.stderr
    assert s.summary["copied"] == 1
    # A kill in the middle of a chunk costs that upload on distribution 2.8 (sent again whole); one between
    # chunks (rare) is continued where it stopped.
    assert s.summary["bytes_uploaded"] <= BIG + len(config)
    assert s.maxrss_mb < 120, f"seeding a {BIG >> 20} MiB blob peaked at {s.maxrss_mb:.0f} MB"
    with Registry(dst_host, Credentials(user, password)) as target:
        assert target.blob_size(repo, digest) == BIG


@pytest.fixture(scope="module")
def token_registry(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    """A distribution registry with ``auth: token``, and its token issuer, on free loopback ports."""
    if shutil.which("openssl") is None:
        unavailable("openssl is needed to sign the test token issuer's JWTs")
    with harness.token_registry(tmp_path_factory.mktemp("token-registry")) as registry:
        yield registry


def granted(scopes: list[str]) -> set[tuple[str, str]]:
    """``["repository:a/b:push,pull"]`` → ``{("a/b", "push"), ("a/b", "pull")}``."""
    return {(name, action) for scope in scopes for _kind, name, actions in [scope.split(":")]
            for action in actions.split(",")}


def test_token_auth_registry(harness: Harness, old_cache: OldCache, token_registry: TokenRegistry) -> None:
    """Into a token-auth registry (push scopes), then within it (a mount: a token for two repositories), then a
    build that imports from it alone (BuildKit doing the same token flow with the same login)."""
    t = token_registry
    base = f"seed-{uuid.uuid4().hex[:8]}"
    login = {"CACHEPORT_REGISTRY__USERNAME": t.user, "CACHEPORT_REGISTRY__PASSWORD_ENV": "TOKEN_PW",
             "TOKEN_PW": t.password}
    into = seed(old_cache.ctx, "--from", "gitlab", "--to", "registry", "--branch", "main",
                env={**old_cache.env, "CACHEPORT_REGISTRY__REF": f"{t.host}/{base}/first", **login})
    assert into.code == 0, into.stderr
    assert into.summary["blobs_uploaded"] > 0
    assert {(f"{base}/first", "pull"), (f"{base}/first", "push")} in [granted(r) for r in t.issuer.requests]
    inside = {**gitlab_env(f"{t.host}/{base}/app", "main"), "CI_REGISTRY_USER": t.user, "CI_REGISTRY_PASSWORD": t.password,
              "CACHEPORT_BACKEND": "gitlab", "CACHEPORT_REGISTRY__REF": f"{t.host}/{base}/first", **login}
    within = seed(old_cache.ctx, "--from", "registry", "--to", "gitlab", "--branch", "main", env=inside)
    report("token registry, same host", within)
    assert within.code == 0, within.stderr
    assert within.summary["blobs_mounted"] == into.summary["blobs_uploaded"]
    assert within.summary["bytes_uploaded"] == 0
    # one token for both repositories (distribution lists scopes and actions in map order: compare as sets)
    both = {(f"{base}/app/cache", "pull"), (f"{base}/app/cache", "push"), (f"{base}/first", "pull")}
    assert any(both <= granted(r) for r in t.issuer.requests), t.issuer.requests
    harness.docker("logout", t.host, check=False)
    warm_from(harness, old_cache.ctx, old_cache.cold, inside)


def test_wrong_credentials_at_a_token_registry_are_one_line(old_cache: OldCache, token_registry: TokenRegistry) -> None:
    t = token_registry
    s = subprocess.run([sys.executable, "-c", RUN_SEED, "seed", "--from", "gitlab", "--to", "registry", "--branch", "main"],
                       cwd=old_cache.ctx, capture_output=True, text=True, timeout=120,
                       env={**clean_environ(), **old_cache.env, "CACHEPORT_REGISTRY__REF": f"{t.host}/x/y",
                            "CACHEPORT_REGISTRY__USERNAME": t.user, "CACHEPORT_REGISTRY__PASSWORD_ENV": "TOKEN_PW",
                            "TOKEN_PW": "wrong-password"})
    assert s.returncode == 1
    errors = [line for line in s.stderr.splitlines() if not line.startswith("maxrss-kb:")]
    assert errors == [f"cacheport: error: {t.host}: the token service {t.issuer.realm} refused a token as "
                      f"'{t.user}' (HTTP 401)"]

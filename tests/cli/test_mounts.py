"""``cacheport mounts restore|save``: bad input is one line and exit 2; everything the cache does (or can't) exits
0. The helper builds themselves are in tests/ops/test_mounts.py and tests/e2e/test_mounts.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.docker import stand_in_docker

DOCKERFILE = "FROM busybox\nRUN --mount=type=cache,id=dl,target=/var/cache/dl true\n"


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", "mounts", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=60)


@pytest.mark.parametrize("action", ["restore", "save"])
def test_help_has_examples(action: str, clean_env: dict[str, str], tmp_path: Path) -> None:
    done = run(action, "--help", env=clean_env, cwd=tmp_path)
    assert done.returncode == 0
    assert f"cacheport mounts {action} " in done.stdout.split("Examples:")[1]


def test_a_missing_dockerfile_is_one_line_and_exit_2(clean_env: dict[str, str], tmp_path: Path) -> None:
    done = run("restore", "-f", "nowhere/Dockerfile", ".", env=clean_env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "cacheport: error: nowhere/Dockerfile: no such Dockerfile (give it with -f/--file, or CONTEXT holding a "
        "Dockerfile)"]


def test_a_bad_setting_is_exit_2(clean_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "cacheport.toml").write_text('[mounts]\nmax-total = "much"\n')
    done = run("save", ".", env=clean_env, cwd=tmp_path)
    assert done.returncode == 2
    assert "max-total = 'much': expected a size" in done.stderr


@pytest.mark.parametrize("image", ["busybox\nRUN echo injected", "busybox --network=host", "--help"])
def test_a_helper_image_that_is_no_image_reference_is_exit_2(clean_env: dict[str, str], tmp_path: Path,
                                                             image: str) -> None:
    # It becomes the FROM line of the helper builds' Dockerfile: a newline there would add steps of its own.
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "cacheport.toml").write_text(f"[mounts]\nhelper-image = {json.dumps(image)}\n")
    done = run("restore", ".", env=clean_env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"cacheport: error: cacheport.toml [mounts] helper-image = {image!r}: not an image reference (a repository "
        "path is lower-case letters and digits, separated by '/', '.', '_' or '-')"]


def test_mounts_off_does_nothing_and_says_so(clean_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    done = run("save", ".", env={**clean_env, "CACHEPORT_MOUNTS": "off"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "cache mounts are off (CACHEPORT_MOUNTS): nothing to save" in done.stderr


def test_a_backend_without_a_store_is_one_line_and_exit_0(clean_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    done = run("restore", "--backend", "inline", "--set", "ref=127.0.0.1:5000/app", "--format", "json", ".",
               env=clean_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert [(m["id"], m["action"]) for m in found["mounts"]] == [("dl", "skipped")]
    assert [line for line in done.stderr.splitlines() if "cache mounts:" in line] == [
        f"cacheport: warning: {found['warnings'][0]}"]
    assert "has no store" in found["warnings"][0]


def test_a_dockerfile_without_cache_mounts_has_nothing_to_do(clean_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN true\n")
    done = run("restore", ".", env=clean_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "has no cache mounts" in done.stderr


def build(tmp_path: Path, clean_env: dict[str, str], *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str],
                                                                                       list[list[str]]]:
    log = tmp_path / "builds"
    docker = stand_in_docker(tmp_path, log, every=True)
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    done = subprocess.run([sys.executable, "-m", "cacheport", "build", ".", *args], cwd=tmp_path, timeout=60,
                          env={**clean_env, "CACHEPORT_DOCKER": str(docker), **env}, capture_output=True, text=True)
    builds = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, builds


def test_build_with_a_backend_without_a_store_says_so_once_and_builds(clean_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    done, builds = build(tmp_path, clean_env, "--backend", "inline", "--set", "ref=127.0.0.1:5000/app")
    assert done.returncode == 0, done.stderr
    assert len(builds) == 1  # the build itself, no helper build
    assert [line for line in done.stderr.splitlines() if "cache mounts" in line] == [
        "cacheport: warning: cache mounts: backend 'inline' has no store cacheport can reach (as gha, inline, s3 and "
        "azblob): cache mounts are neither restored nor saved, and the build goes on"]
    assert "cacheport: cache:   mount  skipped   dl: the backend has no store" in done.stderr


def test_build_runs_a_save_helper_build_after_the_build_and_none_with_mounts_off(clean_env: dict[str, str],
                                                                                 tmp_path: Path) -> None:
    env = {"CACHEPORT_BACKEND": "local", "CACHEPORT_LOCAL__SRC": str(tmp_path / "cache"),
           "CACHEPORT_MOUNTS__HELPER_IMAGE": "127.0.0.1:5000/helper"}
    done, builds = build(tmp_path, clean_env, "--", "--builder", "ci", **env)
    assert done.returncode == 0, done.stderr
    # Nothing stored yet: no restore build; the build on builder ci, then the save's helper build on ci too.
    assert [b[b.index("--builder") + 1] for b in builds] == ["ci", "ci"], builds
    assert any(a.startswith("CACHEPORT_NONCE=") for a in builds[1])
    (tmp_path / "off").mkdir()
    off, builds = build(tmp_path / "off", clean_env, "--mounts", "off", **env)
    assert off.returncode == 0, off.stderr
    assert len(builds) == 1 and " mount " not in off.stderr


def signed_job(clean_env: dict[str, str], host: str, public: str, **more: str) -> dict[str, str]:
    """A protected GitLab pipeline of main under trust = "signed"."""
    return {**clean_env, "GITLAB_CI": "true", "CI_PROJECT_PATH": "group/app", "CI_COMMIT_BRANCH": "main",
            "CI_COMMIT_REF_NAME": "main", "CI_COMMIT_REF_SLUG": "main", "CI_DEFAULT_BRANCH": "main",
            "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_REF_PROTECTED": "true", "CACHEPORT_BACKEND": "registry",
            "CACHEPORT_REGISTRY__REF": f"{host}/group/app/cache", "CACHEPORT_TRUST": "signed",
            "CACHEPORT_SIGNERS": public, **more}


def test_under_signed_trust_restore_refuses_an_unsigned_artifact_and_save_needs_the_key(
        clean_env: dict[str, str], tmp_path: Path) -> None:
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from cacheport.mounts import CacheMount, MountLimits
    from cacheport.oci.registry import Registry
    from cacheport.oci.repository import RegistryRepository
    from cacheport.ops.mounts_store import publish
    from cacheport.signing import public_der
    from tests.fakes.caches import mount_archive
    from tests.fakes.registry import FakeRegistry

    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    archive = mount_archive(tmp_path / "dl.tgz", CacheMount("dl", "/var/cache/dl"), {"x": b"poisoned"})
    public = base64.b64encode(public_der(Ed25519PrivateKey.generate())).decode()
    with FakeRegistry() as fake, RegistryRepository(Registry(fake.host), "group/app/cache") as repo:
        publish(repo, "main", [archive], limits=MountLimits())  # straight to the registry, unsigned
        digest = repo.manifest_digest("main.mounts")
        docker = stand_in_docker(tmp_path, tmp_path / "builds", every=True)
        env = signed_job(clean_env, fake.host, public, CACHEPORT_DOCKER=str(docker))
        done = run("restore", "--format", "json", ".", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        [mount] = json.loads(done.stdout)["mounts"]
        assert (mount["id"], mount["action"], mount["name"]) == ("dl", "refused", "main.mounts")
        assert mount["detail"] == f"not signed ({digest})"
        assert not (tmp_path / "builds").exists()  # nothing to put into the builder: no helper build
        done = run("save", ".", env=env, cwd=tmp_path)
        assert done.returncode == 2 and "$CACHE_SIGNING_KEY (signing-key-env) is not set" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        unprotected = run("restore", "--format", "json", ".", cwd=tmp_path,
                          env={**env, "CI_COMMIT_REF_PROTECTED": "false"})
        [mount] = json.loads(unprotected.stdout)["mounts"]  # read unverified: the helper build then runs
        assert mount["action"] != "refused" and (tmp_path / "builds").is_file()


def test_the_helper_builds_never_get_the_signing_key(clean_env: dict[str, str], tmp_path: Path) -> None:
    # As for a build's own docker and buildx: the private key stays out of every process cacheport runs.
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    public = base64.b64encode(key.public_key().public_bytes(serialization.Encoding.DER,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    seen = tmp_path / "seen"
    docker = tmp_path / "docker"
    docker.write_text(f"""#!{sys.executable}
import os, sys
if sys.argv[1:3] == ["buildx", "build"]:
    open({str(seen)!r}, "a").write(os.environ.get("CACHE_SIGNING_KEY", "-") + chr(10))
""")
    docker.chmod(0o755)
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    env = {**clean_env, "CACHEPORT_DOCKER": str(docker), "CACHEPORT_BACKEND": "local",
           "CACHEPORT_LOCAL__SRC": str(tmp_path / "cache"), "CACHEPORT_MOUNTS__HELPER_IMAGE": "127.0.0.1:5000/helper",
           "CACHEPORT_TRUST": "signed", "CACHEPORT_SIGNERS": public, "CACHE_SIGNING_KEY": "the-private-key"}
    done = run("save", ".", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert seen.read_text().splitlines() == ["-"]  # the helper build ran, without the key

"""status, prune and doctor against real registries and a real Pulp."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .harness import Harness, Pulp, clean_environ, gitlab_env


def cacheport(h: Harness, cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], cwd=cwd, capture_output=True, text=True,
                          env={**clean_environ(), **h.docker_env, **env}, timeout=120)


def test_status_lists_real_tags_with_their_sizes_and_prune_deletes_exactly_the_stale_ones(
        harness: Harness, tmp_path: Path) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    image = f"{reg}/e2e/lifecycle"
    for branch in ("main", "feature-a", "feature-b"):  # different content, so each tag has its own manifest
        ctx = harness.project(tmp_path / branch)
        assert harness.build(ctx, env=gitlab_env(image, branch)).code == 0
    env = gitlab_env(image, "main")
    status = cacheport(harness, ctx, "status", "--format", "json", env=env)
    assert status.returncode == 0, status.stderr
    tags = {t["tag"]: t for t in json.loads(status.stdout)["tags"]}
    assert set(tags) == {"main", "feature-a", "feature-b"}
    assert tags["main"]["role"] == "this branch" and tags["main"]["format"] == "image-manifest"
    manifest = json.loads(harness.docker("buildx", "imagetools", "inspect", "--raw", f"{image}/cache:main").stdout)
    blobs = [manifest["config"], *manifest["layers"]]
    assert tags["main"]["size"] == sum(d["size"] for d in blobs)  # the registry's own blob sizes

    feature_env = gitlab_env(image, "feature-a")  # main is the default branch here, so it is protected
    dry = cacheport(harness, ctx, "prune", "--older-than", "0s", "--format", "json", env=feature_env)
    plan = {d["tag"]: d["delete"] for d in json.loads(dry.stdout)}
    assert plan == {"main": False, "feature-a": True, "feature-b": True}
    assert harness.tags(reg, "e2e/lifecycle/cache") == ["feature-a", "feature-b", "main"]  # nothing without --yes
    done = cacheport(harness, ctx, "prune", "feature-b", "--yes", env=feature_env)
    assert done.returncode == 0, done.stderr
    assert harness.tags(reg, "e2e/lifecycle/cache") == ["feature-a", "main"]


def test_doctor_passes_and_fails_for_the_right_reasons(harness: Harness, tmp_path: Path) -> None:
    auth = harness.env["CACHEPORT_E2E_AUTH_REGISTRY"]
    good = gitlab_env(f"{auth}/group/doctor", "main", CI_REGISTRY_USER=harness.env["CACHEPORT_E2E_AUTH_USER"],
                      CI_REGISTRY_PASSWORD=harness.env["CACHEPORT_E2E_AUTH_PASSWORD"])
    config = tmp_path / "docker-config"  # no stored logins: only the variables may authenticate
    (config / "cli-plugins").mkdir(parents=True)
    (config / "cli-plugins" / "docker-buildx").symlink_to(
        Path(harness.env["CACHEPORT_E2E_DOCKER_CONFIG"]) / "cli-plugins" / "docker-buildx")
    env = {**good, "DOCKER_CONFIG": str(config)}
    ok = cacheport(harness, tmp_path, "doctor", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "✓ format:" in ok.stdout and "accepts a cache in the image-manifest format" in ok.stdout

    wrong = cacheport(harness, tmp_path, "doctor", env={**env, "CI_REGISTRY_PASSWORD": "wrong"})
    assert wrong.returncode == 1 and "✗ credentials:" in wrong.stdout

    down = cacheport(harness, tmp_path, "doctor", env={**env, "CI_REGISTRY_IMAGE": "127.0.0.1:1/group/doctor"})
    assert down.returncode == 1 and "✗ registry: 127.0.0.1:1 does not answer" in down.stdout


def test_doctor_reports_pulp_rejecting_the_index_format(harness: Harness, pulp: Pulp, tmp_path: Path) -> None:
    env = {"CACHEPORT_BACKEND": "pulp", "CACHEPORT_PULP__URL": f"http://{pulp.registry}",
           "CACHEPORT_PULP__FORCE": "true", "CACHEPORT_PULP__IMAGE_MANIFEST": "false",
           "PULP_USERNAME": pulp.user, "PULP_PASSWORD": pulp.password,
           **gitlab_env("unused/x", "main", CI_PROJECT_PATH="e2e/doctor-index")}
    out = cacheport(harness, tmp_path, "doctor", env=env)
    assert out.returncode == 1
    assert "✗ format:" in out.stdout and "MANIFEST_INVALID" in out.stdout
    assert "a build with ignore-error=true would store nothing and still pass" in out.stdout

"""The pulp backend (plugins/cacheport-pulp) against a real Pulp (scripts/pulp-up) and real builds.

The proofs: a cold build exports to Pulp and, after a prune, the next build runs no RUN step; moving from the
GitLab registry to Pulp never builds cold; the format Pulp rejects really stores nothing while the build exits
0 (why the plugin refuses it); doctor passes, and fails with the right line for a wrong password and for an
unreachable Pulp.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path

from .harness import Harness, Pulp, clean_environ, cold_then_warm, gitlab_env, pulp_env


def cacheport(h: Harness, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A cacheport command with the harness's Docker (doctor checks it too)."""
    return subprocess.run([sys.executable, "-m", "cacheport", *args], capture_output=True, text=True, cwd=cwd,
                          env={**clean_environ(), **h.docker_env, **env}, timeout=120)


def doctor(h: Harness, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return cacheport(h, "doctor", env=env, cwd=cwd)


def pulp_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line[2:].startswith("pulp ")]


def unique_project() -> tuple[str, str]:
    """A project path no earlier run used (Pulp keeps its data between runs), and its cache repository."""
    name = f"E2E/Pulp-{uuid.uuid4().hex[:8]}"
    return name, f"{name.lower()}/cache"


def test_pulp_cold_then_warm(harness: Harness, pulp: Pulp, tmp_path: Path) -> None:
    project, repo = unique_project()
    ctx = harness.project(tmp_path)
    # Credentials come from the variables the options name, not from an earlier login.
    env = pulp_env(pulp, project, CACHEPORT_PULP__USERNAME_ENV="E2E_PULP_USER",
                   CACHEPORT_PULP__PASSWORD_ENV="E2E_PULP_PASS", E2E_PULP_USER=pulp.user,
                   E2E_PULP_PASS=pulp.password, PULP_USERNAME="", PULP_PASSWORD="")
    harness.docker("logout", pulp.registry, check=False)
    cold, warm = cold_then_warm(harness, ctx, env=env)
    assert cold.cache["export"] == {f"registry {pulp.registry}/{repo}:main": "written"}, cold.log
    assert "writing cache image manifest" in cold.log  # the OCI image-manifest form, not an index
    assert harness.tags(pulp.registry, repo, auth=(pulp.user, pulp.password)) == ["main"]
    for result in (cold, warm):
        assert pulp.password not in result.log

    checks = doctor(harness, env, ctx)
    assert checks.returncode == 0, checks.stdout + checks.stderr
    assert f"✓ pulp repository: {pulp.registry}/{repo} exists" in checks.stdout
    assert f"✓ pulp caches: {repo} holds main" in checks.stdout


def test_a_new_branch_is_warm_from_the_default_branch_in_pulp(harness: Harness, pulp: Pulp, tmp_path: Path) -> None:
    project, repo = unique_project()
    ctx = harness.project(tmp_path)
    harness.prune()
    main = harness.build(ctx, env=pulp_env(pulp, project, "main"))
    assert main.code == 0, main.log
    harness.prune()
    feature = harness.build(ctx, env=pulp_env(pulp, project, "feature/New"))
    assert feature.code == 0, feature.log
    assert feature.ran == [], feature.log
    assert feature.rand == main.rand
    assert harness.tags(pulp.registry, repo, auth=(pulp.user, pulp.password)) == ["feature-new", "main"]


def test_moving_from_gitlab_to_pulp_never_builds_cold(harness: Harness, pulp: Pulp, tmp_path: Path) -> None:
    """docs/migrating-to-pulp.md, step by step: GitLab today; switch (dual-read); cutover; finish."""
    reg = harness.env["CACHEPORT_E2E_AUTH_REGISTRY"]
    project, repo = unique_project()
    ctx = harness.project(tmp_path)
    env = {
        **pulp_env(pulp, project),
        **gitlab_env(f"{reg}/{project.lower()}", "main", CI_PROJECT_PATH=project,
                     CI_REGISTRY_USER=harness.env["CACHEPORT_E2E_AUTH_USER"],
                     CI_REGISTRY_PASSWORD=harness.env["CACHEPORT_E2E_AUTH_PASSWORD"]),
    }
    del env["CACHEPORT_BACKEND"], env["CACHEPORT_PULP__URL"]  # from here on the config file decides
    (ctx / "cacheport.toml").write_text('# the cache lives in GitLab\nbackend = "gitlab"\n')
    harness.prune()
    today = harness.build(ctx, env=env)
    assert today.code == 0 and today.ran, today.log

    switched = cacheport(harness, "switch", "pulp", "--set", f"url={pulp.url}", env=env, cwd=ctx)
    assert switched.returncode == 0, switched.stderr
    assert "backend = pulp; migrating from gitlab (dual-read)" in switched.stdout
    harness.prune()
    dual = harness.build(ctx, env=env)  # Pulp is still empty: the GitLab cache keeps this warm
    assert dual.code == 0, dual.log
    assert dual.ran == [] and dual.rand == today.rand, dual.log
    assert dual.cache["export"] == {f"registry {pulp.registry}/{repo}:main": "written"}, dual.log  # to Pulp only
    assert harness.tags(pulp.registry, repo, auth=(pulp.user, pulp.password)) == ["main"]

    for step in (("--phase", "cutover"), ("--finish",)):
        moved = cacheport(harness, "switch", *step, env=env, cwd=ctx)
        assert moved.returncode == 0, moved.stderr
        harness.prune()
        pulp_only = harness.build(ctx, env=env)
        assert pulp_only.code == 0, pulp_only.log
        assert pulp_only.ran == [] and pulp_only.rand == today.rand, pulp_only.log
        assert pulp_only.cache["import"] == {f"registry {pulp.registry}/{repo}:main": "hit"}, pulp_only.log
    text = (ctx / "cacheport.toml").read_text()
    assert text.startswith("# the cache lives in GitLab\n") and "[migration]" not in text


def test_the_index_format_pulp_rejects_stores_nothing_yet_the_build_succeeds(
    harness: Harness, pulp: Pulp, tmp_path: Path
) -> None:
    """Why the plugin refuses image-manifest=false: forced through, the build exits 0 and Pulp has no cache."""
    project, repo = unique_project()
    ctx = harness.project(tmp_path)
    refused = harness.build(ctx, env=pulp_env(pulp, project, CACHEPORT_PULP__IMAGE_MANIFEST="false"))
    assert refused.code == 2, refused.log
    assert "pulp: image-manifest = false cannot work" in refused.log
    assert "RUN" not in refused.log  # refused before any build started

    forced = pulp_env(pulp, project, CACHEPORT_PULP__IMAGE_MANIFEST="false", CACHEPORT_PULP__FORCE="true")
    harness.prune()
    result = harness.build(ctx, env=forced)
    assert result.code == 0, result.log
    assert "image-manifest = false is forced" in result.log
    assert "400 Bad Request" in result.log  # Pulp's MANIFEST_INVALID, swallowed by ignore-error
    assert harness.tags(pulp.registry, repo, auth=(pulp.user, pulp.password)) == []
    harness.prune()
    again = harness.build(ctx, env=forced)
    assert again.code == 0 and again.ran, "nothing was cached, so every step must run again"

    checks = doctor(harness, forced, ctx)
    assert checks.returncode == 1
    assert "✗ pulp export format: image-manifest=false is forced" in checks.stdout
    # The rejected push left a repository behind (its blobs went in), but no cache tag.
    assert f"✓ pulp repository: {pulp.registry}/{repo} exists" in checks.stdout
    assert f"✓ pulp caches: {repo} holds no cache yet" in checks.stdout


def test_doctor_passes_against_the_real_pulp(harness: Harness, pulp: Pulp, tmp_path: Path) -> None:
    project, repo = unique_project()
    result = doctor(harness, pulp_env(pulp, project), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(line.startswith("✓ ") for line in result.stdout.splitlines()), result.stdout
    assert [line.split(":")[0] for line in pulp_lines(result.stdout)] == [
        "✓ pulp export format", "✓ pulp server", "✓ pulp credentials", "✓ pulp repository", "✓ pulp caches"
    ]
    assert f"✓ pulp credentials: logged in as '{pulp.user}'" in result.stdout
    assert f"✓ pulp repository: {pulp.registry}/{repo} does not exist yet" in result.stdout
    assert pulp.password not in result.stdout + result.stderr


def test_doctor_fails_for_a_wrong_password(harness: Harness, pulp: Pulp, tmp_path: Path) -> None:
    project, _repo = unique_project()
    result = doctor(harness, pulp_env(pulp, project, PULP_PASSWORD="not-the-password"), tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "✓ pulp server:" in result.stdout
    assert (f"✗ pulp credentials: Pulp rejected user '{pulp.user}' with the password from $PULP_PASSWORD\n"
            "    fix: check $PULP_PASSWORD") in result.stdout
    assert "not-the-password" not in result.stdout + result.stderr
    assert "pulp repository" not in result.stdout
    # The plugin's REST check and the core's registry check both say so, and nothing else fails.
    assert [line.split(":")[0] for line in result.stdout.splitlines() if line.startswith("✗")] == [
        "✗ pulp credentials", "✗ credentials"]


def test_doctor_fails_for_an_unreachable_pulp(harness: Harness, pulp: Pulp, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    project, _repo = unique_project()
    result = doctor(harness, pulp_env(pulp, project, CACHEPORT_PULP__URL=f"http://127.0.0.1:{port}"), tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (f"✗ pulp server: no Pulp API at http://127.0.0.1:{port}: Connection refused\n"
            f"    fix: check that Pulp runs and that api-url (now http://127.0.0.1:{port}) is its address"
            ) in result.stdout
    assert "pulp credentials" not in result.stdout
    assert [line.split(":")[0] for line in result.stdout.splitlines() if line.startswith("✗")] == [
        "✗ pulp server", "✗ registry"]

"""Real builds through `cacheport build` against dockerd + buildx and distribution registries.

Each proof is the same: a cold build exports; BuildKit's local cache is pruned; the next build runs no RUN
step (none prints its marker) and produces the same random value.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from .harness import Harness, Result, cold_then_warm, gitlab_env


def test_registry_backend(harness: Harness, tmp_path: Path) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    ctx = harness.project(tmp_path)
    env = {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{reg}/e2e/registry/cache"}
    cold, _warm = cold_then_warm(harness, ctx, env={**env, **gitlab_env(f"{reg}/unused", "main")})
    assert harness.tags(reg, "e2e/registry/cache") == ["main"]
    assert cold.cache["export"] == {f"registry {reg}/e2e/registry/cache:main": "written"}, cold.log


def test_gitlab_backend_with_auth(harness: Harness, tmp_path: Path) -> None:
    reg = harness.env["CACHEPORT_E2E_AUTH_REGISTRY"]
    user, password = harness.env["CACHEPORT_E2E_AUTH_USER"], harness.env["CACHEPORT_E2E_AUTH_PASSWORD"]
    ctx = harness.project(tmp_path)
    env = gitlab_env(f"{reg}/group/app", "feature/Login", CI_REGISTRY_USER=user, CI_REGISTRY_PASSWORD=password)
    harness.docker("logout", reg, check=False)
    cold, warm = cold_then_warm(harness, ctx, env=env)
    assert harness.tags(reg, "group/app/cache", auth=(user, password)) == ["feature-login"]
    for result in (cold, warm):
        assert password not in result.log


def test_gitlab_without_credentials_still_builds(harness: Harness, tmp_path: Path) -> None:
    """A login that fails must not fail the build: the cache is an optimisation."""
    reg = harness.env["CACHEPORT_E2E_AUTH_REGISTRY"]
    harness.docker("logout", reg, check=False)
    ctx = harness.project(tmp_path)
    env = gitlab_env(f"{reg}/group/nocreds", "main", CI_REGISTRY_USER="nobody", CI_REGISTRY_PASSWORD="wrong")
    result = harness.build(ctx, env=env)
    assert result.code == 0, result.log
    assert "login to" in result.log and "failed" in result.log
    assert (result.out / "rand").is_file()


def test_local_backend_rotates(harness: Harness, tmp_path: Path) -> None:
    ctx = harness.project(tmp_path)
    cache = tmp_path / "cache"
    env = {"CACHEPORT_BACKEND": "local", "CACHEPORT_LOCAL__SRC": str(cache)}
    cold_then_warm(harness, ctx, env=env)
    assert (cache / "index.json").is_file()
    assert not Path(f"{cache}.new").exists()
    size_after_two = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    # A changed build must not grow the directory by the old build's layers: it holds one build.
    (ctx / "Dockerfile").write_text((ctx / "Dockerfile").read_text().replace("sleep 2 &&", "sleep 1 &&", 1))
    assert harness.build(ctx, env=env).code == 0
    size_after_change = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    assert size_after_change < size_after_two * 1.5


def test_new_branch_is_warm_from_the_default_branch_and_exports_to_its_own_tag(harness: Harness, tmp_path: Path) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    ctx = harness.project(tmp_path)
    image = f"{reg}/e2e/branches"
    harness.prune()
    main = harness.build(ctx, env=gitlab_env(image, "main"))
    assert main.code == 0, main.log
    harness.prune()
    feature = harness.build(ctx, env=gitlab_env(image, "feature/new"))
    assert feature.code == 0, feature.log
    assert feature.ran == [], feature.log
    assert feature.rand == main.rand
    assert harness.tags(reg, "e2e/branches/cache") == ["feature-new", "main"]


def test_two_branches_in_parallel_keep_their_own_cache(harness: Harness, tmp_path: Path) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    image = f"{reg}/e2e/parallel"
    projects = {b: harness.project(tmp_path / b) for b in ("alpha", "beta")}  # different content per branch
    harness.prune()
    results: dict[str, Result] = {}

    def run(branch: str) -> None:
        results[branch] = harness.build(projects[branch], env=gitlab_env(image, branch, default="none"))

    threads = [threading.Thread(target=run, args=(b,)) for b in projects]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.code == 0 for r in results.values()), [r.log for r in results.values()]
    harness.prune()
    for branch, ctx in projects.items():
        again = harness.build(ctx, env=gitlab_env(image, branch, default="none"))
        assert again.ran == [], again.log
        assert again.rand == results[branch].rand


def test_registry_down_during_the_build_still_builds(harness: Harness, tmp_path: Path) -> None:
    with harness.throwaway_registry(tmp_path / "reg") as reg:
        pass  # stopped before the build starts
    ctx = harness.project(tmp_path)
    harness.prune()
    result = harness.build(ctx, env=gitlab_env(f"{reg}/down", "main"))
    assert result.code == 0, result.log
    assert (result.out / "rand").is_file()
    assert ": 0/4 steps cached, 4 executed" in result.log
    assert result.cache["export"] == {f"registry {reg}/down/cache:main": "failed"}, result.log  # not "written"
    assert "nothing was stored" in result.log  # said loudly, though ignore-error let the build pass


def test_untrusted_merge_request_exports_nothing(harness: Harness, tmp_path: Path) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    ctx = harness.project(tmp_path)
    env = gitlab_env(f"{reg}/e2e/fork", "", CI_MERGE_REQUEST_SOURCE_BRANCH_NAME="patch-1",
                     CI_MERGE_REQUEST_TARGET_BRANCH_NAME="main", CI_MERGE_REQUEST_SOURCE_PROJECT_ID="99",
                     CI_MERGE_REQUEST_PROJECT_ID="1")
    result = harness.build(ctx, env=env)
    assert result.code == 0, result.log
    assert "not exporting cache: this job is untrusted" in result.log
    assert harness.tags(reg, "e2e/fork/cache") == []


@pytest.mark.parametrize("code", [3])
def test_the_exit_code_is_the_builds(harness: Harness, tmp_path: Path, code: int) -> None:
    ctx = harness.project(tmp_path)
    (ctx / "Dockerfile").write_text((ctx / "Dockerfile").read_text() + f"RUN exit {code}\n")
    finished = tmp_path / "c.new"  # a finished export that only a successful build may swap in
    finished.mkdir()
    (finished / "index.json").write_text("{}")
    result = harness.build(ctx, env={"CACHEPORT_BACKEND": "local", "CACHEPORT_LOCAL__SRC": str(tmp_path / "c")})
    assert result.code == 1, result.log  # buildx reports a failed step as 1
    assert "cacheport: cache: build failed" in result.log
    assert not (tmp_path / "c").exists() and (finished / "index.json").is_file()

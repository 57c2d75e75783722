"""A Docker engine without the containerd image store (the "legacy" store), for real.

Its docker driver cannot export registry, local or gha cache. ``cacheport doctor`` must fail and say how to fix it;
``cacheport build`` must still build, warn once, export nothing, and still import: the cache never fails a build.
scripts/e2e-up runs this second dockerd beside the first; both share the registries.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from .harness import Harness, clean_environ, gitlab_env

NO_STORE = "uses the docker driver without the containerd image store, which cannot export registry cache"


def cacheport(h: Harness, cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], cwd=cwd, capture_output=True, text=True,
                          env={**clean_environ(), **h.docker_env, **env}, timeout=120)


def warnings(log: str) -> list[str]:
    # These GitLab jobs have no CI_JOB_TOKEN (a real one always has), so each build also says it is not logging
    # in to the (open) registry: not what these tests are about.
    return [line for line in log.splitlines() if line.startswith("cacheport: warning:")
            and "cacheport: warning: not logging in to " not in line]


def test_doctor_fails_on_the_legacy_store_with_the_fix(harness: Harness, legacy: Harness, tmp_path: Path) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    env = gitlab_env(f"{reg}/e2e/legacy-doctor", "main")

    out = cacheport(legacy, tmp_path, "doctor", env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    failed = [i for i, line in enumerate(lines) if line.startswith("✗")]
    assert len(failed) == 1, out.stdout  # the engine is the only thing wrong: the registry checks pass
    assert lines[failed[0]].startswith("✗ cache types: builder ") and NO_STORE in lines[failed[0]], out.stdout
    fix = lines[failed[0] + 1]
    assert fix.startswith("    fix: "), out.stdout
    assert '"containerd-snapshotter": true' in fix and "--driver docker-container" in fix, out.stdout
    assert "✓ builder: " in out.stdout and "with the containerd image store" not in out.stdout
    assert "✓ registry:" in out.stdout and "✓ format:" in out.stdout

    # The same plan on the engine with the containerd image store passes: the store is what doctor caught.
    ok = cacheport(harness, tmp_path, "doctor", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "with the containerd image store" in ok.stdout


def test_build_on_the_legacy_store_passes_warns_once_and_exports_nothing(
        harness: Harness, legacy: Harness, tmp_path: Path) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    repo = f"e2e/legacy-build-{uuid.uuid4().hex[:8]}"
    ctx = legacy.project(tmp_path)
    legacy.prune()  # the first steps are the same in every project: an earlier test's build may hold them

    result = legacy.build(ctx, env=gitlab_env(f"{reg}/{repo}", "main"))
    assert result.code == 0, result.log
    assert len(result.ran) == 3 and len(result.rand) == 32, result.log  # it really built
    found = warnings(result.log)
    assert len(found) == 1 and NO_STORE in found[0], result.log
    assert "containerd-snapshotter" in found[0] and "docker-container" in found[0]
    assert result.cache["export"] == {} and "export none" in result.log
    assert harness.tags(reg, f"{repo}/cache") == [] and harness.tags(reg, repo) == []


def test_the_legacy_store_still_imports(harness: Harness, legacy: Harness, tmp_path: Path) -> None:
    """"Building with imports only" holds: a cache exported by the other engine makes the legacy build warm."""
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    repo = f"e2e/legacy-import-{uuid.uuid4().hex[:8]}"
    env = gitlab_env(f"{reg}/{repo}", "main")
    ctx = harness.project(tmp_path)
    cold = harness.build(ctx, env=env)
    assert cold.code == 0 and cold.ran, cold.log
    assert harness.tags(reg, f"{repo}/cache") == ["main"]

    legacy.prune()
    warm = legacy.build(ctx, env=env)
    assert warm.code == 0, warm.log
    assert warm.ran == [], f"steps ran despite the imported cache:\n{warm.log}"
    assert warm.rand == cold.rand
    assert len(warnings(warm.log)) == 1
    assert warm.cache == {"import": {f"registry {reg}/{repo}/cache:main": "hit"}, "export": {}}, warm.log


def test_the_builder_the_build_uses_is_the_one_checked(harness: Harness, legacy: Harness, tmp_path: Path) -> None:
    """``--builder NAME`` and ``BUILDX_BUILDER`` pick the builder; cacheport checks that one, not the current one.

    The legacy engine's docker context is a docker-driver builder of the same name. buildx itself builds on a
    docker-driver builder only from its own context, so buildx refuses to start the build, in its own words,
    and cacheport says so in one line; what this proves is that the check followed the name.
    """
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    name = f"cp-legacy-{uuid.uuid4().hex[:8]}"
    harness.docker("context", "create", name, "--docker", f"host={legacy.env['CACHEPORT_E2E_DOCKER_HOST']}")
    try:
        env = gitlab_env(f"{reg}/e2e/builder-{name}", "main")
        checked = cacheport(harness, tmp_path, "doctor", "--builder", name, env=env)
        assert checked.returncode == 1, checked.stdout
        assert f"✗ cache types: builder {name!r} uses the docker driver without the containerd image store" in (
            checked.stdout)
        by_variable = cacheport(harness, tmp_path, "doctor", env={**env, "BUILDX_BUILDER": name})
        assert by_variable.returncode == 1 and f"✗ cache types: builder {name!r}" in by_variable.stdout
        current = cacheport(harness, tmp_path, "doctor", env=env)
        assert current.returncode == 0 and "with the containerd image store" in current.stdout, current.stdout
        missing = cacheport(harness, tmp_path, "doctor", "--builder", "no-such-builder", env=env)
        assert missing.returncode == 1, missing.stdout
        assert "✗ builder: the builder 'no-such-builder' can't be inspected" in missing.stdout

        ctx = harness.project(tmp_path)
        for how in ({"extra": ("--builder", name)}, {"env": {**env, "BUILDX_BUILDER": name}}):
            result = harness.build(ctx, **{"env": env, **how})  # type: ignore[arg-type]
            assert [w for w in warnings(result.log) if f"builder {name!r}" in w and NO_STORE in w], result.log
            # buildx refuses before the build starts: its one ERROR line, and no cache report for a build never run
            assert result.code != 0 and "cacheport: error: buildx did not start the build (exit " in result.log
            assert "cacheport: cache:" not in result.log, result.log
        plain = harness.build(ctx, env=env)
        assert plain.code == 0 and warnings(plain.log) == [], plain.log
    finally:
        harness.docker("context", "rm", "-f", name, check=False)

"""Stores for real: seed, status and prune through backends' stores, for a local directory in both directions
and for the example third-party registry backend built on cacheport.kit. Each seed is proven by a build that
imports only from the seeded store and runs no RUN step.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .harness import Harness, Result, clean_environ, gitlab_env


def cacheport(h: Harness, cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], cwd=cwd, capture_output=True, text=True,
                          env={**clean_environ(), **h.docker_env, **env}, timeout=300)


def warm_from(h: Harness, ctx: Path, cold: Result, env: dict[str, str]) -> None:
    """A build with nothing local (pruned) and only ``env``'s backend to import from runs no step."""
    h.prune()
    warm = h.build(ctx, "--read-only", env=env)
    assert warm.code == 0, warm.log
    assert warm.ran == [], f"steps ran despite the seeded cache:\n{warm.log}"
    assert warm.rand == cold.rand


def test_a_laptops_local_cache_seeds_a_registry_and_a_registrys_seeds_a_local_directory(
        harness: Harness, tmp_path: Path) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    ctx = harness.project(tmp_path)
    base = gitlab_env(f"{reg}/unused", "main")
    local = {**base, "CACHEPORT_LOCAL__SRC": str(tmp_path / "laptop")}
    registry = {**base, "CACHEPORT_REGISTRY__REF": f"{reg}/e2e/stores/from-local"}
    harness.prune()
    cold = harness.build(ctx, env={**local, "CACHEPORT_BACKEND": "local"})
    assert cold.code == 0 and cold.ran, cold.log

    status = cacheport(harness, ctx, "status", "--backend", "local", "--format", "json", env=local)
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert [t["tag"] for t in doc["tags"]] == ["latest"]  # the format is the BuildKit generation's default
    assert doc["tags"][0]["format"] in ("index", "image-manifest")
    assert doc["directory"]["exists"] and doc["directory"]["stale_blobs"] == 0

    up = cacheport(harness, ctx, "seed", "--from", "local", "--to", "registry", "--branch", "main",
                   env={**local, **registry})
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"✓ main: {tmp_path / 'laptop'}:latest → {reg}/e2e/stores/from-local:main" in up.stdout
    assert harness.tags(reg, "e2e/stores/from-local") == ["main"]
    warm_from(harness, ctx, cold, {**registry, "CACHEPORT_BACKEND": "registry"})

    # And back: CI's cache (the registry's) warms a fresh laptop directory.
    fresh = {**base, "CACHEPORT_LOCAL__SRC": str(tmp_path / "fresh-laptop")}
    down = cacheport(harness, ctx, "seed", "--from", "registry", "--to", "local", "--branch", "main",
                     env={**fresh, **registry})
    assert down.returncode == 0, down.stdout + down.stderr
    assert (tmp_path / "fresh-laptop" / "index.json").is_file()
    warm_from(harness, ctx, cold, {**fresh, "CACHEPORT_BACKEND": "local"})

    pruned = cacheport(harness, ctx, "prune", "latest", "--yes", "--backend", "local", env=fresh)
    assert pruned.returncode == 0, pruned.stderr
    after = json.loads(cacheport(harness, ctx, "status", "--backend", "local", "--format", "json", env=fresh).stdout)
    assert after["tags"] == [] and after["directory"]["blobs"] == 0


def test_the_example_registry_plugin_gets_seed_and_status_from_the_kit(harness: Harness, tmp_path: Path) -> None:
    """plugins/cacheport-example's ``acme`` backend (about 20 lines on cacheport.kit), installed as a distribution."""
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    ctx = harness.project(tmp_path)
    env = {**gitlab_env(f"{reg}/unused", "main"), "CACHEPORT_BACKEND": "acme",
           "CACHEPORT_ACME__REF": f"{reg}/e2e/acme"}
    harness.prune()
    cold = harness.build(ctx, env=env)
    assert cold.code == 0 and cold.ran, cold.log
    assert harness.tags(reg, "e2e/acme/group-app") == ["main"]

    status = cacheport(harness, ctx, "status", "--format", "json", env=env)
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["repository"] == f"{reg}/e2e/acme/group-app"
    assert [(t["tag"], t["role"]) for t in doc["tags"]] == [("main", "this branch")]

    target = {**env, "CACHEPORT_REGISTRY__REF": f"{reg}/e2e/acme-copy"}
    seeded = cacheport(harness, ctx, "seed", "--from", "acme", "--to", "registry", "--all", env=target)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    assert "1 copied" in seeded.stdout and harness.tags(reg, "e2e/acme-copy") == ["main"]
    warm_from(harness, ctx, cold, {**target, "CACHEPORT_BACKEND": "registry"})

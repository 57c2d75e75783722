"""gha against act's real GitHub Actions cache server, and inline through a pushed image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import unavailable
from .harness import Harness, cold_then_warm, github_env, gitlab_env


@pytest.fixture
def gha(harness: Harness) -> dict[str, str]:
    url, token = harness.env.get("CACHEPORT_E2E_GHA_CACHE_URL"), harness.env.get("CACHEPORT_E2E_GHA_TOKEN")
    if not url or not token:
        unavailable("act's cache server is not running (scripts/e2e-up without --no-gha starts it)")
    return {"ACTIONS_CACHE_URL": url, "ACTIONS_RUNTIME_TOKEN": token}


def test_gha_backend(harness: Harness, gha: dict[str, str], tmp_path: Path) -> None:
    ctx = harness.project(tmp_path)
    env = {**github_env(tmp_path, "org/e2e-gha", "main"), **gha}  # gha is the default backend in GitHub Actions
    cold, _warm = cold_then_warm(harness, ctx, env=env)
    assert cold.cache["export"] == {"gha scope=org-e2e-gha-main": "written"}, cold.log
    assert "silently drops" not in cold.log


def test_gha_without_token_warns_instead_of_dropping_silently(harness: Harness, tmp_path: Path) -> None:
    ctx = harness.project(tmp_path)
    result = harness.build(ctx, env=github_env(tmp_path, "org/e2e-gha-none", "main"))
    assert result.code == 0, result.log
    assert "gha cache needs ACTIONS_RUNTIME_TOKEN" in result.log


def layers(h: Harness, ref: str) -> list[str]:
    """The image's layer content digests: equal only if every layer, the random value's too, is the same."""
    out = h.docker("buildx", "imagetools", "inspect", ref, "--format", "{{json .Image}}")
    return list(json.loads(out.stdout)["rootfs"]["diff_ids"])


def test_inline_backend_through_a_pushed_image(harness: Harness, tmp_path: Path) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    ctx = harness.project(tmp_path)
    env = {**gitlab_env(f"{reg}/unused", "main"), "CACHEPORT_BACKEND": "inline",
           "CACHEPORT_INLINE__REF": f"{reg}/e2e/inline"}
    image = f"{reg}/e2e/inline:main"
    harness.prune()
    cold = harness.build(ctx, env=env, output=False, extra=("--push",))
    assert cold.code == 0, cold.log
    assert cold.ran
    first = layers(harness, image)
    harness.prune()
    harness.docker("image", "rm", "-f", image, check=False)
    warm = harness.build(ctx, env=env, output=False, extra=("--push",))
    assert warm.code == 0, warm.log
    assert warm.ran == [], warm.log
    assert layers(harness, image) == first  # the image's config has a new date; its layers must not change


def test_inline_without_push_says_so(harness: Harness, tmp_path: Path) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    env = {"CACHEPORT_BACKEND": "inline", "CACHEPORT_INLINE__REF": f"{reg}/e2e/inline-nopush"}
    result = harness.build(harness.project(tmp_path), env={**gitlab_env(f"{reg}/x", "main"), **env})
    assert result.code == 0, result.log
    assert "inline cache is stored only in a pushed image" in result.log


def test_example_plugin_backend(harness: Harness, tmp_path: Path) -> None:
    """The third-party example plugin, installed from plugins/cacheport-example, caches for real too."""
    ctx = harness.project(tmp_path)
    env = {"CACHEPORT_BACKEND": "shared-dir", "CACHEPORT_SHARED_DIR__ROOT": str(tmp_path / "shared")}
    cold_then_warm(harness, ctx, env={**gitlab_env("unused/x", "main"), **env})
    assert (tmp_path / "shared" / "group-app" / "main" / "index.json").is_file()

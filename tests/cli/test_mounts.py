"""``cacheport mounts restore|save``: bad input is one line and exit 2; everything the cache does (or can't) exits
0. The helper builds themselves are in tests/ops/test_mounts.py and tests/e2e/test_mounts.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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

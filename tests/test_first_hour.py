"""A new user's first hour, command by command (issue 23): what the README and the --help examples say runs
as written on a laptop, in a fresh git repository with no remote and no config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cacheport.oci.format import synthetic_cache
from cacheport.oci.layout import Layout


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=60)


@pytest.fixture
def repo(clean_env: dict[str, str], tmp_path: Path) -> Path:
    """A new git repository with no remote and no config: where a laptop user starts."""
    root = tmp_path / "app"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True, env=clean_env)
    return root


def test_prune_older_than_runs_in_a_repository_without_a_remote(repo: Path, clean_env: dict[str, str],
                                                                tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    layout = Layout(cache)
    blobs, manifest = synthetic_cache(image_manifest=True)
    for d, data in blobs:
        layout.put_blob(d, [data])
    layout.put_manifest("latest", manifest)
    env = {**clean_env, "CACHEPORT_LOCAL__SRC": str(cache)}
    out = run("prune", "--older-than", "14d", env=env, cwd=repo)
    assert out.returncode == 0, out.stderr
    # The directory's one cache is every branch's, the default branch's too: kept unless named.
    assert out.stdout.splitlines()[0].split()[:2] == ["keep", "latest"]
    assert "default branch" in out.stdout.splitlines()[0]
    assert run("prune", "latest", "--yes", env=env, cwd=repo).returncode == 0
    assert Layout(cache).names() == []

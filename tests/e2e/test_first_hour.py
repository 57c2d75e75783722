"""A new user's first hour against a real buildx and registry (issue 23): buildx's flags given in the wrong
place, a build that never starts, a --progress of the user's that must not blind the cache report, and prune
in a repository without a remote."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

from .harness import Harness, clean_environ, gitlab_env


def cacheport(h: Harness, cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], cwd=cwd, capture_output=True, text=True,
                          env={**clean_environ(), **h.docker_env, **env}, timeout=300)


def test_a_build_buildx_refuses_to_start_is_one_line_and_no_cache_report(harness: Harness, tmp_path: Path) -> None:
    ctx = harness.project(tmp_path)
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    # The context given after -- as well: buildx gets two and prints its usage.
    proc = cacheport(harness, ctx, "build", "--", "--network=host", ".", env=env)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, proc.stderr
    # buildx 0.13 says `"docker buildx build" requires exactly 1 argument.`, 0.29 `... requires 1 argument`.
    assert re.fullmatch(rf"cacheport: error: buildx did not start the build \(exit {proc.returncode}\): ERROR: .*"
                        r"requires (exactly )?1 argument\.?; the build context goes before --, buildx's own flags "
                        r"after it: cacheport build CONTEXT \[-t TAG\] -- FLAGS", errors[0]), errors[0]
    assert "cache:" not in proc.stderr and "Usage:" not in proc.stderr


def test_a_progress_flag_of_the_user_s_keeps_the_cache_report(harness: Harness, tmp_path: Path) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    ctx = harness.project(tmp_path, work=0.5)
    ref = f"{reg}/e2e/progress/{uuid.uuid4().hex[:12]}"
    env = {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": ref, **gitlab_env(f"{reg}/unused", "main")}
    cold = harness.build(ctx, env=env, extra=("--progress=plain",))
    assert cold.code == 0, cold.log
    assert cold.cache["export"] == {f"registry {ref}:main": "written"}, cold.log
    harness.prune()
    warm = harness.build(ctx, env=env, extra=("--progress", "tty"))
    assert warm.code == 0, warm.log
    assert warm.cache["import"] == {f"registry {ref}:main": "hit"}, warm.log
    assert not warm.ran
    assert "--progress=tty is not passed to buildx" in warm.log
    assert any(line.startswith("#") and "CACHED" in line for line in warm.log.splitlines())  # the plain log


def test_prune_older_than_in_a_repository_without_a_remote(harness: Harness, tmp_path: Path) -> None:
    """`prune --help`'s first example, on a laptop's new repository: its one main branch is the default."""
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    ctx = harness.project(tmp_path, work=0.2)
    git = ["git", "-C", str(ctx), "-c", "user.email=you@example.com", "-c", "user.name=you"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], check=True)
    env = {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{reg}/e2e/no-remote/{uuid.uuid4().hex[:12]}"}
    built = harness.build(ctx, env=env)
    assert built.code == 0, built.log
    out = cacheport(harness, ctx, "prune", "--older-than", "14d", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split()[:2] == ["keep", "main"] and "default branch" in out.stdout

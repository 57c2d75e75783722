"""A real migration: the first build after `cacheport switch` is as warm as any other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .harness import Harness, clean_environ, gitlab_env


def test_switch_from_gitlab_keeps_the_first_build_warm(harness: Harness, tmp_path: Path) -> None:
    auth, plain = harness.env["CACHEPORT_E2E_AUTH_REGISTRY"], harness.env["CACHEPORT_E2E_REGISTRY"]
    user, password = harness.env["CACHEPORT_E2E_AUTH_USER"], harness.env["CACHEPORT_E2E_AUTH_PASSWORD"]
    ctx = harness.project(tmp_path)
    env = gitlab_env(f"{auth}/group/migrate", "main", CI_REGISTRY_USER=user, CI_REGISTRY_PASSWORD=password)
    (ctx / "cacheport.toml").write_text(f'backend = "gitlab"\n[registry]\nref = "{plain}/migrate/cache"\n')

    harness.prune()
    before = harness.build(ctx, env=env)
    assert before.code == 0, before.log

    switch = subprocess.run([sys.executable, "-m", "cacheport", "switch", "registry"], cwd=ctx, text=True,
                            capture_output=True, env={**clean_environ(), **env})
    assert switch.returncode == 0, switch.stderr
    harness.prune()
    first = harness.build(ctx, env=env)  # dual-read: the new registry is empty, the old one is read
    assert first.code == 0, first.log
    assert first.ran == [], first.log
    assert first.rand == before.rand
    assert harness.tags(plain, "migrate/cache") == ["main"]  # and the new home got its export
    status = subprocess.run([sys.executable, "-m", "cacheport", "status", "--format", "json"], cwd=ctx, text=True,
                            capture_output=True, env={**clean_environ(), **env})
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["migration"] == {"from": "gitlab", "to": "registry", "phase": "dual-read"}
    assert [(t["tag"], t["old"]["format"], t["new"]["format"]) for t in doc["tags"]] == [("main", "image-manifest", "image-manifest")]

    for step in (["--phase", "cutover"], ["--finish"]):
        done = subprocess.run([sys.executable, "-m", "cacheport", "switch", *step], cwd=ctx, text=True,
                              capture_output=True, env={**clean_environ(), **env})
        assert done.returncode == 0, done.stderr
    harness.prune()
    after = harness.build(ctx, env=env)  # the new backend alone now
    assert after.ran == [] and after.rand == before.rand, after.log
    assert after.cache == {"import": {f"registry {plain}/migrate/cache:main": "hit"},
                           "export": {f"registry {plain}/migrate/cache:main": "written"}}, after.log

"""The local backend's BuildKit options for real: a named cache (``tag``) and ``reset``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .harness import Harness, clean_environ, cold_then_warm


def test_a_tagged_local_cache_is_written_read_and_listed_under_its_tag(harness: Harness, tmp_path: Path) -> None:
    ctx = harness.project(tmp_path)
    cache = tmp_path / "cache"
    env = {"CACHEPORT_BACKEND": "local", "CACHEPORT_LOCAL__SRC": str(cache), "CACHEPORT_LOCAL__TAG": "web"}
    cold_then_warm(harness, ctx, env=env)
    index = json.loads((cache / "index.json").read_text())
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == ["web"]
    status = subprocess.run([sys.executable, "-m", "cacheport", "status", "--format", "json"], cwd=ctx,
                            capture_output=True, text=True, env={**clean_environ(), **harness.docker_env, **env},
                            timeout=120)
    assert status.returncode == 0, status.stderr
    assert [t["tag"] for t in json.loads(status.stdout)["tags"]] == ["web"]


def test_reset_is_passed_and_a_buildx_that_predates_it_still_builds(harness: Harness, tmp_path: Path) -> None:
    # The harness's buildx (0.13) predates reset (0.35): it must ignore it, and the cache must still work.
    ctx = harness.project(tmp_path)
    cache = tmp_path / "cache"
    env = {"CACHEPORT_BACKEND": "local", "CACHEPORT_LOCAL__SRC": str(cache), "CACHEPORT_LOCAL__ROTATE": "false",
           "CACHEPORT_LOCAL__RESET": "true"}
    args = subprocess.run([sys.executable, "-m", "cacheport", "args"], cwd=ctx, capture_output=True, text=True,
                          env={**clean_environ(), **env}, timeout=60)
    assert f"--cache-to=type=local,dest={cache},mode=max,ignore-error=true,reset=true" in args.stdout, args.stderr
    cold_then_warm(harness, ctx, env=env)  # every RUN step cached after a prune: the cache is intact
    assert (cache / "index.json").is_file()

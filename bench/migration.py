#!/usr/bin/env python3
"""The first build after moving the cache, three ways, side by side in one run, each as a ratio to a warm build.

- naive switch: the new backend only (it is empty, so the build is cold);
- dual-read: the new backend first, then the old one (`[migration] from = ...`);
- seed, then cutover: `cacheport seed` copies the cache, then a build reads the new backend only.

The old backend is `gitlab` on the harness's auth registry; the new one is `registry` on the plain registry.
Goal: both migration paths within 1.2x of a warm build. Needs the e2e harness (scripts/e2e-up).

Usage: python bench/migration.py [--work SECONDS]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.harness import bench_harness, clean_environ, gitlab_env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=float, default=20, help="seconds of RUN work in the reference build")
    opts = parser.parse_args()
    h = bench_harness()
    if h is None:
        return 1
    env = h.env
    run = uuid.uuid4().hex[:8]
    auth, plain = env["CACHEPORT_E2E_AUTH_REGISTRY"], env["CACHEPORT_E2E_REGISTRY"]
    old = gitlab_env(f"{auth}/bench-{run}", "main", CI_REGISTRY_USER=env["CACHEPORT_E2E_AUTH_USER"],
                     CI_REGISTRY_PASSWORD=env["CACHEPORT_E2E_AUTH_PASSWORD"])

    def new(name: str, migrating: bool = False) -> dict[str, str]:
        out = {**old, "CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{plain}/bench-{run}-{name}/cache"}
        return {**out, "CACHEPORT_MIGRATION__FROM": "gitlab"} if migrating else out

    with tempfile.TemporaryDirectory() as tmp:
        ctx = h.project(Path(tmp), work=opts.work)

        def timed(build_env: dict[str, str]) -> float:
            h.prune()
            start = time.perf_counter()
            result = h.build(ctx, env=build_env)
            if result.code != 0:
                raise SystemExit(result.log)
            return time.perf_counter() - start

        cold = timed(old)  # fills the old backend
        warm = timed(old)
        naive = timed(new("naive"))
        dual = timed(new("dual", migrating=True))
        start = time.perf_counter()
        seed = subprocess.run([sys.executable, "-m", "cacheport", "seed", "--from", "gitlab", "--to", "registry",
                               "--branch", "main"], cwd=ctx, capture_output=True, text=True,
                              env={**clean_environ(), **h.docker_env, **new("seeded")})
        seeded = time.perf_counter() - start
        if seed.returncode != 0:
            raise SystemExit(seed.stdout + seed.stderr)
        cutover = timed(new("seeded"))

    print(f"reference build: {opts.work:g} s of RUN work; cold {cold:.2f} s, warm {warm:.2f} s")
    print(f"{'first build after the move':34s} {'seconds':>8s} {'x warm':>7s}")
    for name, seconds in (("naive switch (new backend only)", naive), ("dual-read", dual),
                          ("seed, then cutover (build only)", cutover), ("seed, then cutover (seed + build)",
                                                                       seeded + cutover)):
        print(f"{name:34s} {seconds:8.2f} {seconds / warm:7.2f}")
    print(f"(seed itself: {seeded:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

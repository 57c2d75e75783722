#!/usr/bin/env python3
"""What `cacheport build` adds to a warm build: side by side with the same `docker buildx build` run by hand.

Interleaves, per round: `cacheport build` (registry backend), `docker buildx build` with exactly the flags
`cacheport args --lines` gives, and `cacheport args` alone (the start-up cost). Prints the medians, the gap
between the two builds, the gap in units of `cacheport args`' start-up (the goal: at most 2.5), and the
plain ratio of the two warm builds. Needs the e2e harness (scripts/e2e-up).

Usage: python bench/build_overhead.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
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
    parser.add_argument("--rounds", type=int, default=7)
    opts = parser.parse_args()
    h = bench_harness()
    if h is None:
        return 1
    env = h.env
    reg = env["CACHEPORT_E2E_REGISTRY"]
    with tempfile.TemporaryDirectory(prefix="cacheport-bench-") as tmp:
        ctx = h.project(Path(tmp), work=2.0)
        settings = {**gitlab_env(f"{reg}/unused", "main"), "CACHEPORT_BACKEND": "registry",
                    "CACHEPORT_REGISTRY__REF": f"{reg}/bench-overhead-{uuid.uuid4().hex[:8]}/cache"}
        full_env = {**clean_environ(), **h.docker_env, **settings}
        cacheport = [sys.executable, "-m", "cacheport"]
        flags = subprocess.run([*cacheport, "args", "--lines"], cwd=ctx, env=full_env, capture_output=True,
                               text=True, check=True).stdout.split()
        by_hand = [env["CACHEPORT_E2E_DOCKER_BIN"], "buildx", "build", "--progress=plain", *flags,
                   "--network=host", "."]
        through = [*cacheport, "build", ".", "--", "--network=host"]
        startup = [*cacheport, "args"]

        def timed(cmd: list[str]) -> float:
            began = time.perf_counter()
            subprocess.run(cmd, cwd=ctx, env=full_env, capture_output=True, check=True)
            return time.perf_counter() - began

        timed(through)  # cold: fill BuildKit's cache and the registry
        times: dict[str, list[float]] = {"cacheport build": [], "docker buildx build": [], "cacheport args": []}
        for _ in range(opts.rounds):
            times["cacheport build"].append(timed(through))
            times["docker buildx build"].append(timed(by_hand))
            times["cacheport args"].append(timed(startup))
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"warm builds of the reference project (registry cache on {reg}), median of {opts.rounds} interleaved "
          "rounds:")
    for name, value in med.items():
        print(f"  {name:22s} {value:6.3f} s")
    gap = med["cacheport build"] - med["docker buildx build"]
    print(f"  gap                    {gap:6.3f} s = {gap / med['cacheport args']:.2f} x the start-up of "
          "`cacheport args` (goal: at most 2.5)")
    print(f"  cacheport build / docker buildx build: {med['cacheport build'] / med['docker buildx build']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

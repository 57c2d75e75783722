#!/usr/bin/env python3
"""Cold vs warm `cacheport build` on the reference build, per backend, side by side in one run.

For each backend: prune BuildKit's local cache and build into an empty cache (cold), prune again and build
from the exported cache (warm). Prints both wall times and warm/cold. Needs the e2e harness (scripts/e2e-up).

Usage: python bench/cache_ratio.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.harness import Harness, bench_harness, gitlab_env


def backends(h: Harness, tmp: Path) -> dict[str, dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    reg, auth = h.env["CACHEPORT_E2E_REGISTRY"], h.env.get("CACHEPORT_E2E_AUTH_REGISTRY", "")
    out = {
        "registry": {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{reg}/bench-{run}/cache"},
        "local": {"CACHEPORT_BACKEND": "local", "CACHEPORT_LOCAL__SRC": str(tmp / "local-cache")},
    }
    if auth:
        out["gitlab"] = gitlab_env(f"{auth}/bench-{run}", "main", CI_REGISTRY_USER=h.env["CACHEPORT_E2E_AUTH_USER"],
                                   CI_REGISTRY_PASSWORD=h.env["CACHEPORT_E2E_AUTH_PASSWORD"])
    return out


def timed(h: Harness, ctx: Path, env: dict[str, str]) -> float:
    h.prune()
    start = time.perf_counter()
    result = h.build(ctx, env=env)
    elapsed = time.perf_counter() - start
    if result.code != 0:
        raise SystemExit(f"build failed:\n{result.log}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="cold/warm pairs per backend (fresh cache each)")
    parser.add_argument("--work", default="4,30",
                        help="seconds of RUN work in the reference build; comma-separated for several (default 4,30)")
    opts = parser.parse_args()
    h = bench_harness()
    if h is None:
        return 1
    print(f"{'backend':10s} {'work s':>7s} {'cold s':>8s} {'warm s':>8s} {'warm/cold':>10s}")
    with tempfile.TemporaryDirectory() as tmp:
        for work in (float(w) for w in opts.work.split(",")):
            for name in backends(h, Path(tmp)):
                colds, warms = [], []
                for i in range(opts.rounds):
                    where = Path(tmp) / f"{name}-{work:g}-{i}"
                    cfg = backends(h, where)[name]  # a fresh cache location each round
                    ctx = h.project(where, work=work)
                    colds.append(timed(h, ctx, cfg))
                    warms.append(timed(h, ctx, cfg))
                cold, warm = statistics.median(colds), statistics.median(warms)
                print(f"{name:10s} {work:7g} {cold:8.2f} {warm:8.2f} {warm / cold:10.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Exports that pay for themselves (#22): a pipeline of builds, the export rule off against on, side by side.

A realistic project (a base, a dependency layer of ``--deps-mib`` MiB, the application's layer), built ``--builds``
times as a CI pipeline would: every build on an emptied builder (the engine's, after ``buildx prune -af``),
importing the branch's ``mode=max`` cache from a registry on 127.0.0.1. Most builds are unchanged rebuilds; the
builds listed in ``--changes`` change the application's source. The same pipeline runs twice, each with its own
cache:

- off (today): one pass, ``--cache-from`` and ``--cache-to ...,mode=max``; BuildKit writes the export every time
  (moby/buildkit#6308);
- on (the two-phase rule): a pass without ``--cache-to``; when it executed no step and its import hit, no export;
  otherwise a second, export-only pass with ``--cache-to`` and ``--output type=cacheonly``, every step cached in
  the builder.

It prints, per pipeline: total job time, the time spent exporting (off: the export's own seconds as BuildKit
reports them; on: the whole second pass), the bytes sent to the registry (counted by bench/wan_proxy.py, which
also gives the registry a real round trip, ``--rtt-ms``), and the steps each build executed, so that the hits
after a change are seen to be the same. Needs the e2e harness (scripts/e2e-up).

Usage: python bench/exports.py [--builds N] [--changes 5,12,17] [--deps-mib N] [--rtt-ms MS]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.wan_proxy import Proxy
from cacheport.entry import CacheEntry
from cacheport.report import parse_rawjson
from tests.e2e.harness import Harness, bench_harness


def project(h: Harness, root: Path, deps_mib: int) -> Path:
    ctx = root / "app"
    (ctx / "src").mkdir(parents=True)
    shutil.copy2(h.env["CACHEPORT_E2E_BUSYBOX"], ctx / "busybox")
    (ctx / "src" / "app.txt").write_text("version 0\n")
    seed = uuid.uuid4().hex
    (ctx / "Dockerfile").write_text(
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin"]\n'
        f"RUN echo {seed} && mkdir /deps && for i in $(seq 1 {deps_mib}); do "
        "head -c 1048576 /dev/urandom > /deps/lib-$i.so; done && sleep 2\n"
        "COPY src /src\n"
        "RUN sleep 1 && cat /src/app.txt > /built && head -c 2097152 /dev/urandom > /app.bin\n"
    )
    return ctx


def buildx(h: Harness, ctx: Path, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([h.env["CACHEPORT_E2E_DOCKER_BIN"], "buildx", "build", "--progress=rawjson",
                           "--network=host", *args, str(ctx)], capture_output=True, text=True, timeout=900,
                          env={**h.docker_env, "HOME": str(Path.home())})
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"build failed:\n{proc.stderr[-3000:]}")
    return took, proc.stderr


def pipeline(h: Harness, ctx: Path, ref: str, builds: int, changes: set[int], rule: bool,
             proxy: Proxy) -> list[dict[str, float]]:
    entry = CacheEntry.parse(f"type=registry,ref={ref}")
    export = CacheEntry.parse(f"type=registry,ref={ref},mode=max")
    rows = []
    for n in range(builds):
        if n in changes:
            (ctx / "src" / "app.txt").write_text(f"version {n}\n")
        h.prune()
        sent = proxy.counters.up
        common = ["--cache-from", entry.format(), "--output", "type=cacheonly"]
        if not rule:
            took, log = buildx(h, ctx, *common, "--cache-to", export.format())
            found = parse_rawjson(log, [entry], [export])
            spent = found.exports[0].seconds or 0.0 if found.exports else 0.0
            rows.append({"job": took, "export": spent, "executed": found.steps.executed if found.steps else -1,
                         "exported": 1, "sent": proxy.counters.up - sent})
            continue
        took, log = buildx(h, ctx, *common)
        found = parse_rawjson(log, [entry])
        executed = found.steps.executed if found.steps else -1
        hit = any(i.status == "hit" for i in found.imports)
        spent = 0.0
        if executed != 0 or not hit:
            spent, _ = buildx(h, ctx, *common, "--cache-to", export.format())
        rows.append({"job": took + spent, "export": spent, "executed": executed, "exported": int(spent > 0),
                     "sent": proxy.counters.up - sent})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=20)
    parser.add_argument("--changes", default="5,12,17", help="builds (from 0) that change the source")
    parser.add_argument("--deps-mib", type=int, default=24, help="MiB in the dependency layer (default 24)")
    parser.add_argument("--rtt-ms", type=float, default=40.0,
                        help="round trip to the registry, through bench/wan_proxy.py (default 40 ms)")
    opts = parser.parse_args()
    h = bench_harness()
    if h is None:
        return 1
    env = h.env
    changes = {int(c) for c in opts.changes.split(",") if c}
    run = uuid.uuid4().hex[:8]
    reg = env["CACHEPORT_E2E_REGISTRY"]
    results = {}
    with Proxy(reg, delay=opts.rtt_ms / 2000) as proxy:
        for rule in (False, True):
            with tempfile.TemporaryDirectory(prefix="cacheport-bench-") as tmp:
                ctx = project(h, Path(tmp), opts.deps_mib)
                results[rule] = pipeline(h, ctx, f"{proxy.host}/bench-exports-{run}-{int(rule)}/cache:main",
                                         opts.builds, changes, rule, proxy)
    print(f"{opts.builds} builds, changes at {sorted(changes)}, {opts.deps_mib} MiB of dependencies; "
          f"each build on an emptied builder, importing from a registry on 127.0.0.1 at {opts.rtt_ms:g} ms RTT")
    print(f"{'build':>5s} {'kind':>9s} | {'off: job s':>10s} {'export s':>8s} {'ran':>3s} | "
          f"{'sent MB':>7s} | {'on: job s':>9s} {'export s':>8s} {'ran':>3s} {'exported':>8s} {'sent MB':>7s}")
    for n, (off, on) in enumerate(zip(results[False], results[True], strict=True)):
        kind = "cold" if n == 0 else "change" if n in changes else "unchanged"
        print(f"{n:5d} {kind:>9s} | {off['job']:10.2f} {off['export']:8.2f} {off['executed']:3.0f} "
              f"{off['sent'] / 1e6:7.2f} | {on['job']:9.2f} {on['export']:8.2f} {on['executed']:3.0f} "
              f"{on['exported']:8.0f} {on['sent'] / 1e6:7.2f}")

    def total(rows: list[dict[str, float]], key: str, pick: set[int] | None = None) -> float:
        return sum(r[key] for i, r in enumerate(rows) if pick is None or i in pick)

    unchanged = {n for n in range(opts.builds) if n and n not in changes}
    changed = changes | {0}
    for label, key, pick in (("total job time", "job", None), ("export time", "export", None),
                             ("export time, unchanged rebuilds", "export", unchanged),
                             ("job time, changed builds", "job", changed)):
        off, on = total(results[False], key, pick), total(results[True], key, pick)
        print(f"{label:>32s}: off {off:7.2f} s, on {on:7.2f} s, on/off {on / off if off else float('nan'):.2f}")
    for label, pick in (("bytes sent to the registry", None), ("bytes sent, unchanged rebuilds", unchanged)):
        off, on = total(results[False], "sent", pick), total(results[True], "sent", pick)
        print(f"{label:>32s}: off {off / 1e6:7.2f} MB, on {on / 1e6:7.2f} MB (requests included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Exports that pay for themselves (#22): a pipeline of builds under each ``exports`` rule, side by side.

A realistic project (a base, a dependency layer of ``--deps-mib`` MiB, the application's layer), built ``--builds``
times as a CI pipeline would, each a real ``cacheport build`` (a GitLab job on the default branch) on an emptied
builder (the engine's, after ``buildx prune -af``), importing the branch's ``mode=max`` cache from a registry on
127.0.0.1 and leaving its build record there. Most builds are unchanged rebuilds; the builds listed in
``--changes`` change the application's source (``all``: every build after the first). The same pipeline runs once
per rule in ``--rules``, each with its own cache and history:

- ``always`` (off): one pass with ``--cache-to ...,mode=max``; BuildKit writes the export every time
  (moby/buildkit#6308);
- ``when-changed``: every build without the export; when it executed no step and its import hit, no export,
  otherwise a second, export-only pass (``--output type=cacheonly``, every step cached in the builder);
- ``auto`` (the default): like ``when-changed`` when at least half of the branch's last 5 builds (read from their
  records before the build) executed no step, else one pass like ``always``.

It prints, per pipeline: total job time (the whole ``cacheport build``, reading and writing records included),
the time spent exporting (one pass: the export's own seconds as BuildKit reports them; the export-only pass: its
whole time), the bytes sent to the registry (counted by bench/wan_proxy.py, which also gives the registry a real
round trip, ``--rtt-ms``), and the steps each build executed, so that the hits after a change are seen to be the
same. Needs the e2e harness (scripts/e2e-up).

With ``--never-read``, the pipeline is a feature branch whose every build changes its first step, in a build
stage the image takes only its application from: under ``auto`` its export is narrowed to ``mode=min`` from the
fourth build on, and the bytes sent show what that saves.

Usage: python bench/exports.py [--builds N] [--changes 5,12,17|all] [--rules always,auto,when-changed]
                               [--deps-mib N] [--rtt-ms MS] [--never-read]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.wan_proxy import Proxy
from tests.e2e.harness import Harness, bench_harness, gitlab_env


def project(h: Harness, root: Path, deps_mib: int, never_read: bool = False) -> Path:
    """The project; ``never_read``: a build stage first copies the source (so a change runs every step) and the
    image takes only the application from it, as a branch whose builds never read their cache."""
    ctx = root / "app"
    (ctx / "src").mkdir(parents=True)
    shutil.copy2(h.env["CACHEPORT_E2E_BUSYBOX"], ctx / "busybox")
    (ctx / "src" / "app.txt").write_text("version 0\n")
    seed = uuid.uuid4().hex
    first = "FROM scratch AS build\nCOPY src /early\n" if never_read else "FROM scratch\n"
    last = "FROM scratch\nCOPY --from=build /app.bin /app.bin\n" if never_read else ""
    (ctx / "Dockerfile").write_text(
        first +
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin"]\n'
        f"RUN echo {seed} && mkdir /deps && for i in $(seq 1 {deps_mib}); do "
        "head -c 1048576 /dev/urandom > /deps/lib-$i.so; done && sleep 2\n"
        "COPY src /src\n"
        "RUN sleep 1 && cat /src/app.txt > /built && head -c 2097152 /dev/urandom > /app.bin\n"
        + last
    )
    return ctx


def pipeline(h: Harness, ctx: Path, ref: str, builds: int, changes: set[int], rule: str, proxy: Proxy,
             tmp: Path, branch: str) -> list[dict[str, float]]:
    """The pipeline through ``cacheport build`` itself under ``exports = rule``: its records go to the registry
    (through the proxy) and ``auto`` reads them back before each build, as in CI."""
    env = {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": ref, "CACHEPORT_EXPORTS": rule,
           **gitlab_env(f"{proxy.host}/unused", branch)}
    rows = []
    for n in range(builds):
        if n in changes:
            (ctx / "src" / "app.txt").write_text(f"version {n}\n")
        h.prune()
        sent = proxy.counters.up
        found = tmp / f"report-{rule}-{n}.json"
        start = time.perf_counter()
        done = h.build(ctx, "--report-file", str(found), env=env, output=False, extra=("--output=type=cacheonly",))
        took = time.perf_counter() - start
        if done.code != 0 or not found.is_file():
            raise SystemExit(f"build {n} ({rule}) failed:\n{done.log[-3000:]}")
        doc = json.loads(found.read_text())
        exports = doc["exports"]
        rows.append({"job": took, "export": sum(e["seconds"] or 0.0 for e in exports),
                     "executed": doc["steps"]["executed"] if doc["steps"] else -1,
                     "exported": sum(e["status"] == "written" for e in exports),
                     "narrowed": sum("narrowed to mode=min" in (e["reason"] or "") for e in exports),
                     "sent": proxy.counters.up - sent})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=20)
    parser.add_argument("--changes", default="5,12,17", help="builds (from 0) that change the source, or 'all'")
    parser.add_argument("--rules", default="always,auto,when-changed",
                        help="the exports settings to run, the first being the one the others are set against")
    parser.add_argument("--deps-mib", type=int, default=24, help="MiB in the dependency layer (default 24)")
    parser.add_argument("--rtt-ms", type=float, default=40.0,
                        help="round trip to the registry, through bench/wan_proxy.py (default 40 ms)")
    parser.add_argument("--never-read", action="store_true",
                        help="a feature branch whose every build changes its first step, in a build stage the image "
                        "takes only its application from (implies --changes all)")
    opts = parser.parse_args()
    h = bench_harness()
    if h is None:
        return 1
    env = h.env
    every = opts.changes == "all" or opts.never_read
    changes = set(range(1, opts.builds)) if every else {int(c) for c in opts.changes.split(",") if c}
    rules = opts.rules.split(",")
    run = uuid.uuid4().hex[:8]
    reg = env["CACHEPORT_E2E_REGISTRY"]
    results: dict[str, list[dict[str, float]]] = {}
    with Proxy(reg, delay=opts.rtt_ms / 2000) as proxy:
        for rule in rules:
            with tempfile.TemporaryDirectory(prefix="cacheport-bench-") as tmp:
                ctx = project(h, Path(tmp), opts.deps_mib, opts.never_read)
                results[rule] = pipeline(h, ctx, f"{proxy.host}/bench-exports-{run}-{rule}/cache", opts.builds,
                                         changes, rule, proxy, Path(tmp), "feature" if opts.never_read else "main")
    print(("a feature branch that never reads its cache; " if opts.never_read else "")
          + f"{opts.builds} builds, changes at {sorted(changes)}, {opts.deps_mib} MiB of dependencies; "
          f"each build a cacheport build on an emptied builder, importing from a registry on 127.0.0.1 at "
          f"{opts.rtt_ms:g} ms RTT; job s = the whole cacheport build, records and history included")
    print(f"{'build':>5s} {'kind':>9s} | " + " | ".join(
        f"{rule + ': job s':>18s} {'export s':>8s} {'ran':>3s} {'exp':>3s} {'sent MB':>7s}" for rule in rules))
    for n in range(opts.builds):
        kind = "cold" if n == 0 else "change" if n in changes else "unchanged"
        print(f"{n:5d} {kind:>9s} | " + " | ".join(
            f"{r['job']:18.2f} {r['export']:8.2f} {r['executed']:3.0f} {r['exported']:3.0f} {r['sent'] / 1e6:7.2f}"
            for r in (results[rule][n] for rule in rules)))

    def total(rows: list[dict[str, float]], key: str, pick: set[int] | None = None) -> float:
        return sum(r[key] for i, r in enumerate(rows) if pick is None or i in pick)

    unchanged = {n for n in range(opts.builds) if n and n not in changes}
    changed = changes | {0}
    base = rules[0]
    for label, key, pick, unit, scale in (
            ("total job time", "job", None, "s", 1.0), ("export time", "export", None, "s", 1.0),
            ("export time, unchanged rebuilds", "export", unchanged, "s", 1.0),
            ("job time, unchanged rebuilds", "job", unchanged, "s", 1.0),
            ("job time, changed builds", "job", changed, "s", 1.0),
            ("bytes sent to the registry", "sent", None, "MB", 1e6),
            ("bytes sent, unchanged rebuilds", "sent", unchanged, "MB", 1e6)):
        off = total(results[base], key, pick)
        parts = [f"{rule} {total(results[rule], key, pick) / scale:7.2f} {unit}" for rule in rules]
        ratios = [f"{rule}/{base} {total(results[rule], key, pick) / off if off else float('nan'):.2f}"
                  for rule in rules[1:]]
        print(f"{label:>32s}: " + ", ".join(parts) + ("; " + ", ".join(ratios) if ratios else ""))
    same = all(r["executed"] == results[base][n]["executed"] for rule in rules[1:]
               for n, r in enumerate(results[rule]) if n not in changed)
    print(f"{'exports narrowed to mode=min':>32s}: "
          + ", ".join(f"{rule} {total(results[rule], 'narrowed'):.0f}" for rule in rules))
    print(f"{'steps executed after a change':>32s}: {'the same under every rule' if same else 'DIFFERENT'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

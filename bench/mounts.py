#!/usr/bin/env python3
"""Cache mounts: a rebuild after a dependency change with the mounts restored, side by side with one without.

The workload is a package-manager step whose downloads dominate: a ``RUN --mount=type=cache`` step fetches
``--files`` files of ``--file-kib`` KiB each, one after another, from a file server on 127.0.0.1 that waits
``--delay`` seconds before each answer and sends at most ``--bandwidth`` MB/s (a package index across a WAN),
skipping the files its cache mount already holds. Every build runs on a fresh builder (a new
``docker-container`` builder of the harness's BuildKit, else the engine's own after ``buildx prune -af``) and
imports the layer cache from a registry, so the step reruns only because its file list changed:

1. seed: the list, built with cacheport build (the mounts are saved);
2. per round, built twice, in alternating order, each with one more file than the seed's list (a file of its
   own, so neither build's layer cache can serve the other): ``--mounts off`` (every file downloaded again)
   and mounts on (restored, one file downloaded, saved again).

Then restore and save overhead against the size moved: a mount filled with ``--sizes`` MiB of random bytes,
saved (uploaded), saved again (unchanged: nothing uploaded), and restored into a fresh builder, each timed as
``cacheport mounts save|restore``. Needs the e2e harness (scripts/e2e-up).

Usage: python bench/mounts.py [--rounds N] [--files N] [--file-kib N] [--delay S] [--bandwidth MB/s]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.harness import Downloads, Harness, bench_harness, clean_environ, downloads_context, gitlab_env


def app(h: Harness, root: Path, port: int, files: list[str], mount_id: str) -> Path:
    # An unprivileged user's cache (uid 1000), as a package manager's non-root build step has it.
    return downloads_context(h, root / "app", port, files, mount_id, options="uid=1000,gid=1000")


def filler(h: Harness, root: Path, mib: int, mount_id: str) -> Path:
    """A build context whose step fills a cache mount with ``mib`` MiB of random (incompressible) bytes."""
    ctx = root / f"fill-{mib}"
    ctx.mkdir(parents=True, exist_ok=True)
    shutil.copy2(h.env["CACHEPORT_E2E_BUSYBOX"], ctx / "busybox")
    (ctx / "Dockerfile").write_text(
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin"]\n'
        f"RUN --mount=type=cache,id={mount_id},target=/cache,uid=1000,gid=1000 \\\n"
        f"    for i in $(seq 1 {mib}); do head -c 1048576 /dev/urandom > /cache/blob-$i; done"
        f" && echo {uuid.uuid4().hex}\n"
    )
    return ctx


@contextmanager
def fresh(h: Harness, driver: str) -> Iterator[dict[str, str]]:
    """A builder with nothing in it: a new docker-container builder, or the engine's own after a prune."""
    if driver == "docker":
        h.prune()
        yield {}
        return
    with h.builder(driver) as name:
        yield {"BUILDX_BUILDER": name}


def timed_build(h: Harness, ctx: Path, env: dict[str, str], *args: str) -> tuple[float, dict[str, float]]:
    """The build's wall time, and the seconds its report gives each mount's restore and save."""
    start = time.perf_counter()
    result = h.build(ctx, *args, env=env, output=False)
    elapsed = time.perf_counter() - start
    if result.code != 0:
        raise SystemExit(f"build failed:\n{result.log}")
    parts = {m.group(1): float(m.group(2))
             for m in re.finditer(r"cacheport: cache:\s+mount\s+(restored|saved)\s.*, ([\d.]+) s\)", result.log)}
    return elapsed, parts


def mounts_command(action: str, ctx: Path, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cacheport", "mounts", action, ".", "--format", "json"], cwd=ctx,
                          env=env, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"cacheport mounts {action} failed:\n{proc.stderr}")
    report: dict[str, Any] = json.loads(proc.stdout)
    return elapsed, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="dependency changes, each built with and without")
    parser.add_argument("--files", type=int, default=80, help="files the step downloads (default 80)")
    parser.add_argument("--file-kib", type=int, default=512, help="each file's size (default 512 KiB)")
    parser.add_argument("--delay", type=float, default=0.15, help="seconds before each answer (default 0.15)")
    parser.add_argument("--bandwidth", type=float, default=5.0, help="MB/s per download (default 5)")
    parser.add_argument("--sizes", default="16,64,128",
                        help="MiB in the mount for the overhead rows (default 16,64,128)")
    parser.add_argument("--driver", choices=["docker-container", "docker"], default="",
                        help="the fresh builders' driver (default: docker-container when the harness has BuildKit)")
    opts = parser.parse_args()
    h = bench_harness()
    if h is None:
        return 1
    env = h.env
    driver = opts.driver or ("docker-container" if env.get("CACHEPORT_E2E_BUILDKIT_IMAGE") else "docker")
    reg = env["CACHEPORT_E2E_REGISTRY"]
    run = uuid.uuid4().hex[:8]
    settings = {**clean_environ(), **h.docker_env, **gitlab_env(f"{reg}/unused", "main"),
                "CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{reg}/bench-mounts-{run}/cache",
                "CACHEPORT_MOUNTS__HELPER_IMAGE": env["CACHEPORT_E2E_HELPER_IMAGE"]}
    server = Downloads(opts.file_kib << 10, opts.delay, opts.bandwidth)
    files = [f"pkg-{i:03d}.whl" for i in range(opts.files)]
    print(f"workload: {opts.files} files of {opts.file_kib} KiB, {opts.delay:g} s before each, "
          f"{opts.bandwidth:g} MB/s; fresh {driver} builder per build; registry cache on 127.0.0.1")
    try:
        with tempfile.TemporaryDirectory(prefix="cacheport-bench-") as tmp:
            root = Path(tmp)
            mount_id = f"bench-dl-{run}"
            with fresh(h, driver) as builder:
                seed, _ = timed_build(h, app(h, root, server.port, files, mount_id), {**settings, **builder})
            print(f"seed build (every file downloaded, mounts saved): {seed:.1f} s, "
                  f"{server.total} downloads")
            print(f"\n{'round':>5s} {'without s':>10s} {'with s':>8s} {'with/without':>13s} {'downloads without':>18s} "
                  f"{'with':>5s} {'of which restore s':>19s} {'save s':>7s}")
            ratios = []
            for n in range(opts.rounds):
                times: dict[str, float] = {}
                downloads: dict[str, int] = {}
                parts: dict[str, float] = {}
                for kind in (("without", "with") if n % 2 == 0 else ("with", "without")):
                    ctx = app(h, root, server.port, [*files, f"new-{n}-{kind}.whl"], mount_id)
                    before = server.total
                    with fresh(h, driver) as builder:
                        args = ("--mounts", "off") if kind == "without" else ()
                        times[kind], got = timed_build(h, ctx, {**settings, **builder}, *args)
                    parts = got if kind == "with" else parts
                    downloads[kind] = server.total - before
                ratios.append(times["with"] / times["without"])
                print(f"{n + 1:5d} {times['without']:10.1f} {times['with']:8.1f} {ratios[-1]:13.2f} "
                      f"{downloads['without']:18d} {downloads['with']:5d} {parts.get('restored', 0):19.1f} "
                      f"{parts.get('saved', 0):7.1f}")
            print(f"median with/without: {statistics.median(ratios):.2f} (goal: at most 0.50)")

            print(f"\n{'MiB':>5s} {'save s':>7s} {'MB/s':>6s} {'unchanged s':>12s} {'restore s':>10s} {'MB/s':>6s}")
            for mib in (int(s) for s in opts.sizes.split(",")):
                fill_id = f"bench-fill-{run}-{mib}"
                ctx = filler(h, root, mib, fill_id)
                with fresh(h, driver) as builder:
                    env_b = {**settings, **builder, "CACHEPORT_MOUNTS": "off"}
                    timed_build(h, ctx, env_b)
                    env_b.pop("CACHEPORT_MOUNTS")
                    save_s, saved = mounts_command("save", ctx, env_b)
                    again_s, again = mounts_command("save", ctx, env_b)
                with fresh(h, driver) as builder:
                    restore_s, restored = mounts_command("restore", ctx, {**settings, **builder})
                actions = [m["action"] for r in (saved, again, restored) for m in r["mounts"]]
                if actions != ["saved", "unchanged", "restored"]:
                    raise SystemExit(f"unexpected outcomes: {actions}: {saved} {again} {restored}")
                size = saved["mounts"][0]["size"] / 1e6
                print(f"{mib:5d} {save_s:7.1f} {size / save_s:6.1f} {again_s:12.1f} {restore_s:10.1f} "
                      f"{size / restore_s:6.1f}")
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Startup cost of `cacheport args`, measured side by side with a bare interpreter in one run.

Prints the median wall time of each command over interleaved runs, and the ratios. The floor line is the
cost of importing the two libraries the core is built on (pluggy, attrs), which no cacheport change removes.

Usage: python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    opts = parser.parse_args()
    exe = shutil.which("cacheport", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    if exe is None:
        print("cacheport is not installed next to this interpreter", file=sys.stderr)
        return 1
    workdir = tempfile.mkdtemp(prefix="cacheport-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI", "GITLAB", "GITHUB", "CACHEPORT"))}
    env["XDG_CACHE_HOME"] = workdir
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import pluggy, attrs' (floor)": [sys.executable, "-c", "import pluggy, attrs"],
        "cacheport args": [exe, "args"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for cmd in commands.values():  # warm the page cache before measuring
        subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=workdir)
    for _ in range(opts.runs):
        for name, cmd in commands.items():
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=workdir)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(xs) * 1000 for name, xs in times.items()}
    base = medians["python -c pass"]
    for name, ms in medians.items():
        print(f"{name:45s} {ms:7.1f} ms   {ms / base:5.2f}x python")
    floor = medians["python -c 'import pluggy, attrs' (floor)"]
    print(f"cacheport args / floor: {medians['cacheport args'] / floor:.2f}x  ({opts.runs} interleaved runs each)")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

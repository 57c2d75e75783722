#!/usr/bin/env python3
"""Startup cost of `cacheport args`, measured side by side with a bare interpreter in one run.

Prints the median wall time of each command over interleaved runs, and the ratios; beside it the median CPU
time (user + system) the command took, which other work on a shared machine disturbs less. The floor line is the
cost of importing the two libraries the core is built on (pluggy, attrs), which no cacheport change removes.
`cacheport args` runs twice: in a project with no cache yet, and in one whose local cache is there (which
`args` looks at before it prints). With ``--compare SRC`` (another checkout's ``src``, e.g. main's), both
also run as ``python -m cacheport`` from that source and from this one, side by side in the same run.

Usage: python bench/startup.py [--runs N] [--compare SRC]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--compare", metavar="SRC", help="another checkout's src directory to run beside this one")
    opts = parser.parse_args()
    exe = shutil.which("cacheport", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    if exe is None:
        print("cacheport is not installed next to this interpreter", file=sys.stderr)
        return 1
    workdir = tempfile.mkdtemp(prefix="cacheport-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI", "GITLAB", "GITHUB", "CACHEPORT"))}
    env["XDG_CACHE_HOME"] = workdir
    # Users' modules are compiled once and read from bytecode after; with PYTHONDONTWRITEBYTECODE set, every run
    # would compile the modules that happen to have none, and measure that. A private prefix keeps the
    # bytecode out of the checkouts; the warm-up run writes it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(workdir, "pycache")
    cached = os.path.join(workdir, "cached")
    os.mkdir(cached)
    _local_cache(exe, env, cached)
    commands: dict[str, tuple[list[str], str, dict[str, str]]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], workdir, env),
        "python -c 'import pluggy, attrs' (floor)": ([sys.executable, "-c", "import pluggy, attrs"], workdir, env),
        "cacheport args": ([exe, "args"], workdir, env),
        "cacheport args, a local cache there": ([exe, "args"], cached, env),
    }
    if opts.compare:
        here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
        for label, src in (("this", here), ("compare", os.path.abspath(opts.compare))):
            module = [sys.executable, "-m", "cacheport", "args"]
            commands[f"args ({label})"] = (module, workdir, {**env, "PYTHONPATH": src})
            commands[f"args, a local cache there ({label})"] = (module, cached, {**env, "PYTHONPATH": src})
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for cmd, cwd, cmd_env in commands.values():  # warm the page cache before measuring
        subprocess.run(cmd, check=True, capture_output=True, env=cmd_env, cwd=cwd)
    for _ in range(opts.runs):
        for name, (cmd, cwd, cmd_env) in commands.items():
            before, start = _children_cpu(), time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=cmd_env, cwd=cwd)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(_children_cpu() - before)
    medians = {name: statistics.median(xs) * 1000 for name, xs in times.items()}
    cpus = {name: statistics.median(xs) * 1000 for name, xs in cpu.items()}
    base = medians["python -c pass"]
    floor, cpu_floor = (m["python -c 'import pluggy, attrs' (floor)"] for m in (medians, cpus))
    print(f"{'':45s} {'wall':>7s}      {'/python':>6s}   {'/floor':>6s}     {'cpu':>7s}      {'/floor':>6s}")
    for name, ms in medians.items():
        print(f"{name:45s} {ms:7.1f} ms   {ms / base:5.2f}x   {ms / floor:5.2f}x   {cpus[name]:7.1f} ms   "
              f"{cpus[name] / cpu_floor:5.2f}x")
    print(f"cacheport args / floor: {medians['cacheport args'] / floor:.2f}x wall, "
          f"{cpus['cacheport args'] / cpu_floor:.2f}x cpu  ({opts.runs} interleaved runs each)")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _local_cache(exe: str, env: dict[str, str], cwd: str) -> None:
    """A project whose local cache is in place: a tiny one written where `args` exports, then rotated in."""
    from cacheport.oci.layout import Layout
    from cacheport.records import Descriptor, Manifest
    from cacheport.records.store import sha256_digest

    plan = json.loads(subprocess.run([exe, "args", "--format", "json"], check=True, capture_output=True, env=env,
                                     cwd=cwd, text=True).stdout)
    config = b'{"layers":[],"records":[]}'
    config_d = Descriptor("application/vnd.buildkit.cacheconfig.v0", sha256_digest(config), len(config))
    layout = Layout(plan["exports"][0]["attrs"]["dest"])
    manifest = Manifest.from_json({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                   "config": config_d.as_json(), "layers": []})
    layout.put_blob(config_d, [config])
    layout.put_manifest("latest", manifest)
    subprocess.run([exe, "rotate"], check=True, capture_output=True, env=env, cwd=cwd)
    again = json.loads(subprocess.run([exe, "args", "--format", "json"], check=True, capture_output=True, env=env,
                                      cwd=cwd, text=True).stdout)
    if not again["imports"]:
        raise SystemExit("the local cache made for the benchmark is not imported")


if __name__ == "__main__":
    sys.exit(main())

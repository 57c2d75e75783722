#!/usr/bin/env python3
"""Registry work at a distance: `cacheport seed` next to `docker buildx imagetools create`, resuming a stopped
seed, and `status` / `prune` over hundreds of tags next to a serial run, all through bench/wan_proxy.py.

Needs the e2e harness (scripts/e2e-up): its registry, its docker CLI with buildx, and a second registry this
script starts on a free loopback port. The caches are synthetic (blobs of random bytes in BuildKit's index
format, pushed with cacheport's own client), so nothing is built. Every time is wall time of the whole
command, start-up included; ratios are seed / imagetools (below 1: seed is faster). No test asserts on this.
With --pulp, the resume is also measured into the Pulp of scripts/pulp-up (its nginx front), when it runs.

Usage: python bench/registry_ops.py [--rtt 0,50] [--small-mb 200] [--big-mb 1024] [--tags 500] [--reps 1]
       [--skip copies,resume,lifecycle] [--pulp]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402

from bench.wan_proxy import Proxy  # noqa: E402
from cacheport.oci.format import CACHECONFIG, OCI_INDEX, OCI_LAYER, Descriptor, Manifest, sha256_digest  # noqa: E402
from cacheport.oci.registry import Registry  # noqa: E402
from tests.e2e.harness import Harness, bench_harness, clean_environ, read_pulp_env  # noqa: E402

MiB = 1 << 20
RUN_CACHEPORT = ("import atexit, re, sys\n"
                 # VmHWM is this process's own peak; getrusage's maxrss would include its parent's at fork time
                 "atexit.register(lambda: print('maxrss-kb:', re.search(r'VmHWM:\\s*(\\d+)', "
                 "open('/proc/self/status').read()).group(1), file=sys.stderr))\n"
                 "from cacheport.cli import main\nmain(sys.argv[1:])\n")


# --- synthetic caches ----------------------------------------------------------------------------------------


class Blob:
    """``size`` bytes made from one random MiB (each MiB numbered), so they can be streamed twice, never held."""

    def __init__(self, size: int) -> None:
        self.size, self.block = size, os.urandom(MiB)
        hashed = hashlib.sha256()
        for chunk in self.chunks():
            hashed.update(chunk)
        self.digest = "sha256:" + hashed.hexdigest()

    def chunks(self) -> Iterator[bytes]:
        left, i = self.size, 0
        while left:
            chunk = (i.to_bytes(8, "big") + self.block[8:])[:left]
            left, i = left - len(chunk), i + 1
            yield chunk


def push_cache(host: str, repo: str, sizes: list[int], tag: str = "main") -> tuple[Manifest, list[Descriptor]]:
    """A BuildKit index-format cache of layers of these sizes plus a cacheconfig, pushed in parallel."""
    blobs = [Blob(s) for s in sizes]
    config = json.dumps({"layers": [{"blob": b.digest, "parent": -1} for b in blobs], "records": []}).encode()
    descriptors = [Descriptor(OCI_LAYER, b.digest, b.size, {"buildkit/createdat": "2026-01-01T00:00:00Z"})
                   for b in blobs]
    with Registry(host) as registry, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda b: registry.upload_blob(repo, b.digest, b.size, b.chunks()), blobs))
        registry.upload_blob(repo, sha256_digest(config), len(config), [config])
        index = Manifest.from_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            *(d.as_json() for d in descriptors),
            {"mediaType": CACHECONFIG, "digest": sha256_digest(config), "size": len(config)}]})
        registry.put_manifest(repo, tag, index)
    return index, [*descriptors, Descriptor(CACHECONFIG, sha256_digest(config), len(config))]


def push_tags(host: str, repo: str, count: int) -> None:
    """``count`` small caches, tags t000…, sharing two blobs, each a manifest of its own, dated long ago."""
    layer, config = b"layer" * 100, b'{"layers":[],"records":[]}'
    with Registry(host) as registry:
        for data in (layer, config):
            registry.upload_blob(repo, sha256_digest(data), len(data), [data])

        def put(i: int) -> None:
            registry.put_manifest(repo, f"t{i:03d}", Manifest.from_json({
                "schemaVersion": 2, "mediaType": OCI_INDEX, "annotations": {"n": str(i)}, "manifests": [
                    {"mediaType": OCI_LAYER, "digest": sha256_digest(layer), "size": len(layer),
                     "annotations": {"buildkit/createdat": "2020-01-01T00:00:00Z"}},
                    {"mediaType": CACHECONFIG, "digest": sha256_digest(config), "size": len(config)}]}))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, range(count)))


# --- the tools -----------------------------------------------------------------------------------------------


class Tools:
    def __init__(self, harness: Harness, work: Path) -> None:
        self.h, self.work = harness, work
        self.cache_home = work / "xdg-cache"  # where seed remembers open uploads

    def env(self, **extra: str) -> dict[str, str]:
        return {**clean_environ(), "XDG_CACHE_HOME": str(self.cache_home), "CACHEPORT_LOAD_PLUGINS": "", **extra}

    def cacheport(self, *args: str, env: dict[str, str]) -> tuple[float, dict[str, object] | list[object] | None,
                                                                    float, str]:
        """Seconds, the JSON it printed (if any), peak RSS in MB, stderr."""
        began = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", RUN_CACHEPORT, *args], cwd=self.work, env=env,
                              capture_output=True, text=True, timeout=1800)
        seconds = time.monotonic() - began
        if proc.returncode != 0:
            raise SystemExit(f"cacheport {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        rss = next((int(x.split()[1]) / 1024 for x in proc.stderr.splitlines() if x.startswith("maxrss-kb:")), 0.0)
        try:
            doc = json.loads(proc.stdout)
        except ValueError:
            doc = None
        return seconds, doc, rss, proc.stderr

    def seed_env(self, src: str, dst: str, *, image_manifest: bool = False) -> dict[str, str]:
        extra = {"CACHEPORT_REGISTRY__IMAGE_MANIFEST": "true"} if image_manifest else {}
        return self.env(CACHEPORT_GITLAB__REF=src, CACHEPORT_BACKEND="registry", CACHEPORT_REGISTRY__REF=dst, **extra)

    def seed(self, src: str, dst: str, *, image_manifest: bool = False) -> tuple[float, float, dict[str, object]]:
        seconds, doc, rss, _ = self.cacheport("seed", "--from", "gitlab", "--branch", "main", "--format", "json",
                                              env=self.seed_env(src, dst, image_manifest=image_manifest))
        assert isinstance(doc, dict) and doc["copied"] == 1, doc
        return seconds, rss, doc

    def imagetools(self, src: str, dst: str) -> float:
        began = time.monotonic()
        proc = subprocess.run([self.h.env["CACHEPORT_E2E_DOCKER_BIN"], "buildx", "imagetools", "create", "--tag",
                               f"{dst}:main", f"{src}:main"], env={**os.environ, **self.h.docker_env},
                              capture_output=True, text=True, timeout=1800)
        seconds = time.monotonic() - began
        if proc.returncode != 0:
            raise SystemExit(f"imagetools failed:\n{proc.stderr}")
        return seconds


def raw_copy(src_host: str, src_repo: str, dst_host: str, dst_repo: str, blobs: list[Descriptor], jobs: int) -> float:
    """The bytes alone: each blob streamed GET → POST+PUT by plain httpx, ``jobs`` at a time, no checks."""
    began = time.monotonic()
    with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=2 * jobs)) as client:
        def one(blob: Descriptor) -> None:
            with client.stream("GET", f"http://{src_host}/v2/{src_repo}/blobs/{blob.digest}") as got:
                started = client.post(f"http://{dst_host}/v2/{dst_repo}/blobs/uploads/")
                location = httpx.URL(started.headers["location"])
                put = client.put(location.copy_merge_params({"digest": blob.digest}), content=got.iter_bytes(MiB),
                                 headers={"Content-Length": str(blob.size)})
                put.raise_for_status()

        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(one, blobs))
    return time.monotonic() - began


# --- the scenarios -------------------------------------------------------------------------------------------


def copies(tools: Tools, reg_a: str, reg_b: str, rtt_ms: float,
           caches: dict[str, tuple[str, list[Descriptor]]], reps: int) -> None:
    """Each copy ``reps`` times into fresh repositories, the two tools taking turns to go first; medians. Each
    run starts with the page cache written back (``os.sync``, untimed), so no run pays for the last one's
    gigabytes reaching the disk."""
    delay = rtt_ms / 2000
    with Proxy(reg_a, delay=delay) as pa, Proxy(reg_b, delay=delay) as pb:
        print(f"\n## seed vs imagetools at {rtt_ms:g} ms RTT (proxy: {pa.describe()}); median of {reps}",
              flush=True)
        print(f"{'cache':30s} {'where':16s} {'imagetools s':>12s} {'seed s':>8s} {'seed/it':>8s}  seed peak RSS")
        for name, (repo, blobs) in caches.items():
            size = sum(b.size for b in blobs)
            label = f"{name} ({size / 1e6:.0f} MB, {len(blobs)} blobs)"
            for where, proxy in (("cross-registry", pb), ("same registry", pa)):
                its, seeds, rss = [], [], 0.0
                for rep in range(reps):
                    run = uuid.uuid4().hex[:6]
                    for tool in (("it", "seed") if rep % 2 == 0 else ("seed", "it")):
                        os.sync()
                        if tool == "it":
                            its.append(tools.imagetools(f"{pa.host}/{repo}", f"{proxy.host}/{repo}-it-{run}"))
                        else:
                            seconds, peak, doc = tools.seed(f"{pa.host}/{repo}", f"{proxy.host}/{repo}-seed-{run}")
                            seeds.append(seconds)
                            rss = max(rss, peak)
                it, seconds = statistics.median(its), statistics.median(seeds)
                print(f"{label:30s} {where:16s} {it:12.2f} {seconds:8.2f} {seconds / it:8.2f}  {rss:.0f} MB"
                      f" ({doc['blobs_uploaded']} uploaded, {doc['blobs_mounted']} mounted)", flush=True)
            raws, convs, rss = [], [], 0.0
            for rep in range(reps):
                run = uuid.uuid4().hex[:6]
                for tool in (("raw", "seed") if rep % 2 == 0 else ("seed", "raw")):
                    os.sync()
                    if tool == "raw":
                        raws.append(raw_copy(pa.host, repo, pb.host, f"{repo}-raw-{run}", blobs, 8))
                    else:
                        seconds, peak, _ = tools.seed(f"{pa.host}/{repo}", f"{pb.host}/{repo}-conv-{run}",
                                                      image_manifest=True)
                        convs.append(seconds)
                        rss = max(rss, peak)
            raw, seconds = statistics.median(raws), statistics.median(convs)
            print(f"{label:30s} {'→ image-manifest':16s} {'(cannot)':>12s} {seconds:8.2f} {seconds / raw:8.2f}  "
                  f"{rss:.0f} MB; ratio to the raw byte copy of the same blobs, {raw:.2f} s "
                  "(imagetools cannot convert an index)", flush=True)


def resume(tools: Tools, reg_a: str, repo: str, size: int, targets: dict[str, tuple[str, dict[str, str]]]) -> None:
    """For each target (name → its host and the seed settings it needs): SIGTERM, then SIGKILL, at about half
    of the big blob, then the same seed again; what the two runs sent beyond the blob's size was sent twice."""
    print("\n## resume: stop seed at about 50% of the big blob, run it again (proxy: 0 ms, counting bytes)",
          flush=True)
    for name, (host, extra) in targets.items():
        for sig in (signal.SIGTERM, signal.SIGKILL):
            dst = f"{repo}-resume-{uuid.uuid4().hex[:6]}"
            with Proxy(host) as pb:
                env = {**tools.seed_env(f"{reg_a}/{repo}", f"{pb.host}/{dst}"), **extra}
                proc = subprocess.Popen([sys.executable, "-c", RUN_CACHEPORT, "seed", "--from", "gitlab",
                                         "--branch", "main"], cwd=tools.work, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
                while pb.counters.up < size // 2 and proc.poll() is None:
                    time.sleep(0.02)
                at = pb.counters.up
                proc.send_signal(sig)
                _, err = proc.communicate(timeout=600)
                time.sleep(1.0)  # what the first run left in socket buffers still reaches the proxy: count it as first
                first = pb.counters.up
                last = [line for line in err.splitlines() if line.startswith("cacheport:")][-1:] or ["(killed)"]
                seconds, doc, _, _ = tools.cacheport("seed", "--from", "gitlab", "--branch", "main", "--format",
                                                     "json", env=env)
                second = pb.counters.up - first
            assert isinstance(doc, dict) and doc["copied"] == 1, doc
            resent = first + second - size
            print(f"{name} {sig.name}: signalled at {at / MiB:.0f} MiB; the first run sent {first / MiB:.0f} MiB "
                  f"and said {last[0]!r}; the second sent {second / MiB:.0f} MiB in {seconds:.1f}s "
                  f"(blobs resumed: {doc['blobs_resumed']}); re-sent {max(0, resent) / MiB:.0f} MiB "
                  f"= {100 * max(0, resent) / size:.1f}% of the {size / MiB:.0f} MiB blob", flush=True)


def lifecycle(tools: Tools, reg_a: str, count: int, rtt_ms: float, reps: int) -> None:
    """status and prune with ``--jobs 1`` and with the default, each on its own copy of the tags; the default's
    status ``reps`` times (a median), after the copies' gigabytes have reached the disk, so writeback of them
    does not land on these requests."""
    base = f"bench-{uuid.uuid4().hex[:6]}"
    repos = {"parallel": f"{base}/tags-par", "serial": f"{base}/tags-ser"}
    for repo in repos.values():
        push_tags(reg_a, repo, count)
    os.sync()
    with Proxy(reg_a, delay=rtt_ms / 2000) as pa:
        print(f"\n## status and prune over {count} tags at {rtt_ms:g} ms RTT (proxy: {pa.describe()}); "
              f"default --jobs: status a median of {reps}", flush=True)
        print(f"{'command':8s} {'serial (--jobs 1) s':>20s} {'default --jobs s':>17s} {'speed-up':>9s}")
        results: dict[str, dict[str, float]] = {"status": {}, "prune": {}}
        for mode, repo in repos.items():
            jobs = ("--jobs", "1") if mode == "serial" else ()
            env = tools.env(CACHEPORT_BACKEND="registry", CACHEPORT_REGISTRY__REF=f"{pa.host}/{repo}")
            runs = []
            for _ in range(1 if mode == "serial" else reps):
                seconds, doc, _, _ = tools.cacheport("status", "--format", "json", *jobs, env=env)
                assert isinstance(doc, dict) and len(doc["tags"]) == count, doc  # type: ignore[arg-type]
                runs.append(seconds)
            results["status"][mode] = statistics.median(runs)
            seconds, doc, _, _ = tools.cacheport("prune", "--older-than", "30d", "--keep", "t000", "--yes",
                                                 "--format", "json", *jobs, env=env)
            assert isinstance(doc, list) and sum(bool(d["deleted"]) for d in doc) == count - 1, doc
            results["prune"][mode] = seconds
        for command, r in results.items():
            print(f"{command:8s} {r['serial']:20.2f} {r['parallel']:17.2f} {r['serial'] / r['parallel']:8.1f}x",
                  flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt", default="0,50", help="round trips to add, in ms, comma-separated (default 0,50)")
    parser.add_argument("--small-mb", type=int, default=200, help="the many-blob cache's size (default 200)")
    parser.add_argument("--big-mb", type=int, default=1024, help="the one-blob cache's size (default 1024)")
    parser.add_argument("--tags", type=int, default=500, help="tags for status and prune (default 500)")
    parser.add_argument("--reps", type=int, default=1, help="runs of each copy, for medians (default 1)")
    parser.add_argument("--skip", default="", help="comma-separated: copies, resume, lifecycle")
    parser.add_argument("--pulp", action="store_true",
                        help="resume into the Pulp of scripts/pulp-up too ($CACHEPORT_PULP_STATE/env), if it runs")
    opts = parser.parse_args()
    harness = bench_harness()
    if harness is None:
        return 1
    env = harness.env
    skip = set(filter(None, opts.skip.split(",")))
    reg_a = env["CACHEPORT_E2E_REGISTRY"]
    with tempfile.TemporaryDirectory(prefix="cacheport-bench-") as tmp, \
            harness.throwaway_registry(Path(tmp) / "registry-b") as reg_b:
        tools = Tools(harness, Path(tmp))
        base = f"bench-{uuid.uuid4().hex[:6]}"
        # ten layers from 40 MB down to 10 MB (about 200 MB in all), plus the cache config
        weights = [8, 6, 5, 4, 4, 4, 3, 3, 2, 2]
        small = [opts.small_mb * 1_000_000 * w // sum(weights) for w in weights]
        began = time.monotonic()
        print(f"# bench/registry_ops.py: {os.cpu_count()} cores; harness {env.get('CACHEPORT_E2E_STATE', '?')}: "
              f"registry A {reg_a}, registry B {reg_b} (distribution 2.8), its docker buildx imagetools", flush=True)
        caches = {}
        caches["many blobs"] = (f"{base}/small", push_cache(reg_a, f"{base}/small", small)[1])
        caches["one big blob"] = (f"{base}/big", push_cache(reg_a, f"{base}/big", [opts.big_mb * MiB])[1])
        print(f"pushed the synthetic caches in {time.monotonic() - began:.1f}s", flush=True)
        if "copies" not in skip:
            for rtt in (float(x) for x in opts.rtt.split(",")):
                copies(tools, reg_a, reg_b, rtt, caches, max(1, opts.reps))
        if "resume" not in skip:
            targets = {"distribution 2.8": (reg_b, {})}
            if opts.pulp:
                pulp, why = read_pulp_env()
                if pulp is None:
                    print(f"(no Pulp resume: {why})", flush=True)
                else:  # the way Pulp needs a cache (tests/e2e/test_seed.py): converted, with its login
                    targets["Pulp (nginx front)"] = (pulp.registry, {
                        "CACHEPORT_REGISTRY__IMAGE_MANIFEST": "true", "CACHEPORT_REGISTRY__OCI_MEDIATYPES": "true",
                        "CACHEPORT_REGISTRY__USERNAME_ENV": "PULP_USERNAME",
                        "CACHEPORT_REGISTRY__PASSWORD_ENV": "PULP_PASSWORD",
                        "PULP_USERNAME": pulp.user, "PULP_PASSWORD": pulp.password})
            resume(tools, reg_a, f"{base}/big", opts.big_mb * MiB, targets)
        if "lifecycle" not in skip:
            lifecycle(tools, reg_a, opts.tags, 50.0, max(1, opts.reps))
        print(f"\n(bench ran {time.monotonic() - began:.0f}s)")
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda args: None  # a proxy thread's teardown noise is not a result
    sys.exit(main())

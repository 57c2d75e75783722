#!/usr/bin/env python3
"""What the build's history record costs a build: `cacheport build`'s wall time with the record on against off, on
a distribution registry and on Pulp, and (with --before REV) this checkout against an earlier one side by side.

Per round, interleaved, on the e2e workload (the reference project, its builder's cache pruned so the import comes
from the registry): a protected main-branch build with `history = "on"` (`history-keep = 3`, so from the fourth
build on every build also deletes its branch's oldest record, as a pipeline past the bound does) and with
`history = "off"`, on each registry. `--trust signed` signs the exports and the record too. Before the builds it
times where a record's write goes in this process, on each registry: the blob, the manifest, its signature, the
list and one delete. Prints medians and the ratios. Needs the e2e harness (scripts/e2e-up) and Pulp
(scripts/pulp-up).

Usage: python bench/history.py [--rounds N] [--trust protected|signed] [--before REV]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.harness import bench_harness, clean_environ, gitlab_env, pulp_env, read_pulp_env

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def checkout(rev: str | None) -> Iterator[dict[str, str]]:
    """The environment that runs cacheport from ``rev``'s sources (unpacked with ``git archive``), or without
    ``rev`` from this checkout's, first on the path (whatever is installed in the environment)."""
    if rev is None:
        yield {"PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'plugins' / 'builtins'}"}
        return
    with tempfile.TemporaryDirectory(prefix="cacheport-bench-before-") as tmp:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "src", "plugins/builtins"],
                             check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=tar, check=True)
        yield {"PYTHONPATH": f"{Path(tmp) / 'src'}{os.pathsep}{Path(tmp) / 'plugins' / 'builtins'}"}


def phases(host: str, auth: tuple[str, str] | None, rounds: int) -> dict[str, float]:
    """Median seconds of each request a signed record's write makes, on a repository of its own."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from cacheport.oci.artifact import artifact
    from cacheport.oci.auth import Credentials
    from cacheport.oci.registry import Registry
    from cacheport.oci.repository import RegistryRepository
    from cacheport.ops.signatures import StoreSigning
    from cacheport.report import record as rec
    from cacheport.signing import Policy

    key = Ed25519PrivateKey.generate()
    signing = StoreSigning(Policy((), "KEY", None, "group/app", True), key)
    times: dict[str, list[float]] = {}

    def timed(label: str, work: Callable[[], object]) -> object:
        began = time.perf_counter()
        out = work()
        times.setdefault(label, []).append(time.perf_counter() - began)
        return out

    registry = Registry(host, Credentials(*auth) if auth else None, insecure=True)
    with RegistryRepository(registry, f"bench-history-{uuid.uuid4().hex[:8]}/cache") as session:
        written: list[str] = []
        for _ in range(rounds + 1):
            name = rec.record_name("main", datetime.now(UTC), uuid.uuid4().hex[:8])
            blobs, manifest = artifact(rec.ARTIFACT_TYPE, rec.MEDIA_TYPE, os.urandom(900).hex().encode())
            for descriptor, content in blobs:
                if session.blob_size(descriptor.digest) is None:
                    timed("record blob (POST, PUT)", lambda d=descriptor, c=content: session.put_blob(d, [c]))
            timed("record manifest", lambda n=name, m=manifest: session.put_manifest(n, m))
            timed("its signature", lambda n=name, m=manifest: signing.sign(session, n, m.digest))
            timed("list the names", session.names)
            if written:
                timed("delete one", lambda: session.delete(written.pop()))
            written.append(name)
    return {label: statistics.median(values) for label, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trust", choices=["protected", "signed"], default="protected")
    parser.add_argument("--before", metavar="REV", help="Also time cacheport from this revision (e.g. main).")
    parser.add_argument("--only", choices=["distribution", "pulp"], help="Time the builds on this registry only.")
    opts = parser.parse_args()
    h = bench_harness()
    pulp, why = read_pulp_env()
    if h is None or pulp is None:
        print(why, file=sys.stderr)
        return 1
    reg = h.env["CACHEPORT_E2E_REGISTRY"]
    run = uuid.uuid4().hex[:8]
    trust: dict[str, str] = {"CI_COMMIT_REF_PROTECTED": "true", "CACHEPORT_TRUST": opts.trust}
    if opts.trust == "signed":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        trust["CACHE_SIGNING_KEY"] = base64.b64encode(key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())).decode()
        trust["CACHEPORT_SIGNERS"] = base64.b64encode(key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    stores = {
        "distribution": {**gitlab_env(f"{reg}/unused", "main"), "CACHEPORT_BACKEND": "registry",
                         "CACHEPORT_REGISTRY__REF": f"{reg}/bench-history-{run}/cache"},
        "pulp": pulp_env(pulp, f"bench-history-{run}/app"),
    }
    stores = {name: env for name, env in stores.items() if opts.only in (None, name)}

    print("where a signed record's write goes, median of 5 (seconds):")
    for name, host, auth in (("distribution", reg, None), ("pulp", pulp.registry, (pulp.user, pulp.password))):
        if name not in stores:
            continue
        print(f"  {name:13s}" + "  ".join(f"{label} {value:.2f}" for label, value in phases(host, auth, 5).items()))

    with contextlib.ExitStack() as stack:
        codes = {"after": stack.enter_context(checkout(None))}
        if opts.before:
            codes["before"] = stack.enter_context(checkout(opts.before))
        with tempfile.TemporaryDirectory(prefix="cacheport-bench-") as tmp:
            ctx = h.project(Path(tmp), work=2.0)

            def build(code: str, store: str, history: str) -> float:
                h.prune()
                env = {**clean_environ(), **h.docker_env, **stores[store], **trust, **codes[code],
                       "CACHEPORT_HISTORY": history, "CACHEPORT_HISTORY_KEEP": "3"}
                began = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "cacheport", "build", ".", "--", "--network=host"],
                                      cwd=ctx, env=env, capture_output=True, text=True)
                took = time.perf_counter() - began
                if done.returncode != 0 or "history: the build record was not kept" in done.stderr:
                    raise SystemExit(f"the {code} {store} build (history {history}) failed:\n{done.stderr}")
                return took

            configs = [(c, s, hist) for c in codes for s in stores for hist in ("on", "off")]
            for store in stores:
                for _ in range(3):  # cold, then records up to the bound
                    build("after", store, "on")
            times: dict[tuple[str, str, str], list[float]] = {c: [] for c in configs}
            for _ in range(opts.rounds):
                for config in configs:
                    times[config].append(build(*config))
    med = {config: statistics.median(values) for config, values in times.items()}
    print(f"\nwarm protected builds of the reference project (trust = {opts.trust}, history-keep = 3, past the "
          f"bound), median of {opts.rounds} interleaved rounds (seconds):")
    print(f"  {'':24s}" + "".join(f"{store:>26s}" for store in stores))
    for code in codes:
        for history in ("on", "off"):
            print(f"  {code + ', history ' + history:24s}"
                  + "".join(f"{med[(code, store, history)]:26.2f}" for store in stores))
    print("  ratios:")
    for code in codes:
        print(f"  {code + ', on / off':24s}"
              + "".join(f"{med[(code, s, 'on')] / med[(code, s, 'off')]:26.3f}" for s in stores))
    if "before" in codes:
        print(f"  {'on: after / before':24s}"
              + "".join(f"{med[('after', s, 'on')] / med[('before', s, 'on')]:26.3f}" for s in stores))
        added = {code: {s: med[(code, s, "on")] - med[(code, s, "off")] for s in stores} for code in codes}
        print(f"  {'on - off: after / before':24s}"
              + "".join(f"{added['after'][s] / max(added['before'][s], 1e-3):26.3f}" for s in stores))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""What `trust = "signed"` costs a protected build: signing and verifying, as a share of the build's own time.

Per round, interleaved, on the e2e workload (the reference project, its builder's cache pruned so the import
comes from the registry): a protected `cacheport build` under trust = "signed" (it verifies the import and signs
the export) and the same build under trust = "protected" (neither). Besides the two wall times, it times the
signature work itself in this process, against the same registry: verifying the import (resolve the tag, read
the signature, check it) and signing an export (make the envelope, store it). Cache mounts too: restoring a
16 MiB mounts artifact verified (resolve, check, read by digest) against the same unverified. Prints medians and
the ratios (the goal: signing + verifying under 5 % of the build). Needs the e2e harness (scripts/e2e-up).

Usage: python bench/signing.py [--rounds N]
"""

from __future__ import annotations

import argparse
import base64
import os
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
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from cacheport.entry import CacheEntry
    from cacheport.mounts import CacheMount, MountLimits
    from cacheport.oci.registry import Registry
    from cacheport.oci.repository import RegistryRepository
    from cacheport.ops import signatures
    from cacheport.ops.mounts_store import fetch, publish
    from cacheport.signing import Claim, Policy, envelope, parse_signers
    from tests.fakes.caches import mount_archive

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    h = bench_harness()
    if h is None:
        return 1
    env = h.env
    reg = env["CACHEPORT_E2E_REGISTRY"]
    key = Ed25519PrivateKey.generate()
    private = base64.b64encode(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())).decode()
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    # Each mode has its cache in a repository of its own: a build under "protected" would overwrite the signed
    # cache with an unsigned one, and the next signed build would (rightly) go cold.
    repo = f"bench-signing-{uuid.uuid4().hex[:8]}/cache"
    base = {**gitlab_env(f"{reg}/unused", "main"), "CI_COMMIT_REF_PROTECTED": "true", "CACHEPORT_BACKEND": "registry",
            "CACHEPORT_SIGNERS": public, "CACHE_SIGNING_KEY": private}
    modes = {"signed": {**base, "CACHEPORT_TRUST": "signed", "CACHEPORT_REGISTRY__REF": f"{reg}/{repo}"},
             "protected": {**base, "CACHEPORT_TRUST": "protected", "CACHEPORT_REGISTRY__REF": f"{reg}/{repo}-p"}}
    entry = CacheEntry("registry", {"ref": f"{reg}/{repo}:main"})
    policy = Policy(parse_signers(public), "CACHE_SIGNING_KEY", None, "group/app", True)

    with tempfile.TemporaryDirectory(prefix="cacheport-bench-") as tmp:
        ctx = h.project(Path(tmp), work=4.0)

        def build(mode: str) -> float:
            h.prune()
            began = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "cacheport", "build", ".", "--", "--network=host"], cwd=ctx,
                                  env={**clean_environ(), **h.docker_env, **modes[mode]}, capture_output=True,
                                  text=True)
            took = time.perf_counter() - began
            if done.returncode != 0 or (mode == "signed" and "signature: signed" not in done.stderr):
                raise SystemExit(f"the {mode} build failed:\n{done.stdout}{done.stderr}")
            return took

        build("signed")  # cold: fill the registries, and sign one
        build("protected")
        archive = mount_archive(Path(tmp) / "pip.tgz", CacheMount("pip", "/root/.cache/pip"),
                                {"wheel": os.urandom(16 << 20)})
        mounts = RegistryRepository(Registry(reg, insecure=True), repo)
        store_signing = signatures.StoreSigning(policy, key)
        publish(mounts, "main", [archive], limits=MountLimits(), signing=store_signing)
        times: dict[str, list[float]] = {"build, trust = signed": [], "build, trust = protected": [],
                                         "verify one import": [], "sign one export": [],
                                         "restore mounts, verified": [], "restore mounts, unverified": []}
        for _ in range(opts.rounds):
            times["build, trust = signed"].append(build("signed"))
            times["build, trust = protected"].append(build("protected"))
            began = time.perf_counter()
            verdict = signatures.verify_entry(entry, policy, (), {})
            times["verify one import"].append(time.perf_counter() - began)
            assert verdict.ok, verdict.reason
            began = time.perf_counter()
            from cacheport.oci.reference import parse_reference
            from cacheport.oci.registry import Registry

            with Registry(parse_reference(reg + "/x").host) as registry:
                data = envelope(Claim(verdict.digest, "main", "group/app", verdict.claim.signed), key)  # type: ignore[union-attr]
                signatures.store(registry, repo, verdict.digest, data)
            times["sign one export"].append(time.perf_counter() - began)
            for label, signing in (("verified", store_signing), ("unverified", None)):
                began = time.perf_counter()
                _got, said = fetch(mounts, ["main"], Path(tmp) / uuid.uuid4().hex, limits=MountLimits(),
                                   signing=signing)
                times[f"restore mounts, {label}"].append(time.perf_counter() - began)
                assert said[0].action == "restored", said
        mounts.registry.close()
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"protected warm builds of the reference project (registry cache on {reg}, builder pruned), "
          f"median of {opts.rounds} interleaved rounds:")
    for name, value in med.items():
        print(f"  {name:26s} {value:7.3f} s")
    work = med["verify one import"] + med["sign one export"]
    print(f"  (verify + sign) / build, trust = protected:        {work / med['build, trust = protected']:.2%} "
          "(goal: under 5 %)")
    print(f"  build, signed / build, protected:                  "
          f"{med['build, trust = signed'] / med['build, trust = protected']:.3f}")
    print(f"  restore 16 MiB mounts, verified / unverified:      "
          f"{med['restore mounts, verified'] / med['restore mounts, unverified']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

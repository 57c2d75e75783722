"""Registry work at a distance against the harness's real registries (distribution), with bench/wan_proxy.py in
the path: a parallel seed sends every blob exactly once, with the right digest, and the manifest last; a reset
connection and a 503 with Retry-After are retried; a seed stopped with SIGTERM in the middle of a chunked upload
continues from the offset the registry reports, byte for byte; one killed with SIGKILL there is sent again from
zero (distribution 2.8 refuses the upload) and still completes; status and prune work through many tags in
parallel and print them in order. No timings are asserted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from bench.wan_proxy import Answer, Proxy
from cacheport.oci.format import OCI_INDEX, Manifest
from cacheport.oci.registry import Registry
from tests.fakes.caches import MiB, push_cache

from .harness import Harness, clean_environ


def cacheport(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], cwd=cwd, capture_output=True, text=True,
                          env={**clean_environ(), "CACHEPORT_LOAD_PLUGINS": "", **env}, timeout=600)


def seed_env(tmp: Path, src: str, dst: str) -> dict[str, str]:
    return {"CACHEPORT_GITLAB__REF": src, "CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": dst,
            "XDG_CACHE_HOME": str(tmp / "cache-home")}


def digest_of(host: str, repo: str, digest: str) -> str:
    hashed = hashlib.sha256()
    with Registry(host) as registry, registry.open_blob(repo, digest) as chunks:
        for chunk in chunks:
            hashed.update(chunk)
    return "sha256:" + hashed.hexdigest()


def uploads_completed(proxy: Proxy) -> Counter[str]:
    """Blob digests whose upload was completed (the PUT with ``digest=``), as the proxy saw them."""
    return Counter(path.split("digest=")[1].split("&")[0].replace("%3A", ":")
                   for _t, method, path in proxy.counters.requests if method == "PUT" and "digest=" in path)


def test_a_parallel_seed_through_a_distant_link_sends_each_blob_once_and_the_manifest_last(
        harness: Harness, tmp_path: Path) -> None:
    src_host = harness.env["CACHEPORT_E2E_REGISTRY"]
    repo = f"wan-{uuid.uuid4().hex[:8]}/cache"
    blobs = push_cache(src_host, repo, [(i % 4 + 1) * 300_000 for i in range(12)])
    with harness.throwaway_registry(tmp_path / "b") as dst_host, \
            Proxy(dst_host, delay=0.01, answer=[Answer("NONE", "^$")]) as proxy:
        run = cacheport(tmp_path, "seed", "--from", "gitlab", "--branch", "main", "--jobs", "4", "--format", "json",
                        env=seed_env(tmp_path, f"{src_host}/{repo}", f"{proxy.host}/{repo}"))
        assert run.returncode == 0, run.stderr
        summary = json.loads(run.stdout)
        assert (summary["copied"], summary["blobs_uploaded"]) == (1, len(blobs))
        assert summary["bytes_uploaded"] == sum(b.size for b in blobs)
        assert uploads_completed(proxy) == Counter({b.digest: 1 for b in blobs}), "every blob exactly once"
        times = [t for t, method, path in proxy.counters.requests if method == "PUT"]
        manifest_at = next(t for t, method, path in proxy.counters.requests
                           if method == "PUT" and "/manifests/" in path)
        assert manifest_at == max(times), "the manifest is the last thing written"
        for blob in blobs:
            assert digest_of(dst_host, repo, blob.digest) == blob.digest


def test_a_reset_mid_blob_and_a_503_with_retry_after_are_retried(harness: Harness, tmp_path: Path) -> None:
    src_host = harness.env["CACHEPORT_E2E_REGISTRY"]
    repo = f"wan-{uuid.uuid4().hex[:8]}/cache"
    blobs = push_cache(src_host, repo, [12 * MiB, 200_000, 300_000])
    faults = [Answer("PUT", "/manifests/main", 503, {"Retry-After": "1"}),
              Answer("HEAD", "/blobs/sha256:", 503, {"Retry-After": "1"})]
    with harness.throwaway_registry(tmp_path / "b") as dst_host, \
            Proxy(dst_host, reset_after=6 * MiB, answer=faults) as proxy:
        run = cacheport(tmp_path, "seed", "--from", "gitlab", "--branch", "main", "--format", "json",
                        env=seed_env(tmp_path, f"{src_host}/{repo}", f"{proxy.host}/{repo}"))
        assert run.returncode == 0, run.stderr
        assert proxy.counters.resets == 1 and [a.hits for a in faults] == [1, 1]
        manifest_puts = [m for _t, m, p in proxy.counters.requests if m == "PUT" and "/manifests/" in p]
        assert len(manifest_puts) == 2, "answered 503 once, then sent again"
        assert json.loads(run.stdout)["copied"] == 1
        for blob in blobs:
            assert digest_of(dst_host, repo, blob.digest) == blob.digest


def test_a_registry_that_keeps_failing_is_one_line_and_the_copy_resumes_later(harness: Harness, tmp_path: Path) -> None:
    src_host = harness.env["CACHEPORT_E2E_REGISTRY"]
    repo = f"wan-{uuid.uuid4().hex[:8]}/cache"
    blobs = push_cache(src_host, repo, [100_000, 100_000])
    failing = Answer("PUT", "/manifests/main", 503, {"Retry-After": "0"}, times=100)
    with harness.throwaway_registry(tmp_path / "b") as dst_host, Proxy(dst_host, answer=[failing]) as proxy:
        env = seed_env(tmp_path, f"{src_host}/{repo}", f"{proxy.host}/{repo}")
        run = cacheport(tmp_path, "seed", "--from", "gitlab", "--branch", "main", env=env)
        assert run.returncode == 1
        [line] = [x for x in run.stdout.splitlines() if x.startswith("✗")]
        assert proxy.host in line and "HTTP 503" in line and "gave up after 6 tries" in line, line
        assert "Traceback" not in run.stderr
        failing.times = 0
        again = cacheport(tmp_path, "seed", "--from", "gitlab", "--branch", "main", "--format", "json", env=env)
        summary = json.loads(again.stdout)
        assert (summary["copied"], summary["blobs_uploaded"], summary["blobs_present"]) == (1, 0, len(blobs))


def test_sigterm_stops_a_chunked_upload_that_the_next_run_continues_byte_for_byte(harness: Harness,
                                                                                   tmp_path: Path) -> None:
    src_host = harness.env["CACHEPORT_E2E_REGISTRY"]
    repo = f"wan-{uuid.uuid4().hex[:8]}/big"
    [big, _config] = push_cache(src_host, repo, [72 * MiB])
    with harness.throwaway_registry(tmp_path / "b") as dst_host, Proxy(dst_host, rate=12e6) as proxy:
        env = seed_env(tmp_path, f"{src_host}/{repo}", f"{proxy.host}/{repo}")
        first = subprocess.Popen([sys.executable, "-m", "cacheport", "seed", "--from", "gitlab", "--branch", "main"],
                                 cwd=tmp_path, env={**clean_environ(), "CACHEPORT_LOAD_PLUGINS": "", **env},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while proxy.counters.up < 8 * MiB and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGTERM)
        _out, err = first.communicate(timeout=120)
        assert first.returncode == 130, err
        assert "interrupted" in err and "resumes" in err and "Traceback" not in err
        sent_first = proxy.counters.up
        assert harness.tags(dst_host, repo) == [], "no manifest before every blob is there"
        [journal] = list((tmp_path / "cache-home" / "cacheport" / ".uploads").iterdir())
        assert stat.S_IMODE(journal.stat().st_mode) == 0o600
        assert 0 < json.loads(journal.read_text())["offset"] < big.size
        proxy.rate = None
        again = cacheport(tmp_path, "seed", "--from", "gitlab", "--branch", "main", "--format", "json", env=env)
        assert again.returncode == 0, again.stderr
        summary = json.loads(again.stdout)
        assert summary["blobs_resumed"] == 1
        assert summary["bytes_uploaded"] < big.size
        assert proxy.counters.up < big.size + 2 * MiB, f"sent {proxy.counters.up} bytes in all, {sent_first} at first"
        assert digest_of(dst_host, repo, big.digest) == big.digest
        assert not list(journal.parent.iterdir()), "the finished upload is forgotten"


def test_a_seed_killed_mid_chunk_starts_that_upload_again_on_distribution_and_completes(harness: Harness,
                                                                                        tmp_path: Path) -> None:
    """What SIGKILL costs on distribution 2.8, honestly: the killed PATCH's bytes reached the upload file, its
    signed state no longer matches, so the registry refuses the upload and the next run sends the blob whole."""
    src_host = harness.env["CACHEPORT_E2E_REGISTRY"]
    repo = f"wan-{uuid.uuid4().hex[:8]}/big"
    [big, _config] = push_cache(src_host, repo, [72 * MiB])
    uploads = tmp_path / "cache-home" / "cacheport" / ".uploads"

    def journaled() -> int:
        for path in uploads.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):  # only a file replaced meanwhile
                return int(json.loads(path.read_text())["offset"])
        return 0

    # capped at 24 MB/s, so the moment to kill in (16 MiB into the second chunk) lasts most of a second
    with harness.throwaway_registry(tmp_path / "b") as dst_host, Proxy(dst_host, rate=24e6) as proxy:
        env = seed_env(tmp_path, f"{src_host}/{repo}", f"{proxy.host}/{repo}")
        first = subprocess.Popen([sys.executable, "-m", "cacheport", "seed", "--from", "gitlab", "--branch", "main"],
                                 cwd=tmp_path, env={**clean_environ(), "CACHEPORT_LOAD_PLUGINS": "", **env},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120  # a chunk journaled, and 16 MiB of the next one at the registry
        while first.poll() is None and time.monotonic() < deadline and not (
                journaled() and proxy.counters.up > journaled() + 16 * MiB):
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        _out, err = first.communicate(timeout=60)
        assert first.returncode == -signal.SIGKILL, f"the seed ended before it was killed:\n{err}"
        assert 0 < journaled() < big.size
        assert harness.tags(dst_host, repo) == [], "no manifest before every blob is there"
        again = cacheport(tmp_path, "seed", "--from", "gitlab", "--branch", "main", "--format", "json", env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        summary = json.loads(again.stdout)
        assert (summary["copied"], summary["blobs_resumed"]) == (1, 0), summary
        assert summary["bytes_uploaded"] >= big.size, "distribution 2.8 refused the upload: sent again from zero"
        assert digest_of(dst_host, repo, big.digest) == big.digest
        assert harness.tags(dst_host, repo) == ["main"]
        assert not list(uploads.glob("*.json")), "the refused upload is forgotten"


def test_status_and_prune_go_through_many_tags_in_parallel_and_print_them_in_order(harness: Harness,
                                                                                   tmp_path: Path) -> None:
    host = harness.env["CACHEPORT_E2E_REGISTRY"]
    repo = f"wan-{uuid.uuid4().hex[:8]}/cache"
    descriptors = push_cache(host, repo, [1000], tag="t00")
    with Registry(host) as registry:
        for i in range(1, 60):
            registry.put_manifest(repo, f"t{i:02d}", Manifest.from_json(
                {"schemaVersion": 2, "mediaType": OCI_INDEX, "annotations": {"n": str(i)},
                 "manifests": [{**d.as_json(), "annotations": {"buildkit/createdat": "2020-01-01T00:00:00Z"}}
                               for d in descriptors]}))
    with Proxy(host, delay=0.01) as proxy:
        env = {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{proxy.host}/{repo}"}
        status = cacheport(tmp_path, "status", "--format", "json", "--jobs", "16", env=env)
        assert status.returncode == 0, status.stderr
        tags = json.loads(status.stdout)["tags"]
        assert [t["tag"] for t in tags] == [f"t{i:02d}" for i in range(60)]
        assert all(t["format"] == "index" for t in tags)
        prune = cacheport(tmp_path, "prune", "--older-than", "30d", "--keep", "t00", "--yes", "--jobs", "16", env=env)
        assert prune.returncode == 0, prune.stderr
        lines = prune.stdout.splitlines()
        assert [line.split()[1] for line in lines[:-1]] == [f"t{i:02d}" for i in range(60)]
        assert lines[-1].startswith("deleted 59 of 60 tag(s)")
    assert harness.tags(host, repo) == ["t00"]


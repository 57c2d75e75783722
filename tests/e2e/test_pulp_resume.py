"""A seed into the real Pulp (scripts/pulp-up: nginx in front of pulp-container) killed with SIGKILL in the
middle of a chunk, then run again: it continues from the chunks Pulp holds, and the blob and manifest arrive.

Why it can: nginx buffers a request body (proxy_request_buffering, on by default) and passes only whole ones
to Pulp, whose PATCH handler appends a chunk in one transaction; so a killed PATCH leaves no trace and the
upload's Range is the chunks that were answered. bench/wan_proxy.py counts the bytes; nothing is timed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.wan_proxy import Proxy
from cacheport.oci.auth import Credentials
from cacheport.oci.format import OCI_MANIFEST
from cacheport.oci.registry import Registry
from tests.fakes.caches import MiB, push_cache

from .harness import Harness, Pulp, clean_environ

BLOB = 128 * MiB  # four chunks of 32 MiB, the least a chunk is


def journaled(home: Path) -> int:
    """The offset the seed's upload journal holds for its one open upload (0 while there is none)."""
    for path in (home / "cacheport" / ".uploads").glob("*.json"):
        try:
            return int(json.loads(path.read_text())["offset"])
        except (OSError, ValueError, KeyError):  # written by os.replace, so only a vanished file
            continue
    return 0


def test_a_seed_into_pulp_killed_mid_chunk_resumes_from_the_chunks_pulp_holds(
        harness: Harness, pulp: Pulp, tmp_path: Path) -> None:
    src_host = harness.env["CACHEPORT_E2E_REGISTRY"]
    src_repo, repo = f"resume-{uuid.uuid4().hex[:8]}/big", f"resume-{uuid.uuid4().hex[:8]}/cache"
    [big, _config] = push_cache(src_host, src_repo, [BLOB])
    home = tmp_path / "cache-home"
    with Proxy(pulp.registry) as proxy:
        if importlib.util.find_spec("cacheport_pulp") is not None:
            new = {"CACHEPORT_BACKEND": "pulp", "CACHEPORT_PULP__URL": f"http://{proxy.host}",
                   "CACHEPORT_PULP__REPOSITORY": repo}
        else:  # the pulp plugin is not installed: the registry backend, set up the way Pulp needs
            new = {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{proxy.host}/{repo}",
                   "CACHEPORT_REGISTRY__IMAGE_MANIFEST": "true", "CACHEPORT_REGISTRY__OCI_MEDIATYPES": "true",
                   "CACHEPORT_REGISTRY__USERNAME_ENV": "PULP_USERNAME",
                   "CACHEPORT_REGISTRY__PASSWORD_ENV": "PULP_PASSWORD"}
        env = {**clean_environ(), "CACHEPORT_GITLAB__REF": f"{src_host}/{src_repo}", "XDG_CACHE_HOME": str(home),
               "PULP_USERNAME": pulp.user, "PULP_PASSWORD": pulp.password, **new}
        first = subprocess.Popen([sys.executable, "-m", "cacheport", "seed", "--from", "gitlab", "--branch", "main"],
                                 cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True)
        # A chunk was answered and journaled, and half of the next one has gone out: then kill it.
        deadline = time.monotonic() + 300
        while first.poll() is None and time.monotonic() < deadline:
            held = journaled(home)
            if held and proxy.counters.up > held + 16 * MiB:
                break
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        _out, err = first.communicate(timeout=60)
        assert first.returncode == -signal.SIGKILL, f"the seed ended before it was killed:\n{err}"
        held = journaled(home)
        assert 0 < held < BLOB

        again = subprocess.run([sys.executable, "-m", "cacheport", "seed", "--from", "gitlab", "--branch", "main",
                                "--format", "json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    summary = json.loads(again.stdout)
    assert (summary["copied"], summary["blobs_resumed"]) == (1, 1), summary
    # What Pulp held is not sent again: at most the chunks after the journaled offset (the killed one
    # included), never the whole blob.
    assert summary["bytes_uploaded"] <= BLOB - held + 1024, summary
    assert summary["bytes_uploaded"] < BLOB
    with Registry(pulp.registry, Credentials(pulp.user, pulp.password)) as client:
        stored = client.get_manifest(repo, "main")
        assert stored is not None and stored.media_type == OCI_MANIFEST
        assert [layer["digest"] for layer in stored.json["layers"]] == [big.digest]
        hashed = hashlib.sha256()
        with client.open_blob(repo, big.digest) as chunks:
            for chunk in chunks:
                hashed.update(chunk)
    assert "sha256:" + hashed.hexdigest() == big.digest
    assert not list((home / "cacheport" / ".uploads").glob("*.json")), "the finished upload is forgotten"

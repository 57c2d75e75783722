"""Registry work at a distance, against the in-process fake registry: retries (429/5xx, Retry-After, dropped
connections), resumable chunked uploads, the upload journal, parallel seed, status and prune, and the progress
reporters. The real registry behind a latency proxy: tests/e2e/test_wan.py.
"""

from __future__ import annotations

import hashlib
import json
import stat
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cacheport.cli.seed import LineReporter
from cacheport.context import Context
from cacheport.errors import Interrupted, RegistryError
from cacheport.kit import RegistryCache, layout_store, registry_store
from cacheport.oci.auth import Credentials
from cacheport.oci.format import Descriptor, Manifest, sha256_digest, synthetic_cache
from cacheport.oci.layout import Layout
from cacheport.oci.registry import Registry
from cacheport.oci.repository import RegistryRepository
from cacheport.oci.retry import RetryPolicy, retry_after, send_with_retries
from cacheport.oci.upload import OpenUpload, UploadJournal, UploadPolicy
from cacheport.ops import inventory
from cacheport.ops.seed import Pair, Side, seed
from cacheport.records import EntryRequest

from .test_distribution import FakeRegistry, cache_index

FAST = RetryPolicy(attempts=4, base=0.01, cap=5.0)


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    with FakeRegistry() as registry:
        yield registry

CTX = Context("gitlab", "group/app", branch="main", default_branch="main")


def blob_of(size: int, seed_: bytes = b"x") -> tuple[bytes, Descriptor]:
    data = hashlib.sha256(seed_).digest() * (size // 32 + 1)
    data = data[:size]
    return data, Descriptor("application/octet-stream", sha256_digest(data), size)


class Source:
    """A blob's bytes readable from any offset, in small chunks; remembers the offsets it was opened at."""

    def __init__(self, data: bytes, step: int = 1 << 16) -> None:
        self.data, self.step, self.opened = data, step, list[int]()

    @contextmanager
    def open(self, offset: int) -> Iterator[Iterator[bytes]]:
        self.opened.append(offset)
        yield iter([self.data[i:i + self.step] for i in range(offset, len(self.data), self.step)])


def source_of(data: bytes) -> Source:
    return Source(data)


def layout_with(directory: Path, names: list[str]) -> Layout:
    """A directory store holding one small cache under each of these names."""
    layout = Layout(directory)
    blobs, manifest = synthetic_cache(False)
    for d, data in blobs:
        layout.put_blob(d, [data])
    for name in names:
        layout.put_manifest(name, manifest)
    return layout


# --- retries ----------------------------------------------------------------------------------------------------


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    assert retry_after("3") == 3.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after("soon") is None and retry_after(None) is None


def test_a_503_with_retry_after_is_retried_after_waiting_that_long(fake: FakeRegistry) -> None:
    fake.faults.append(("GET", r"/v2/$", 503, {"Retry-After": "2"}))
    waits: list[float] = []
    with Registry(fake.host) as client:
        response = send_with_retries(lambda: client._client.get("/v2/"), FAST, sleep=waits.append)
    assert response.status_code == 200 and waits == [2.0]


def test_429_and_5xx_are_retried_a_bounded_number_of_times_then_one_line_names_the_registry(fake: FakeRegistry) -> None:
    fake.faults += [("GET", "/tags/list", 429, {}), ("GET", "/tags/list", 502, {})]
    with Registry(fake.host, retry=FAST) as client:
        cache_index(fake, "r/c", "main")
        assert client.list_tags("r/c") == ["main"]
        fake.faults += [("GET", "/tags/list", 503, {})] * 10
        with pytest.raises(RegistryError) as caught:
            client.list_tags("r/c")
    message = str(caught.value)
    assert message.startswith(f"{fake.host}: GET /v2/r/c/tags/list: HTTP 503") and "gave up after 4 tries" in message
    assert "\n" not in message and caught.value.status == 503
    assert [m for m, p in fake.log if "tags/list" in p].count("GET") == 2 + 1 + 4


def test_a_retry_after_beyond_the_cap_is_not_waited_for(fake: FakeRegistry) -> None:
    fake.faults.append(("GET", r"/v2/$", 503, {"Retry-After": "3600"}))
    with Registry(fake.host, retry=FAST) as client, pytest.raises(RegistryError, match="HTTP 503"):
        client.ping()
    assert len(fake.log) == 1


def test_a_dropped_connection_is_retried_for_requests_that_can_be_sent_again() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json={"tags": ["a"]})

    with Registry("reg.example", transport=httpx.MockTransport(handler), retry=FAST) as client:
        assert client.list_tags("r") == ["a"]
    assert calls == ["GET", "GET"]


def test_a_patch_or_a_streamed_body_is_never_sent_twice_by_the_retry_layer(fake: FakeRegistry) -> None:
    fake.faults.append(("PATCH", "/uploads/", 503, {}))
    data, blob = blob_of(5000)
    in_patches = UploadPolicy(chunked_from=4096, patch_min=4096, patch_max=4096)
    with Registry(fake.host, retry=FAST, upload_policy=in_patches) as client, \
            pytest.raises(RegistryError, match="HTTP 503"):
        client.upload_blob("r/c", blob.digest, blob.size, iter([data]))
    assert [m for m, _ in fake.log].count("PATCH") == 1


# --- resumable uploads ------------------------------------------------------------------------------------------


def test_a_large_blob_goes_in_patches_and_a_reset_mid_patch_resumes_from_the_registrys_offset(
        fake: FakeRegistry) -> None:
    policy = UploadPolicy(chunked_from=1 << 16, patch_min=1 << 16, patch_max=1 << 16)
    data, blob = blob_of(5 * (1 << 16) + 123)
    fake.cut_at = 20_000  # the registry keeps this much of the first PATCH, then the connection drops
    source = source_of(data)
    with Registry(fake.host, retry=FAST, upload_policy=policy) as client:
        sent = client.upload_resumable("r/c", blob.digest, blob.size, source.open)
        assert client.counters.blobs_uploaded == 1
    assert fake.blobs["r/c"][blob.digest] == data  # byte-identical (and the registry checked the digest)
    assert len(fake.methods("POST")) == 1, "the same upload was continued, not restarted"
    assert [m for m, p in fake.log if "/uploads/" in p].count("GET") == 1  # asked once where it stood
    assert source.opened == [0, 20_000], "the source is read again from the offset the registry reported"
    assert sent >= blob.size  # what went out before the drop, plus the rest


def test_no_patch_is_more_than_a_tenth_of_its_blob_so_a_hard_kill_loses_at_most_that(
        fake: FakeRegistry) -> None:
    policy = UploadPolicy(chunked_from=1 << 16, patch_min=1 << 16,
                          patch_max=1 << 20,  # what the rate alone would allow, here
                          patch_seconds=1e6)  # whatever this machine's speed
    data, blob = blob_of(40 * (1 << 16))
    with Registry(fake.host, retry=FAST, upload_policy=policy) as client:
        client.upload_resumable("r/c", blob.digest, blob.size, source_of(data).open)
    assert fake.blobs["r/c"][blob.digest] == data
    # the first at _PATCH_MIN, then a tenth of the blob (4 × 64 KiB) each: 1 + ⌈39/4⌉, not 1 + ⌈39/16⌉
    assert len(fake.methods("PATCH")) == 11


def test_a_token_that_expires_mid_upload_is_renewed_and_the_upload_goes_on_from_where_it_stood(
        fake: FakeRegistry) -> None:
    policy = UploadPolicy(chunked_from=1 << 20, patch_min=2 << 20)  # streamed, not held: it can't be sent again
    fake.auth, fake.expire_on_patch = "bearer", 1  # the first PATCH meets a token that has just expired
    data, blob = blob_of(5 << 20)
    with Registry(fake.host, Credentials(fake.user, fake.password), retry=FAST, upload_policy=policy) as client:
        sent = client.upload_resumable("r/c", blob.digest, blob.size, source_of(data).open)
    assert fake.blobs["r/c"][blob.digest] == data
    assert fake.tokens_issued >= 2, "a new token after the expiry"
    assert sent >= blob.size


def test_an_upload_left_open_by_an_earlier_run_is_continued_from_the_journal(
        fake: FakeRegistry, tmp_path: Path) -> None:
    policy = UploadPolicy(chunked_from=1 << 16, patch_min=1 << 16, patch_max=1 << 16)
    data, blob = blob_of(4 * (1 << 16))
    patches = {"n": 0}

    def stop_after_two() -> bool:
        patches["n"] = len(fake.methods("PATCH"))
        return patches["n"] >= 2

    with Registry(fake.host, uploads=UploadJournal(tmp_path / "j"), upload_policy=policy) as first, \
            pytest.raises(Interrupted):
        first.upload_resumable("r/c", blob.digest, blob.size, source_of(data).open, stopping=stop_after_two)
    assert blob.digest not in fake.blobs.get("r/c", {})
    [state] = list((tmp_path / "j").iterdir())
    assert stat.S_IMODE(state.stat().st_mode) == 0o600 and stat.S_IMODE((tmp_path / "j").stat().st_mode) == 0o700
    assert json.loads(state.read_text())["offset"] == 2 * (1 << 16)
    again = source_of(data)
    with Registry(fake.host, uploads=UploadJournal(tmp_path / "j"), upload_policy=policy) as second:
        sent = second.upload_resumable("r/c", blob.digest, blob.size, again.open)
    assert again.opened == [2 * (1 << 16)] and sent == 2 * (1 << 16)
    assert fake.blobs["r/c"][blob.digest] == data and len(fake.methods("POST")) == 1
    assert not list((tmp_path / "j").iterdir()), "a finished upload is forgotten"


def test_an_upload_the_registry_lost_starts_again_from_zero(fake: FakeRegistry, tmp_path: Path) -> None:
    data, blob = blob_of(3 * (1 << 16))
    journal = UploadJournal(tmp_path)
    journal.put(fake.host, "r/c", blob.digest, OpenUpload(f"http://{fake.host}/v2/r/c/blobs/uploads/gone?_state=x", 99, 1e10))
    with Registry(fake.host, uploads=journal, upload_policy=UploadPolicy(chunked_from=1 << 16)) as client:
        assert client.upload_resumable("r/c", blob.digest, blob.size, source_of(data).open) == blob.size
    assert fake.blobs["r/c"][blob.digest] == data


def test_a_small_blob_is_one_put_and_a_reset_sends_it_again_whole(fake: FakeRegistry) -> None:
    data, blob = blob_of(200_000)
    fake.cut_at = 50_000
    with Registry(fake.host, retry=FAST) as client:
        sent = client.upload_resumable("r/c", blob.digest, blob.size, source_of(data).open)
    assert fake.blobs["r/c"][blob.digest] == data and sent > blob.size
    assert not fake.methods("PATCH") and len(fake.methods("POST")) == 2


def test_the_journal_holds_no_credentials_and_ignores_stale_or_foreign_entries(tmp_path: Path) -> None:
    journal = UploadJournal(tmp_path)
    journal.put("h", "r", "sha256:1", OpenUpload("http://h/v2/r/blobs/uploads/u?_state=s", 10, 1e10))
    assert journal.get("h", "r", "sha256:1") == OpenUpload("http://h/v2/r/blobs/uploads/u?_state=s", 10, 1e10)
    assert UploadJournal(tmp_path).get("h", "r", "sha256:1") is not None  # a new run reads it back
    assert UploadJournal(tmp_path).get("h", "r", "sha256:2") is None
    journal.put("h", "r", "sha256:3", OpenUpload("http://h/x", 1, 0.0))  # opened in 1970: expired
    assert UploadJournal(tmp_path).get("h", "r", "sha256:3") is None
    assert "password" not in "".join(p.read_text() for p in tmp_path.iterdir())


# --- concurrency ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_one_client_in_many_threads_shares_its_login_and_counts_every_request(fake: FakeRegistry, auth: str) -> None:
    fake.auth = auth
    index = cache_index(fake, "src/cache", "main", layers=6)
    with Registry(fake.host, Credentials("u", "p")) as client, ThreadPoolExecutor(8) as pool:
        # every thread's first request is refused at once, before any has learnt how to log in
        sizes = list(pool.map(lambda d: client.blob_size("src/cache", d.digest), index.descriptors() * 5))
        assert sizes == [d.size for d in index.descriptors()] * 5
        assert client.counters.requests == len(fake.log)
        assert client.counters.tokens == len(fake.token_requests) <= 8


def store_side(host: str, repo: str, tag: str, image_manifest: bool = False) -> Side:
    cache = RegistryCache.from_options(f"{host}/{repo}", {"image-manifest": image_manifest})
    return Side("x", registry_store(cache, EntryRequest({}, CTX, None, "", {})), tag)


def test_a_parallel_seed_sends_each_blob_once_writes_manifests_last_and_reports_in_order() -> None:
    with FakeRegistry() as a, FakeRegistry() as b:
        shared = a.add_blob("old/cache", b"shared layer" * 1000)
        for tag in ("t1", "t2", "t3", "t4"):
            index = cache_index(a, "old/cache", tag, layers=5)
            doc = index.json
            doc["manifests"].insert(0, {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                        "digest": shared, "size": len(b"shared layer" * 1000)})
            a.add_manifest("old/cache", tag, doc)
        pairs = [Pair(t, store_side(a.host, "old/cache", t), store_side(b.host, "new/cache", t))
                 for t in ("t1", "t2", "t3", "t4")]
        lines: list[str] = []
        outcomes = seed(pairs, jobs=4, on_done=lambda o: lines.append(o.pair.name))
        assert lines == ["t1", "t2", "t3", "t4"] and [o.status for o in outcomes] == ["copied"] * 4
        puts = Counter(p.split("digest=")[1].replace("%3A", ":") for m, p in b.log if m == "PUT" and "digest=" in p)
        assert set(puts.values()) == {1}, "every blob arrives exactly once"
        assert puts.keys() == set(b.blobs["new/cache"])
        assert outcomes[0].uploaded == 7 and all(o.present >= 1 for o in outcomes[1:])  # t1 owns the shared blob
        for digest, data in b.blobs["new/cache"].items():
            assert sha256_digest(data) == digest
        arrived = {p.split("digest=")[1].replace("%3A", ":"): i for i, (m, p) in enumerate(b.log)
                   if m == "PUT" and "digest=" in p}
        for i, (method, path) in enumerate(b.log):
            if method == "PUT" and "/manifests/" in path:  # each manifest after every blob it names
                tag = path.rsplit("/", 1)[1]
                named = [d.digest for d in a.manifests["old/cache"] and _manifest(a, tag).descriptors()]
                assert all(arrived[d.replace("%3A", ":")] < i for d in named)


def test_seed_between_a_directory_and_a_registry_works_in_parallel_both_ways(tmp_path: Path) -> None:
    with FakeRegistry() as a, FakeRegistry() as b:
        cache_index(a, "old/cache", "main", layers=8)
        local = Side("local", layout_store(str(tmp_path / "dir")), "latest")
        [down] = seed([Pair("main", store_side(a.host, "old/cache", "main"), local)], jobs=4)
        assert (down.status, down.uploaded) == ("copied", 9)
        [up] = seed([Pair("main", local, store_side(b.host, "new/cache", "main"))], jobs=4)
        assert (up.status, up.uploaded) == ("copied", 9)
        assert b.blobs["new/cache"] == a.blobs["old/cache"]


def test_status_reads_manifests_in_parallel_and_keeps_the_sorted_order(fake: FakeRegistry) -> None:
    index = cache_index(fake, "r/c", "t00")
    for i in range(1, 40):
        fake.add_manifest("r/c", f"t{i:02d}", {**index.json, "annotations": {"n": str(i)}})
    session = RegistryRepository(Registry(fake.host), "r/c")
    serial = inventory.list_caches(session, jobs=1)
    parallel = inventory.list_caches(session, jobs=16)
    assert parallel == serial and [t.tag for t in parallel] == [f"t{i:02d}" for i in range(40)]
    requests_before = len(fake.log)
    assert inventory.delete_each(session, parallel[1::2], jobs=8) == [f"t{i:02d}" for i in range(1, 40, 2)]
    assert session.names() == [f"t{i:02d}" for i in range(0, 40, 2)]
    # each by the manifest it was listed with: one DELETE a tag, no lookup first
    assert [method for method, _ in fake.log[requests_before:]].count("HEAD") == 0


def test_prune_deletes_what_it_listed_so_a_tag_pushed_again_since_keeps_its_new_cache(
        fake: FakeRegistry, tmp_path: Path) -> None:
    index = cache_index(fake, "r/c", "old")
    fake.add_manifest("r/c", "moved", {**index.json, "annotations": {"n": "1"}})
    registry = RegistryRepository(Registry(fake.host), "r/c")
    layout = layout_with(tmp_path, ["moved", "old"])
    for session, push_again in (
            (registry, lambda: fake.add_manifest("r/c", "moved", {**index.json, "annotations": {"n": "2"}})),
            (layout, lambda: layout.put_manifest("moved", synthetic_cache(True)[1]))):
        listed = inventory.list_caches(session)
        push_again()  # a job exports this branch's cache again while prune is deciding
        assert inventory.delete_each(session, listed, jobs=4) == ["old"]  # what is gone afterwards
        [kept] = inventory.list_caches(session)
        assert kept.tag == "moved" and kept.digest != listed[0].digest


def test_a_directory_store_takes_deletes_from_several_threads(tmp_path: Path) -> None:
    names = [f"n{i}" for i in range(20)]
    layout = layout_with(tmp_path, names)
    inventory.delete_each(layout, inventory.list_caches(layout)[:10], jobs=8)
    assert layout.names() == sorted(names)[10:]


def test_line_reporter_prints_a_plain_line_at_most_every_interval() -> None:
    now = [0.0]
    lines: list[str] = []
    reporter = LineReporter(lines.append, every=10.0, clock=lambda: now[0])
    reporter.planned(4, 4_000_000)
    for _ in range(30):
        now[0] += 1.0
        reporter.advance(100_000)
    reporter.blob_done(1_000_000, 0)
    assert len(lines) == 3
    assert lines[0].startswith("seed: 1.0 MB of 4.0 MB sent (25%), 0 of 4 blobs, ") and "left" in lines[0]
    assert lines[-1].startswith("seed: 3.0 MB of 4.0 MB sent (75%), 0 of 4 blobs, ")
    now[0] += 10.0
    reporter.blob_done(1_000_000, 0)  # a blob found already there: nothing left to send for it
    assert lines[-1].startswith("seed: 3.0 MB of 3.0 MB sent (100%), 2 of 4 blobs, ")


def test_progress_from_many_threads_adds_up() -> None:
    reporter = LineReporter(lambda _line: None, every=1e9)
    reporter.planned(1, 800_000)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _i: [reporter.advance(1) for _ in range(100_000)], range(8)))
    assert reporter.sent == 800_000


def _manifest(registry: FakeRegistry, tag: str) -> Manifest:
    media_type, data = registry.manifests["old/cache"][tag]
    return Manifest.from_bytes(data, media_type)


def _seed_command(env: dict[str, str], terminal: bool) -> tuple[int, str, str]:
    """``cacheport seed`` with stderr on a pseudo-terminal (or a pipe): exit status, stdout, stderr."""
    import os
    import pty
    import subprocess
    import sys

    args = [sys.executable, "-m", "cacheport", "seed", "--from", "gitlab", "--branch", "main"]
    if not terminal:
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
        return proc.returncode, proc.stdout, proc.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=follower, env={**env, "COLUMNS": "120"})
    os.close(follower)
    seen = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        seen += data
    out = proc.stdout.read().decode() if proc.stdout else ""
    proc.wait(timeout=120)
    os.close(leader)
    return proc.returncode, out, seen.decode(errors="replace")


def test_the_progress_bar_is_drawn_on_a_terminal_only(clean_env: dict[str, str]) -> None:
    with FakeRegistry() as old, FakeRegistry() as new:
        cache_index(old, "app/cache", "main", layers=3)
        Path("cacheport.toml").write_text(f'backend = "registry"\n[registry]\nref = "{new.host}/new/cache"\n'
                                          f'[gitlab]\nref = "{old.host}/app/cache"\n')
        env = {**clean_env, "CACHEPORT_LOAD_PLUGINS": ""}
        code, out, err = _seed_command(env, terminal=True)
        assert code == 0, err
        assert "blobs 4/4" in err and "\x1b[" in err  # rich's bar, drawn with terminal controls
        assert out.startswith("✓ main: ")
        code, out, err = _seed_command({**env, "CACHEPORT_REGISTRY__REF": f"{new.host}/other"}, terminal=False)
        assert code == 0 and "blobs" not in err and "\x1b[" not in err  # a short copy in a log: no progress lines


def test_the_benchmark_proxy_with_nothing_to_add_passes_every_byte_both_ways_and_counts_them(
        fake: FakeRegistry) -> None:
    from bench.wan_proxy import Proxy

    data = bytes(range(256)) * (12 << 12)  # 12 MiB, more than one pipe's worth
    with Proxy(fake.host) as proxy, Registry(proxy.host) as registry:
        assert "spliced" in proxy.describe()
        digest = sha256_digest(data)
        registry.upload_blob("r/c", digest, len(data), [data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)])
        with registry.open_blob("r/c", digest) as chunks:
            assert b"".join(chunks) == data
        assert proxy.counters.up > len(data) and proxy.counters.down > len(data)
    assert fake.blobs["r/c"][digest] == data


def test_prune_deletes_by_name_through_a_store_whose_delete_takes_no_digest(tmp_path: Path) -> None:
    layout = layout_with(tmp_path, ["a", "b"])

    class OldSession:  # a plugin's session from before delete took the listed digest
        names = layout.names

        def delete(self, name: str) -> bool:
            return layout.delete(name)

    listed = inventory.list_caches(layout)
    assert inventory.delete_each(OldSession(), listed[:1], jobs=2) == ["a"]  # type: ignore[arg-type]
    assert layout.names() == ["b"]


@pytest.mark.parametrize(("mode", "terminal", "kind"), [
    ("auto", False, "LineReporter"), ("plain", True, "LineReporter"), ("quiet", True, "Reporter"),
    ("quiet", False, "Reporter"), ("tty", False, "BarReporter"), ("auto", True, "BarReporter")])
def test_seed_progress_follows_the_flag_and_else_the_terminal(mode: str, terminal: bool, kind: str) -> None:
    from cacheport.cli.seed import _reporter

    with _reporter(mode, terminal) as reporter:
        assert type(reporter).__name__ == kind

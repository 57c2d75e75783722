"""Registry work at a distance, against the in-process fake registry (tests/fakes/registry.py): parallel seed,
status and prune, and the progress reporters. Retries and resumable uploads: tests/oci/. The real registry behind
a latency proxy: tests/e2e/test_wan.py.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cacheport.cli.seed import LineReporter
from cacheport.context import Context
from cacheport.kit import RegistryCache, layout_store, registry_store
from cacheport.oci.format import Manifest, sha256_digest, synthetic_cache
from cacheport.oci.layout import Layout
from cacheport.oci.registry import Registry
from cacheport.oci.repository import RegistryRepository
from cacheport.ops import inventory
from cacheport.ops.seed import Pair, Side, seed
from cacheport.records import EntryRequest
from tests.fakes.registry import FakeRegistry, cache_index

CTX = Context("gitlab", "group/app", branch="main", default_branch="main")


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


# --- resumable uploads ------------------------------------------------------------------------------------------


# --- concurrency ------------------------------------------------------------------------------------------------


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

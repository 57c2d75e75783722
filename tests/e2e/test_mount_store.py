"""Cache mount archives in every backend with a store, for real: distribution 2.8 (the registry backend, and
the gitlab backend on the registry with basic auth), Pulp and a local directory each take the mounts artifact;
fetch gives back the same bytes, and a second publish of the same archives uploads nothing. Then the commands:
status shows the mounts beside their branch's cache, prune removes them with it, and seed carries them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from cacheport.cli.session import Options, Session
from cacheport.mounts import CacheMount, MountLimits
from cacheport.mounts.artifact import mounts_name
from cacheport.oci.format import Manifest, synthetic_cache
from cacheport.ops.mounts_store import fetch, publish
from cacheport.records import CacheStore
from tests.fakes.caches import mount_archive

from .harness import Harness, Pulp, clean_environ, gitlab_env, pulp_env

LIMITS = MountLimits(per_mount=64 << 20, total=128 << 20)
PIP = CacheMount("pip", "/root/.cache/pip", "locked", 0, 0, 0o755)
GO = CacheMount("gomod", "/go/pkg/mod", "shared", 1000, 1000, 0o700)


def backend_env(which: str, servers: Harness, pulp: Pulp | None, tmp_path: Path) -> dict[str, str]:
    """A GitLab job on ``main`` whose backend is ``which``, each in a repository (or directory) of its own."""
    run = uuid.uuid4().hex[:8]
    if which == "registry":
        reg = servers.env["CACHEPORT_E2E_REGISTRY"]
        return {**gitlab_env(f"{reg}/unused", "main"), "CACHEPORT_BACKEND": "registry",
                "CACHEPORT_REGISTRY__REF": f"{reg}/e2e/mounts-{run}"}
    if which == "fixed":  # one cache for every branch, as hand-written pipelines have: one mounts name too
        reg = servers.env["CACHEPORT_E2E_REGISTRY"]
        return {**gitlab_env(f"{reg}/unused", "main"), "CACHEPORT_BACKEND": "registry",
                "CACHEPORT_REGISTRY__REF": f"{reg}/e2e/mounts-{run}:buildcache"}
    if which == "gitlab":
        reg = servers.env["CACHEPORT_E2E_AUTH_REGISTRY"]
        return gitlab_env(f"{reg}/e2e/mounts-{run}", "main", CI_REGISTRY_USER=servers.env["CACHEPORT_E2E_AUTH_USER"],
                          CI_REGISTRY_PASSWORD=servers.env["CACHEPORT_E2E_AUTH_PASSWORD"])
    if which == "pulp":
        assert pulp is not None
        return pulp_env(pulp, f"E2E/Mounts-{run}")
    return {**gitlab_env("registry.invalid/unused", "main"), "CACHEPORT_BACKEND": "local",
            "CACHEPORT_LOCAL__SRC": str(tmp_path / "local-cache")}


def store_of(env: dict[str, str]) -> CacheStore:
    return Session("status", Options(), environ={**clean_environ(), **env}).store()


def put_layer_cache(store: CacheStore, name: str) -> None:
    """A small BuildKit cache under ``name``, in the format the store's backend exports."""
    blobs, manifest = synthetic_cache(image_manifest=store.format == "image-manifest")
    manifest = Manifest.from_json({**manifest.json, "annotations": {"e2e.name": name}})  # each cache its own
    with store.open() as session:
        for descriptor, data in blobs:
            session.put_blob(descriptor, [data])
        session.put_manifest(name, manifest)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no cacheport.toml of the checkout's is read
    return tmp_path


@pytest.mark.parametrize("which", ["registry", "fixed", "gitlab", "pulp", "local"])
def test_every_store_keeps_the_mounts_artifact(which: str, servers: Harness, in_tmp: Path,
                                               request: pytest.FixtureRequest) -> None:
    pulp = request.getfixturevalue("pulp") if which == "pulp" else None
    store = store_of(backend_env(which, servers, pulp, in_tmp))
    name = store.name_for("main")
    mine = [mount_archive(in_tmp / "pip.tgz", PIP, {"wheels/a.whl": os.urandom(2 << 20), "http/x": b"cached"}),
            mount_archive(in_tmp / "go.tgz", GO, {"cache/download/m.zip": os.urandom(100_000)})]
    with store.open() as session:
        saved = publish(session, name, mine, limits=LIMITS)
        assert [(o.action, o.name) for o in saved] == [("saved", mounts_name(name))] * 2, saved
        assert mounts_name(name) in session.names()

        sent: list[str] = []
        put_blob, put_manifest = session.put_blob, session.put_manifest
        session.put_blob = lambda d, chunks, progress=None: (sent.append(d.digest),  # type: ignore[method-assign]
                                                             put_blob(d, chunks, progress))
        session.put_manifest = lambda ref, m: (sent.append(ref), put_manifest(ref, m))  # type: ignore[method-assign]
        again = publish(session, name, mine, limits=LIMITS)
        assert [o.action for o in again] == ["unchanged", "unchanged"] and sent == []

        got, outcomes = fetch(session, [store.name_for("feature/x"), name], in_tmp / "restored", limits=LIMITS)
    assert [(o.id, o.action) for o in outcomes] == [("pip", "restored"), ("gomod", "restored")], outcomes
    assert [g.path.read_bytes() for g in got] == [a.path.read_bytes() for a in mine]
    assert [g.mount for g in got] == [PIP, GO]


def cacheport(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], capture_output=True, text=True, cwd=cwd,
                          env={**clean_environ(), **env}, timeout=300)


def status(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    out = cacheport("status", "--format", "json", env=env, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_status_shows_prune_removes_and_seed_carries_the_mounts(servers: Harness, pulp: Pulp, in_tmp: Path) -> None:
    env = backend_env("registry", servers, None, in_tmp)
    store = store_of(env)
    mine = [mount_archive(in_tmp / "pip.tgz", PIP, {"wheels/a.whl": os.urandom(1 << 20)})]
    for branch in ("main", "feature-a"):
        put_layer_cache(store, store.name_for(branch))
        with store.open() as session:
            assert [o.action for o in publish(session, store.name_for(branch), mine, limits=LIMITS)] == ["saved"]

    doc = status(env, in_tmp)
    rows = {t["tag"]: t for t in doc["tags"]}
    assert set(rows) == {"main", "feature-a"}  # the mounts are beside their caches, not branches of their own
    assert rows["main"]["mounts"]["tag"] == "main.mounts" and rows["main"]["mounts"]["size"] > mine[0].size
    assert rows["main"]["mounts"]["updated"]
    table = cacheport("status", env=env, cwd=in_tmp)
    assert "MOUNTS" in table.stdout.splitlines()[1] and "1.0 MB, " in table.stdout, table.stdout

    # seed carries main's mounts into Pulp, which takes them as they are
    into = pulp_env(pulp, f"E2E/Mounts-{uuid.uuid4().hex[:8]}")
    seeded = cacheport("seed", "--from", "registry", "--to", "pulp", "--branch", "main",
                       env={**into, "CACHEPORT_REGISTRY__REF": env["CACHEPORT_REGISTRY__REF"]}, cwd=in_tmp)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    assert "✓ main (mounts): " in seeded.stdout and ":main.mounts" in seeded.stdout, seeded.stdout
    pulp_store = store_of(into)
    with pulp_store.open() as session:
        got, outcomes = fetch(session, [pulp_store.name_for("main")], in_tmp / "from-pulp", limits=LIMITS)
    assert [o.action for o in outcomes] == ["restored"], outcomes
    assert got[0].path.read_bytes() == mine[0].path.read_bytes()
    again = cacheport("seed", "--from", "registry", "--to", "pulp", "--branch", "main",
                      env={**into, "CACHEPORT_REGISTRY__REF": env["CACHEPORT_REGISTRY__REF"]}, cwd=in_tmp)
    assert "= main (mounts): " in again.stdout and "up to date" in again.stdout, again.stdout

    # prune takes a branch's mounts with its cache, and leaves the others' alone
    pruned = cacheport("prune", "feature-a", "--yes", env=env, cwd=in_tmp)
    assert pruned.returncode == 0, pruned.stderr
    assert "with its cache mounts" in pruned.stdout, pruned.stdout
    reg, repo = env["CACHEPORT_REGISTRY__REF"].split("/", 1)
    assert servers.tags(reg, repo) == ["main", "main.mounts"], pruned.stdout

    # --branches-gone never takes a .mounts name for a branch: mounts whose cache is gone follow their branch
    with store.open() as session:
        for branch in ("feature-b", "spike"):
            publish(session, store.name_for(branch), mine, limits=LIMITS)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "x"], ["branch", "feature-b"]):
        subprocess.run([*git, *args], cwd=in_tmp, check=True, capture_output=True)
    gone = cacheport("prune", "--branches-gone", "--yes", env=env, cwd=in_tmp)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert servers.tags(reg, repo) == ["feature-b.mounts", "main", "main.mounts"], gone.stdout


def test_a_local_directorys_mounts_show_in_status(servers: Harness, in_tmp: Path) -> None:
    env = backend_env("local", servers, None, in_tmp)
    store = store_of(env)
    put_layer_cache(store, "latest")
    with store.open() as session:
        publish(session, "latest", [mount_archive(in_tmp / "pip.tgz", PIP, {"x": b"y"})], limits=LIMITS)
    doc = status(env, in_tmp)
    assert [(t["tag"], t["mounts"]["tag"]) for t in doc["tags"]] == [("latest", "latest.mounts")]
    assert doc["directory"]["stale_blobs"] == 0  # the mounts' blobs count as used

    # seed --all: the directory's one cache becomes the default branch's, and its mounts go beside it
    into = backend_env("registry", servers, None, in_tmp)
    seeded = cacheport("seed", "--from", "local", "--to", "registry", "--all",
                       env={**into, "CACHEPORT_LOCAL__SRC": env["CACHEPORT_LOCAL__SRC"]}, cwd=in_tmp)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    reg, repo = into["CACHEPORT_REGISTRY__REF"].split("/", 1)
    assert servers.tags(reg, repo) == ["main", "main.mounts"], seeded.stdout

"""Exports that pay for themselves (#22), against a real registry: under ``exports = "when-changed"`` an
unchanged rebuild writes no export (the cache's manifest stays the one written before) and the next build on an
emptied builder still hits; a change is exported. Under the default, ``auto``, a branch whose builds never read
its own cache gets its export narrowed to ``mode=min``, and ``always`` turns that off."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from .harness import Harness, Result, clean_environ, gitlab_env


def test_an_unchanged_rebuild_writes_no_export_and_a_change_does(harness: Harness, tmp_path: Path) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    repo = f"e2e/exports-{uuid.uuid4().hex[:8]}/cache"  # a rerun starts cold, not from the last run's cache
    ctx = harness.project(tmp_path, work=1.0)
    env = {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{reg}/{repo}",
           "CACHEPORT_EXPORTS": "when-changed", **gitlab_env(f"{reg}/unused", "main")}
    name = f"registry {reg}/{repo}:main"

    harness.prune()
    cold = harness.build(ctx, env=env)
    assert cold.code == 0, cold.log
    assert cold.cache["export"] == {name: "written"}, cold.log
    written = harness.manifest(reg, repo, "main")

    harness.prune()
    same = harness.build(ctx, env=env)
    assert same.code == 0, same.log
    assert same.ran == [] and same.rand == cold.rand, same.log
    assert same.cache["export"] == {name: "skipped"}, same.log
    assert f"skipped {name}: nothing changed since {name} was written" in same.log
    assert harness.manifest(reg, repo, "main") == written  # nothing written

    harness.prune()  # a fresh builder still hits the cache the skipped export left in place
    again = harness.build(ctx, env=env)
    assert again.code == 0 and again.ran == [] and again.rand == cold.rand, again.log

    (ctx / "Dockerfile").write_text((ctx / "Dockerfile").read_text() + "RUN echo changed > /changed\n")
    harness.prune()
    changed = harness.build(ctx, env=env)
    assert changed.code == 0, changed.log
    assert changed.cache["export"] == {name: "written"}, changed.log
    assert harness.manifest(reg, repo, "main") != written

    harness.prune()
    after = harness.build(ctx, env=env)
    assert after.code == 0 and after.ran == [] and after.cache["export"] == {name: "skipped"}, after.log


def _explain(harness: Harness, ctx: Path, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "cacheport", "explain", "--history"], cwd=ctx, capture_output=True,
                          text=True, timeout=120, env={**clean_environ(), **harness.docker_env, **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.split("export rule:", 1)[1]


def _cache_layers(harness: Harness, reg: str, repo: str, tag: str) -> int:
    doc = harness.manifest(reg, repo, tag)
    return len(doc.get("layers") or doc.get("manifests") or [])  # type: ignore[arg-type]


def test_a_branch_that_never_reads_its_own_cache_is_narrowed_and_always_turns_it_off(
        harness: Harness, tmp_path: Path) -> None:
    """Every build of branch ``feature`` changes its first step, so none reads the cache it wrote: after three,
    the default rule (``auto``) narrows the export to ``mode=min`` and says so; ``always`` keeps ``mode=max``; an
    unchanged rebuild still hits everything from the narrowed cache."""
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    repo = f"e2e/narrow-{uuid.uuid4().hex[:8]}/cache"
    ctx = tmp_path / "app"
    ctx.mkdir()
    shutil.copy2(harness.env["CACHEPORT_E2E_BUSYBOX"], ctx / "busybox")
    (ctx / "Dockerfile").write_text(
        "FROM scratch AS deps\n"
        "COPY stamp /stamp\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox head -c 4096 /dev/urandom > /deps.bin"]\n'
        "FROM scratch\n"
        "COPY stamp /stamp\n"
        "COPY --from=deps /deps.bin /deps.bin\n")
    env = {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{reg}/{repo}",
           **gitlab_env(f"{reg}/unused", "feature")}
    name = f"registry {reg}/{repo}:feature"

    def build(**more: str) -> Result:
        (ctx / "stamp").write_text(uuid.uuid4().hex)  # the first step changes: nothing comes from the cache
        harness.prune()
        done = harness.build(ctx, env={**env, **more})
        assert done.code == 0 and done.cache["export"] == {name: "written"}, done.log
        return done

    for _ in range(3):
        first = build()
        assert "narrowed" not in first.log, first.log
    wide = _cache_layers(harness, reg, repo, "feature")

    kept = build(CACHEPORT_EXPORTS="always")  # the setting turns the rule off: still mode=max
    assert "narrowed" not in kept.log and _cache_layers(harness, reg, repo, "feature") == wide, kept.log
    assert f"{name}: written with the build (exports = \"always\")" in _explain(
        harness, ctx, {**env, "CACHEPORT_EXPORTS": "always"})

    assert f"{name}: narrowed to mode=min: the last 3 builds of this branch wrote" in _explain(harness, ctx, env)
    narrowed = build()
    assert f"export written {name}" in narrowed.log and "narrowed to mode=min: the last 3 builds" in narrowed.log
    assert _cache_layers(harness, reg, repo, "feature") < wide  # the deps stage's layers are no longer sent
    report = json.loads(subprocess.run(
        [sys.executable, "-m", "cacheport", "history", "--branch", "feature", "--last", "1", "--format", "json"],
        cwd=ctx, capture_output=True, text=True, timeout=120, check=True,
        env={**clean_environ(), **env}).stdout)
    assert "narrowed to mode=min" in json.dumps(report["builds"][-1]["exports"]), report["builds"][-1]

    harness.prune()  # an unchanged rebuild still takes everything from the narrowed cache
    again = harness.build(ctx, env=env)
    assert again.code == 0 and (again.out / "deps.bin").read_bytes() == (narrowed.out / "deps.bin").read_bytes()
    assert again.cache["import"][name] == "hit" and "0 executed" in again.log, again.log
    # It read its cache: the next build goes back to mode=max.
    assert "narrowed" not in _explain(harness, ctx, env)

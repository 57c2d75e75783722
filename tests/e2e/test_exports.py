"""Exports that pay for themselves (#22), against a real registry: under ``exports = "when-changed"`` an
unchanged rebuild writes no export (the cache's manifest stays the one written before) and the next build on an
emptied builder still hits; a change is exported."""

from __future__ import annotations

import uuid
from pathlib import Path

from .harness import Harness, gitlab_env


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

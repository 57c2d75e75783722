"""Cache mounts (``RUN --mount=type=cache``) carried from one fresh builder to the next, on real builders.

The Dockerfile's step downloads files from a server the test runs on 127.0.0.1 (busybox ``wget``, the build on
the host's network) into a cache mount, skipping those it already has. The server counts every download, so
what a build downloaded is a fact, not a log line: a restored mount means fewer downloads.

- On the docker driver of both generations, "fresh" is a ``buildx prune -af``, which empties the cache mounts too.
- On a ``docker-container`` builder, each build has a new builder (``Harness.builder``); on the ``remote`` one
  (the standalone buildkitd), its cache is pruned.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .harness import Downloads, Harness, Result, downloads_context, gitlab_env


@contextmanager
def downloads() -> Iterator[Downloads]:
    server = Downloads()
    try:
        yield server
    finally:
        server.close()


def mounts_project(h: Harness, root: Path, port: int, files: list[str], owner: bool = True) -> Path:
    """A build context whose step fetches ``files`` into a cache mount, each only when the mount lacks it; with
    ``owner``, the mount has uid, gid and mode (BuildKit keys such a mount by the root it makes for them too)."""
    return downloads_context(h, root / "app", port, files, f"downloads-{root.name}", target="/var/cache/dl",
                             options="sharing=locked" + (",uid=1000,gid=1000,mode=0750" if owner else ""))


def mounts_env(h: Harness, image: str, branch: str, **extra: str) -> dict[str, str]:
    return {**gitlab_env(image, branch, **extra), "CACHEPORT_MOUNTS__HELPER_IMAGE": h.env["CACHEPORT_E2E_HELPER_IMAGE"]}


def mount_lines(result: Result) -> list[str]:
    return [line for line in result.log.splitlines() if line.startswith("cacheport: cache:   mount ")]


def test_a_restored_mount_saves_the_downloads_on_a_fresh_engine_builder(harness: Harness, tmp_path: Path) -> None:
    """Build 1 after a prune downloads everything and saves the mount; build 2 after another prune, with one more
    file, downloads only that one; a build with mounts off downloads everything again."""
    from cacheport.mounts.artifact import mounts_name

    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    project = f"e2e/mounts-{uuid.uuid4().hex[:8]}"
    env = mounts_env(harness, f"{reg}/{project}", "main")
    with downloads() as server:
        harness.prune()
        first = harness.build(mounts_project(harness, tmp_path, server.port, ["a", "b", "c"]), env=env)
        assert first.code == 0, first.log
        assert server.counts == {"a": 1, "b": 1, "c": 1}
        assert harness.tags(reg, f"{project}/cache") == sorted(["main", mounts_name("main")]), first.log
        harness.prune()
        second = harness.build(mounts_project(harness, tmp_path, server.port, ["a", "b", "c", "d"]), env=env)
        assert second.code == 0, second.log
        assert server.counts == {"a": 1, "b": 1, "c": 1, "d": 1}, mount_lines(second)
        assert (second.out / "deps" / "d").read_text() == "d" * 1000
        harness.prune()
        off = harness.build(mounts_project(harness, tmp_path, server.port, ["a", "b", "c", "d", "e"]),
                            "--mounts", "off", env=env)
        assert off.code == 0, off.log
        assert server.counts == {"a": 2, "b": 2, "c": 2, "d": 2, "e": 1}, off.log
        assert mount_lines(off) == []


def test_an_untrusted_job_restores_but_never_saves_and_a_new_branch_starts_from_main(harness: Harness,
                                                                                      tmp_path: Path) -> None:
    from cacheport.mounts.artifact import mounts_name

    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    project = f"e2e/mounts-{uuid.uuid4().hex[:8]}"
    image = f"{reg}/{project}"
    with downloads() as server:
        harness.prune()
        main = harness.build(mounts_project(harness, tmp_path, server.port, ["a", "b"]),
                             env=mounts_env(harness, image, "main"))
        assert main.code == 0, main.log
        saved = harness.tags(reg, f"{project}/cache")
        assert mounts_name("main") in saved, main.log
        harness.prune()
        fork = mounts_env(harness, image, "", CI_MERGE_REQUEST_SOURCE_BRANCH_NAME="patch-1",
                          CI_MERGE_REQUEST_TARGET_BRANCH_NAME="main", CI_MERGE_REQUEST_SOURCE_PROJECT_ID="99",
                          CI_MERGE_REQUEST_PROJECT_ID="1")
        untrusted = harness.build(mounts_project(harness, tmp_path, server.port, ["a", "b", "x"]), env=fork)
        assert untrusted.code == 0, untrusted.log
        assert server.counts == {"a": 1, "b": 1, "x": 1}, mount_lines(untrusted)  # restored from main's
        assert harness.tags(reg, f"{project}/cache") == saved  # and nothing written
        assert [line.split()[3] for line in mount_lines(untrusted)] == ["restored", "refused"], untrusted.log
        harness.prune()
        feature = harness.build(mounts_project(harness, tmp_path, server.port, ["a", "b", "y"]),
                                env=mounts_env(harness, image, "feature/new"))
        assert feature.code == 0, feature.log
        assert server.counts == {"a": 1, "b": 1, "x": 1, "y": 1}, mount_lines(feature)
        assert mounts_name("feature-new") in harness.tags(reg, f"{project}/cache"), feature.log


@pytest.mark.parametrize("driver", ["docker-container", "remote"])
def test_mounts_follow_fresh_builders_of_our_own_buildkit(buildkit: Harness, tmp_path: Path, driver: str) -> None:
    """Each build on a new builder (a new docker-container one; the standalone buildkitd pruned), which starts with
    no cache mount at all."""
    reg = buildkit.env["CACHEPORT_E2E_REGISTRY"]
    env = mounts_env(buildkit, f"{reg}/e2e/mounts-dc-{uuid.uuid4().hex[:8]}", "main")
    with downloads() as server:
        for files, expected in ((["a", "b", "c"], {"a": 1, "b": 1, "c": 1}),
                                (["a", "b", "c", "d"], {"a": 1, "b": 1, "c": 1, "d": 1})):
            with buildkit.builder(driver) as name:
                result = buildkit.build(mounts_project(buildkit, tmp_path, server.port, files, owner=False), env=env,
                                        extra=("--builder", name))
            assert result.code == 0, result.log
            assert server.counts == expected, mount_lines(result)


def test_mounts_commands_around_a_build_cacheport_does_not_run(buildkit: Harness, tmp_path: Path) -> None:
    """`cacheport mounts restore`, a plain `docker buildx build`, `cacheport mounts save`, on new builders."""
    import json
    import subprocess
    import sys

    from .harness import clean_environ

    reg = buildkit.env["CACHEPORT_E2E_REGISTRY"]
    env = {**clean_environ(), **buildkit.docker_env,
           **mounts_env(buildkit, f"{reg}/e2e/mounts-cmd-{uuid.uuid4().hex[:8]}", "main"),
           "CACHEPORT_BACKEND": "gitlab"}

    def cacheport(ctx: Path, *args: str) -> dict[str, Any]:
        proc = subprocess.run([sys.executable, "-m", "cacheport", "mounts", *args, "--format", "json", "."],
                              cwd=ctx, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr
        found: dict[str, Any] = json.loads(proc.stdout)
        return found

    with downloads() as server:
        for files, expected, restored in ((["a", "b"], {"a": 1, "b": 1}, "missed"),
                                          (["a", "b", "c"], {"a": 1, "b": 1, "c": 1}, "restored")):
            ctx = mounts_project(buildkit, tmp_path, server.port, files)
            with buildkit.builder("docker-container") as name:
                env["BUILDX_BUILDER"] = name
                before = cacheport(ctx, "restore")
                assert [m["action"] for m in before["mounts"]] == [restored], before
                built = subprocess.run([buildkit.env["CACHEPORT_E2E_DOCKER_BIN"], "buildx", "build",
                                        "--network=host", "--output", f"type=local,dest={tmp_path / 'out'}", "."],
                                       cwd=ctx, capture_output=True, text=True, timeout=300, env=env)
                assert built.returncode == 0, built.stderr
                after = cacheport(ctx, "save")
                assert [m["action"] for m in after["mounts"]] == ["saved"], after
            assert server.counts == expected


def test_a_helper_image_that_cannot_be_pulled_is_one_line_per_mount_and_the_build_passes(harness: Harness,
                                                                                          tmp_path: Path) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    env = {**mounts_env(harness, f"{reg}/e2e/mounts-{uuid.uuid4().hex[:8]}", "main"),
           "CACHEPORT_MOUNTS__HELPER_IMAGE": f"{reg}/e2e/no-such-helper:{uuid.uuid4().hex[:8]}"}
    with downloads() as server:
        harness.prune()
        result = harness.build(mounts_project(harness, tmp_path, server.port, ["a"]), env=env)
        assert result.code == 0, result.log
        assert server.counts == {"a": 1}
    lines = mount_lines(result)
    assert len(lines) == 2, lines  # restore missed (nothing stored), save failed: the helper image
    assert [line.split()[3] for line in lines] == ["missed", "failed"], lines
    assert "helper build failed: " in lines[1]
    assert "failed to solve" not in lines[1] and "ERROR" not in lines[1], lines  # buildx's heading, not the reason

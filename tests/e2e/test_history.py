"""The cache's history against real servers: every build leaves a record, in the registry beside the cache, in
Pulp, and in a directory for a local cache; ``cacheport history`` counts them right and in order; two builds
finishing at once both keep their record; an untrusted job's record never reaches the store; and the chart,
rendered by a real SVG renderer (Debian's rsvg-convert, installed by scripts/e2e-up), is a picture.

The sequence: cold on main, warm on main, a change to the Dockerfile, warm again, a new branch warm from main,
an untrusted job (a merge request from a fork), and two builds of main at once.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from .conftest import unavailable
from .harness import RAN, Harness, Pulp, Result, clean_environ, gitlab_env, pulp_env

PREFIX = "cacheport-history-"


def cacheport(h: Harness, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], capture_output=True, text=True, cwd=cwd,
                          env={**clean_environ(), **h.docker_env, **env}, timeout=180)


def change(ctx: Path) -> None:
    """A change that keeps the first steps and makes the last one run."""
    dockerfile = ctx / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + f"RUN echo cacheport-ran: changed {uuid.uuid4().hex}\n")


def fork(env: dict[str, str]) -> dict[str, str]:
    """The same project's job for a merge request from a fork: it may read, never write."""
    return {**env, "CI_PIPELINE_SOURCE": "merge_request_event", "CI_COMMIT_BRANCH": "",
            "CI_COMMIT_REF_NAME": "patch-1", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "patch-1",
            "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main", "CI_MERGE_REQUEST_IID": "7",
            "CI_MERGE_REQUEST_SOURCE_PROJECT_PATH": "someone/app",
            "CI_MERGE_REQUEST_PROJECT_PATH": env.get("CI_PROJECT_PATH", "group/app")}


def at_once(h: Harness, ctx: Path, env: dict[str, str]) -> list[Result]:
    """Two builds of the same branch, started together (both warm, so they finish together too)."""
    results: list[Result] = []
    start = threading.Barrier(2)

    def one() -> None:
        start.wait()
        results.append(h.build(ctx, env=env))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def sequence(h: Harness, ctx: Path, env_for: Callable[[str], dict[str, str]], untrusted: bool = True,
             together: dict[str, str] | None = None) -> dict:
    """The builds, each after a prune (so only an imported cache can make one warm); the history as JSON."""
    steps: list[tuple[str, Callable[[dict[str, str]], dict[str, str]], Callable[[], None] | None]] = [
        ("main", dict, None),                     # cold
        ("main", dict, None),                     # warm
        ("main", dict, lambda: change(ctx)),      # a change
        ("main", dict, None),                     # warm again
        ("feature/New", dict, None),              # a new branch, warm from main
    ]
    if untrusted:
        steps.append(("main", fork, None))
    for branch, job, before in steps:
        if before:
            before()
        h.prune()
        result = h.build(ctx, env=job(env_for(branch)))
        assert result.code == 0, result.log
        assert "history: the build record was not kept" not in result.log, result.log
    last = steps[-1][0] if not untrusted else "main"
    both = at_once(h, ctx, {**env_for(last), **(together or {})})
    assert [r.code for r in both] == [0, 0], [r.log for r in both]
    out = cacheport(h, "history", "--format", "json", env=env_for(last), cwd=ctx)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def check(doc: dict, untrusted: bool = True) -> None:
    builds = doc["builds"]
    assert [b["branch"] for b in builds] == ["main"] * 4 + ["feature/New"] + ["main"] * 2, builds
    assert [b["time"] for b in builds] == sorted(b["time"] for b in builds)
    cold, warm, changed, again, feature = builds[:5]
    assert cold["steps"]["cached"] < cold["steps"]["total"] and not cold["hit"]
    assert warm["hit"] and warm["steps"]["executed"] == 0
    assert changed["first_run"] and "changed" in changed["first_run"]
    assert changed["steps"]["executed"] == 1
    assert again["hit"] and again["steps"]["executed"] == 0
    assert feature["hit"] and feature["steps"]["executed"] == 0  # warm from main's cache
    assert {b["branch"]: b["builds"] for b in doc["branches"]} == {"main": 6, "feature/New": 1}
    assert doc["cold"]["builds"] >= 1 and doc["warm"]["builds"] >= 5 and doc["saved_seconds"] is not None
    assert [f["name"] for f in doc["falls"]] == [changed["name"]], json.dumps(doc, indent=1)
    # Under exports = "auto" an unchanged rebuild after mostly unchanged ones skips its export; any other writes it.
    assert all(b["exports"] and b["exports"][0]["status"] == ("written" if b["steps"]["executed"] else
                                                              b["exports"][0]["status"]) for b in builds)
    assert {b["exports"][0]["status"] for b in builds} <= {"written", "skipped"}


def test_registry_history(harness: Harness, tmp_path: Path) -> None:
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    repo = f"e2e/history-{uuid.uuid4().hex[:8]}/cache"
    ctx = harness.project(tmp_path, work=2.0)

    def env_for(branch: str) -> dict[str, str]:
        return {**gitlab_env("registry.invalid/unused", branch), "CACHEPORT_BACKEND": "registry",
                "CACHEPORT_REGISTRY__REF": f"{reg}/{repo}"}

    doc = sequence(harness, ctx, env_for)
    check(doc)
    records = sorted(t for t in harness.tags(reg, repo, records=True) if t.startswith(PREFIX))
    assert records == sorted(b["name"] for b in doc["builds"])  # the fork's is not among them
    kept = list((ctx / "cacheport-history").glob(f"{PREFIX}*.json"))  # the fork's, in its own directory
    assert len(kept) == 1 and json.loads(kept[0].read_text())["branch"] == "patch-1"
    manifest = harness.manifest(reg, repo, records[0])
    assert manifest["artifactType"] == "application/vnd.cacheport.build-record.v1"
    page, chart = tmp_path / "history.html", tmp_path / "history.svg"
    out = cacheport(harness, "history", "--format", "html", "-o", str(page), "--chart", str(chart),
                    env=env_for("main"), cwd=ctx)
    assert out.returncode == 0, out.stderr
    assert page.read_text().count("<svg") == 1 and chart.read_text().count("<rect") > len(records)
    status = cacheport(harness, "status", env=env_for("main"), cwd=ctx)
    assert status.returncode == 0 and PREFIX not in status.stdout, status.stdout  # records are not caches

    # The bound: the oldest go, per branch, whoever writes.
    bounded = {**env_for("main"), "CACHEPORT_HISTORY_KEEP": "2"}
    assert harness.build(ctx, env=bounded).code == 0
    left = [t for t in harness.tags(reg, repo, records=True) if t.startswith(f"{PREFIX}main-")]
    assert len(left) == 2
    assert len([t for t in harness.tags(reg, repo, records=True) if t.startswith(f"{PREFIX}feature-new-")]) == 1

    # A corrupt record: one line and exit 2 for history, never a failed build.
    bad = f"{PREFIX}main-29991231000000000-0badbad0"
    harness.docker("buildx", "imagetools", "create", "--tag", f"{reg}/{repo}:{bad}", f"{reg}/{repo}:main")
    out = cacheport(harness, "history", env=env_for("main"), cwd=ctx)
    assert out.returncode == 2 and bad in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert harness.build(ctx, env=env_for("main")).code == 0
    out = cacheport(harness, "history", "--skip-bad", env=env_for("main"), cwd=ctx)
    assert out.returncode == 0 and f"history record {bad} left out" in out.stderr
    out = cacheport(harness, "history", "--prune-bad", env=env_for("main"), cwd=ctx)
    assert out.returncode == 0 and out.stdout.startswith(f"deleted build record {bad}: "), out.stdout + out.stderr
    assert bad not in harness.tags(reg, repo, records=True)
    assert cacheport(harness, "history", env=env_for("main"), cwd=ctx).returncode == 0


def test_a_real_base_image_rebuilt_unchanged_counts_as_unchanged(harness: Harness, tmp_path: Path) -> None:
    """A Dockerfile FROM a real image (the loopback busybox): BuildKit only resolves the FROM and never marks it
    cached, so it is no step; the warm rebuild says every step cached, none executed, and under the default
    exports = "auto" the branch's records count it as unchanged, so the next unchanged rebuild skips its export."""
    base = harness.env.get("CACHEPORT_E2E_HELPER_IMAGE")
    if not base:
        unavailable("CACHEPORT_E2E_HELPER_IMAGE (the loopback busybox image) is not set: scripts/e2e-up sets it")
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    repo = f"e2e/history-from-{uuid.uuid4().hex[:8]}/cache"
    ctx = tmp_path / "app"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {base}\n"
        f"RUN echo {RAN} first && echo {uuid.uuid4().hex} > /marker\n"
        f"RUN echo {RAN} random && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /rand\n")
    env = {**gitlab_env("registry.invalid/unused", "main"), "CACHEPORT_BACKEND": "registry",
           "CACHEPORT_REGISTRY__REF": f"{reg}/{repo}"}
    results = []
    for _ in range(3):  # cold, warm, warm again; each after a prune, so only the registry's cache makes it warm
        harness.prune()
        results.append(harness.build(ctx, env=env))
        assert results[-1].code == 0, results[-1].log
    cold, warm, again = results
    assert len(cold.ran) == 2, cold.log
    assert warm.ran == [] and again.ran == [], warm.log
    assert ": 2/2 steps cached, 0 executed" in warm.log, warm.log
    assert warm.rand == cold.rand
    out = cacheport(harness, "history", "--format", "json", env=env, cwd=ctx)
    assert out.returncode == 0, out.stderr
    builds = json.loads(out.stdout)["builds"]
    assert [(b["steps"]["total"], b["steps"]["executed"]) for b in builds] == [(2, 2), (2, 0), (2, 0)], builds
    assert [b["hit"] for b in builds] == [False, True, True]
    assert builds[1]["first_run"] is None  # the FROM is never named as the first step run
    # 1 of the 2 builds before it executed no step: auto held the export back, and nothing changed, so skipped.
    assert [b["exports"][0]["status"] for b in builds] == ["written", "written", "skipped"], builds
    explained = cacheport(harness, "explain", "--history", env=env, cwd=ctx)
    assert explained.returncode == 0, explained.stderr
    assert "2 of this branch's last 3 builds executed no step" in explained.stdout, explained.stdout


def test_pulp_history(harness: Harness, pulp: Pulp, tmp_path: Path) -> None:
    project = f"E2E/History-{uuid.uuid4().hex[:8]}"
    ctx = harness.project(tmp_path, work=2.0)
    doc = sequence(harness, ctx, lambda branch: pulp_env(pulp, project, branch))
    check(doc)
    repo = f"{project.lower()}/cache"
    tags = harness.tags(pulp.registry, repo, auth=(pulp.user, pulp.password), records=True)
    assert sorted(t for t in tags if t.startswith(PREFIX)) == sorted(b["name"] for b in doc["builds"])


def test_local_history_and_its_chart_as_a_picture(harness: Harness, tmp_path: Path) -> None:
    ctx = harness.project(tmp_path, work=2.0)
    xdg = tmp_path / "xdg"

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=ctx, check=True,
                       capture_output=True)

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-qm", "app")

    def env_for(branch: str) -> dict[str, str]:
        if branch != "main":
            git("checkout", "-q", "-B", branch)
        return {"XDG_CACHE_HOME": str(xdg), "HOME": str(tmp_path)}

    # The two builds at once only read: two local exports into one directory at once are BuildKit's race, not the
    # history's (their records still go to the same directory).
    doc = sequence(harness, ctx, env_for, untrusted=False, together={"CACHEPORT_READ_ONLY": "true"})
    builds = doc["builds"]
    assert [b["branch"] for b in builds] == ["main"] * 4 + ["feature/New"] + ["feature/New"] * 2
    assert [b["steps"]["executed"] for b in builds[:5]] == [4, 0, 1, 0, 0]
    assert not builds[0]["hit"] and all(b["hit"] for b in builds[1:])
    kept = list((xdg / "cacheport" / "history").rglob(f"{PREFIX}*.json"))
    assert len(kept) == len(builds)

    rsvg = shutil.which("rsvg-convert")
    if rsvg is None:
        unavailable("rsvg-convert (librsvg2-bin) is not installed: scripts/e2e-up installs it")
    svg, png = tmp_path / "history.svg", tmp_path / "history.png"
    out = cacheport(harness, "history", "--chart", str(svg), env=env_for("feature/New"), cwd=ctx)
    assert out.returncode == 0, out.stderr
    subprocess.run([rsvg, "--output", str(png), str(svg)], check=True, timeout=60)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (720, 260)
    assert _has_green_and_blue(png)


def _has_green_and_blue(png: Path) -> bool:
    """The rendered chart has the hit bars' green and the build-time line's blue (decoded with zlib alone)."""
    import zlib

    data = png.read_bytes()
    pos, chunks = 8, b""
    color_type = data[25]
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            chunks += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(chunks)
    channels = 4 if color_type == 6 else 3
    width = struct.unpack(">I", data[16:20])[0]
    stride = width * channels + 1
    seen = set()
    previous = bytearray(stride - 1)
    for row in range(len(raw) // stride):
        line = bytearray(raw[row * stride + 1:(row + 1) * stride])
        kind = raw[row * stride]
        for i in range(len(line)):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[i] = (line[i] + pred) & 0xFF
        previous = line
        for i in range(0, len(line), channels):
            seen.add(tuple(line[i:i + 3]))
    return (0x2E, 0x9D, 0x57) in seen and (0x1F, 0x5F, 0xBF) in seen

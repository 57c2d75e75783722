"""The GitHub action and its report sub-action, their steps run as the runner runs them (tests/github_actions.py),
around real builds: the cache step's outputs go to ``docker buildx build`` as build-push-action passes them
(one ``--cache-from``/``--cache-to`` per line, ``--metadata-file``), against a real registry, and the report
sub-action gets buildx's real metadata and must put in the job summary what BuildKit did.

No GitHub runner runs here: the ``uses:`` steps (setup-python, ghaction-github-runtime) are not run (the machine's
Python is new enough, and the registry backend needs no runtime), and the venv the install step would fill holds
this checkout's cacheport, which is what it would install from the action's own source.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

from tests import github_actions

from .harness import RAN, Harness, clean_environ, github_env

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "action.yml"
REPORT_ACTION = ROOT / "report" / "action.yml"


def job(h: Harness, tmp: Path, branch: str) -> dict[str, str]:
    """A GitHub Actions job's environment for a push to ``branch``, on the harness's docker."""
    runner_temp = tmp / f"runner-{uuid.uuid4().hex[:6]}"
    runner_temp.mkdir(parents=True)
    github_actions.installed_cacheport(runner_temp, str(ROOT), sys.executable)
    return {**clean_environ(), **h.docker_env, **github_env(runner_temp, "org/app", branch),
            "RUNNER_TEMP": str(runner_temp), "HOME": str(runner_temp)}


def build_push_action(h: Harness, ctx: Path, cache: github_actions.ActionRun, env: dict[str, str]) -> tuple[str, str]:
    """docker/build-push-action's build with the cache step's outputs: the log, and its ``metadata`` output."""
    metadata = Path(env["RUNNER_TEMP"]) / "build-metadata.json"
    flags = [f"--cache-from={line}" for line in cache.outputs["cache-from"].splitlines() if line]
    flags += [f"--cache-to={line}" for line in cache.outputs["cache-to"].splitlines() if line]
    proc = subprocess.run([h.env["CACHEPORT_E2E_DOCKER_BIN"], "buildx", "build", *flags, "--progress=plain",
                           f"--metadata-file={metadata}", "--network=host",
                           f"--output=type=local,dest={ctx.parent / uuid.uuid4().hex[:8]}", "."],
                          cwd=ctx, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr, metadata.read_text()


def ran(log: str) -> list[str]:
    """The RUN steps that executed, by the marker each prints (the reference project's)."""
    return [line.split(RAN, 1)[1].strip() for line in log.splitlines() if RAN in line and "echo" not in line]


def table(summary: str) -> dict[tuple[str, str], str]:
    """The summary's rows: ``(cache, import|export)`` → status."""
    rows = re.findall(r"^\| `([^`]+)` \| (import|export) \| (\w+) \|", summary, re.M)
    return {(cache, kind): status for cache, kind, status in rows}


def test_the_report_sub_action_puts_what_buildkit_did_in_the_job_summary(harness: Harness, tmp_path: Path) -> None:
    cache = f"{harness.env['CACHEPORT_E2E_REGISTRY']}/gh-{uuid.uuid4().hex[:8]}/cache"
    inputs = {"backend": "registry", "set": f"ref={cache}", "github-runtime": "false"}
    plan = {k: v for k, v in inputs.items() if k != "github-runtime"}
    ctx = harness.project(tmp_path, work=2)

    # main, cold: the one import misses, every step runs, the export is written
    harness.prune()
    env = job(harness, tmp_path, "main")
    step = github_actions.run_action(ACTION, inputs, env, ctx, tmp_path / "main-cache")
    assert step.code == 0 and step.skipped == ["python", "3"], step.log  # the runner's Python; no runtime needed
    assert "already installed in this job" in step.log
    log, metadata = build_push_action(harness, ctx, step, env)
    assert ran(log) == ["install", "slow", "random"]  # the RUN steps really ran
    cold = github_actions.run_action(REPORT_ACTION, {**plan, "metadata": metadata}, env, ctx, tmp_path / "main-report")
    assert cold.code == 0 and not [line for line in cold.log.splitlines() if line.startswith("::warning")], cold.log
    assert cold.summary.startswith("### BuildKit cache\n\n**build succeeded in "), cold.summary
    assert ": 0/4 steps cached, 4 executed**" in cold.summary
    assert table(cold.summary) == {(f"registry {cache}:main", "import"): "missed",
                                   (f"registry {cache}:main", "export"): "written"}

    # a new branch after a prune: its own tag misses, main's hits, nothing runs, its own tag is written
    harness.prune()
    env = job(harness, tmp_path, "feature/login")
    step = github_actions.run_action(ACTION, inputs, env, ctx, tmp_path / "branch-cache")
    assert step.code == 0, step.log
    log, metadata = build_push_action(harness, ctx, step, env)
    assert ran(log) == []  # BuildKit ran no step: all came from main's cache
    warm = github_actions.run_action(REPORT_ACTION, {**plan, "metadata": metadata}, env, ctx,
                                     tmp_path / "branch-report")
    assert warm.code == 0, warm.log
    assert ": 4/4 steps cached, 0 executed**" in warm.summary, warm.summary
    assert table(warm.summary) == {(f"registry {cache}:feature-login", "import"): "missed",
                                   (f"registry {cache}:main", "import"): "hit",
                                   (f"registry {cache}:feature-login", "export"): "written"}
    assert "| export | written | image-manifest" in warm.summary  # the metadata's cache manifest
    assert harness.tags(*cache.split("/", 1)) == ["feature-login", "main"]


def test_on_a_buildx_without_history_the_summary_still_has_the_export(every_generation: dict[str, Harness],
                                                                      tmp_path: Path) -> None:
    h = every_generation["old"]  # buildx 0.13: build history came with 0.21
    cache = f"{h.env['CACHEPORT_E2E_REGISTRY']}/gh-{uuid.uuid4().hex[:8]}/cache"
    inputs = {"backend": "registry", "set": f"ref={cache}"}
    ctx = h.project(tmp_path, work=1)
    env = job(h, tmp_path, "main")
    step = github_actions.run_action(ACTION, {**inputs, "github-runtime": "false"}, env, ctx, tmp_path / "cache")
    assert step.code == 0, step.log
    _log, metadata = build_push_action(h, ctx, step, env)
    run = github_actions.run_action(REPORT_ACTION, {**inputs, "metadata": metadata}, env, ctx, tmp_path / "report")
    assert run.code == 0, run.log
    assert [line for line in run.log.splitlines() if line.startswith("::warning")] == [
        "::warning title=cacheport report::this buildx keeps no build history (0.21 added it): reporting from the "
        "given files alone (a metadata file knows exports, not imports or steps)"]
    assert table(run.summary) == {(f"registry {cache}:main", "import"): "unknown",
                                  (f"registry {cache}:main", "export"): "written"}

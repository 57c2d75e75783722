"""The GitHub action and its report sub-action, their steps run as the runner runs them (tests/github_actions.py),
around real builds: the cache step's outputs go to ``docker buildx build`` as build-push-action passes them
(one ``--cache-from``/``--cache-to`` per line, ``--metadata-file``), against a real registry, and the report
sub-action gets buildx's real metadata and must put in the job summary what BuildKit did.

No GitHub runner runs these: the ``uses:`` steps (setup-python, ghaction-github-runtime) are not run (the machine's
Python is new enough, and the registry backend needs no runtime), and the venv the install step would fill holds
this checkout's cacheport, which is what it would install from the action's own source. The action's own
docker-container builder runs under act, a real workflow runner, on the test host.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import attrs

from tests import github_actions

from .conftest import unavailable
from .harness import RAN, Downloads, Harness, clean_environ, downloads_context, github_env, mount_said

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
    # the runner's Python; no runtime needed; no builder of the action's own (no builder-driver)
    assert step.code == 0 and step.skipped == ["python", "3", "builder"], step.log
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
    # Under each report, the branch's trend: the report kept the build's record beside the cache. Its chart is
    # Mermaid, which GitHub draws in a job summary, never a data: image, which it drops.
    for summary, branch in ((cold.summary, "main"), (warm.summary, "feature/login")):
        history = summary[summary.index("#### cacheport: cache history"):]
        assert "```mermaid\n" in history and "data:image" not in history, history
        assert f"| {branch} | 1 | " in history, history
    assert len(harness.tags(*cache.split("/", 1), records=True)) == 4


def test_cacheport_build_in_a_run_step_puts_the_trend_chart_under_its_report(harness: Harness,
                                                                             tmp_path: Path) -> None:
    # cacheport build in a job's run step, twice (cold after a prune, then warm): each appends its report to the
    # job summary and, under it, the branch's trend with its chart in Mermaid, a bar per build so far.
    cache = f"{harness.env['CACHEPORT_E2E_REGISTRY']}/gh-{uuid.uuid4().hex[:8]}/cache"
    ctx = harness.project(tmp_path, work=1)
    harness.prune()
    shares = []
    for n in (1, 2):
        summary = tmp_path / f"summary-{n}.md"
        env = {**github_env(tmp_path, "org/app", "main"), "GITHUB_STEP_SUMMARY": str(summary),
               "CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": cache, "HOME": str(tmp_path)}
        result = harness.build(ctx, env=env)
        assert result.code == 0, result.log
        text = summary.read_text()
        cached, total = map(int, re.search(r"(\d+)/(\d+) steps cached", text).groups())  # type: ignore[union-attr]
        shares.append(round(cached / total * 100))
        history = text[text.index("#### cacheport: cache history"):]
        assert text.index("### cacheport") < text.index("#### cacheport: cache history") and "data:image" not in text
        labels, series, _colors = chart_series(mermaid_charts(history)[0])
        assert labels == [str(i) for i in range(1, n + 1)]
        assert [max(column) for column in zip(*series, strict=True)] == shares
    assert shares[0] < 100 and shares[1] == 100  # cold after the prune, then warm from the registry


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


STUB_ACTION = """# A stand-in for a remote action this workflow never runs (its step's `if:` is false here): act reads
# every action a composite action names before it runs any of them, and nothing may be fetched.
name: stand-in
runs:
  using: composite
  steps:
    - shell: bash
      run: echo "this stand-in must not run" && exit 1
"""


@attrs.frozen
class Act:
    """act, the workflow runner, on the runner host (-self-hosted), with a runner's docker configuration of its own
    under ``tmp`` (its builders, and the buildx plugin); remote actions the workflows name are local stand-ins."""

    harness: Harness
    tmp: Path
    more_env: dict[str, str] = attrs.field(factory=dict)
    secrets: dict[str, str] = attrs.field(factory=dict)

    @property
    def docker_config(self) -> Path:
        return self.tmp / "docker-config"

    @property
    def env(self) -> dict[str, str]:
        docker_bin = str(Path(self.harness.env["CACHEPORT_E2E_DOCKER_BIN"]).parent)
        return {**clean_environ(), "HOME": str(self.tmp / "home"), "ACT_DISABLE_VERSION_CHECK": "1",
                "PATH": os.pathsep.join([docker_bin, os.environ.get("PATH", "")]), **self.step_env}

    @property
    def step_env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.harness.env["CACHEPORT_E2E_DOCKER_HOST"], "DOCKER_CONFIG": str(self.docker_config),
                "TEST_PYTHON": sys.executable, **self.more_env}

    def run(self, repo: Path) -> str:
        """Commit ``repo`` (with its .github/workflows) and run its push workflows; return the whole log."""
        act = Path(self.harness.env.get("CACHEPORT_E2E_PREFIX", "/nonexistent")) / "venv" / "bin" / "act"
        if not os.access(act, os.X_OK):
            unavailable(f"no act at {act} (run scripts/e2e-up without --no-gha)")
        stubs = []
        for action in ("actions/setup-python@v5", "crazy-max/ghaction-github-runtime@v3"):
            stub = self.tmp / "stubs" / action.replace("/", "-")
            stub.mkdir(parents=True, exist_ok=True)
            (stub / "action.yml").write_text(STUB_ACTION)
            stubs += ["--local-repository", f"{action}={stub}"]
        git = ["git", "-C", str(repo), "-c", "user.name=dev", "-c", "user.email=dev@example.invalid"]
        subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "app"], check=True)
        if not self.docker_config.exists():
            (self.docker_config / "cli-plugins").mkdir(parents=True)
            (self.docker_config / "cli-plugins" / "docker-buildx").symlink_to(
                Path(self.harness.env["CACHEPORT_E2E_DOCKER_CONFIG"]) / "cli-plugins" / "docker-buildx")
            (self.tmp / "home").mkdir()
        cmd = [str(act), "push", "-P", "ubuntu-latest=-self-hosted", "--no-cache-server",
               "--action-cache-path", str(self.tmp / "act-cache"), *stubs]
        for key, value in self.step_env.items():
            cmd += ["--env", f"{key}={value}"]
        if self.secrets:  # a repository's secrets: in a file (0600), never on the command line nor in act's
            secrets = self.tmp / "act.secrets"  # environment, which self-hosted steps inherit
            secrets.touch(mode=0o600)
            secrets.write_text("".join(f"{key}={value}\n" for key, value in self.secrets.items()))
            cmd += ["--secret-file", str(secrets)]
        proc = subprocess.run(cmd, cwd=repo, env=self.env, capture_output=True, text=True, timeout=600,
                              start_new_session=True)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log
        assert "this stand-in must not run" not in log
        return log

    def remove_builders(self) -> None:
        """The builders the workflows made: their containers live in the engine, which other tests share."""
        for path in (self.docker_config / "buildx" / "instances").glob("*"):
            subprocess.run(["docker", "buildx", "rm", path.name], env=self.env, capture_output=True, timeout=120)


def workflow_job(name: str, needs: str, inputs: dict[str, str], save: bool = False, save_env: str = "",
                 report: bool = False) -> str:
    """One job of the act workflow: the cacheport action making its builder, then build-push-action's build of
    the ``context`` input, then (``save``) the action again with ``mode: save`` (``save_env``: its ``env:``
    lines), then (``report``) the report sub-action with the build's metadata file and the plan's inputs."""
    given = "".join(f"          {key}: {json.dumps(value)}\n" for key, value in inputs.items())
    context = inputs.get("context", ".")
    after = f"""      - uses: ./
{f"        env:{chr(10)}{save_env}" if save_env else ""}        with:
          mode: save
{given}""" if save else ""
    plan = "".join(f"          {key}: {json.dumps(inputs[key])}\n" for key in ("backend", "key", "set") if key in inputs)
    after += f"""      - uses: ./report
        with:
          metadata-file: ${{{{ runner.temp }}}}/metadata.json
          builder: ${{{{ steps.cache.outputs.builder }}}}
{plan}""" if report else ""
    return f"""  {name}:
    runs-on: ubuntu-latest
    {f"needs: {needs}" if needs else ""}
    steps:
      - uses: actions/checkout@v4  # act copies the local checkout instead
      # The install step's pip install of this checkout, done beforehand: its venv, holding this checkout's
      # cacheport (the test machine reaches no package index). The step then says it is already installed.
      - run: |
          mkdir -p "$RUNNER_TEMP/cacheport-venv/bin"
          printf '#!/bin/sh\\nexec "%s" -m cacheport "$@"\\n' "$TEST_PYTHON" > "$RUNNER_TEMP/cacheport-venv/bin/cacheport"
          chmod +x "$RUNNER_TEMP/cacheport-venv/bin/cacheport"
          (cd "$GITHUB_WORKSPACE" && pwd -P) > "$RUNNER_TEMP/cacheport-venv/cacheport-requirement"
      - id: cache
        uses: ./
        with:
{given}      # docker/build-push-action's build: one --cache-from/--cache-to per line of the outputs
      - env:
          FROM: ${{{{ steps.cache.outputs.cache-from }}}}
          TO: ${{{{ steps.cache.outputs.cache-to }}}}
          BUILDER: ${{{{ steps.cache.outputs.builder }}}}
        run: |
          test -n "$BUILDER" && test "$BUILDX_BUILDER" = "$BUILDER"
          flags=()
          while IFS= read -r line; do [ -z "$line" ] || flags+=("--cache-from=$line"); done <<< "$FROM"
          while IFS= read -r line; do [ -z "$line" ] || flags+=("--cache-to=$line"); done <<< "$TO"
          docker buildx build --builder "$BUILDER" "${{flags[@]}}" --progress=plain --network=host \\
            --metadata-file "$RUNNER_TEMP/metadata.json" --output "type=local,dest=$RUNNER_TEMP/out" {context}
{after}"""


def test_the_action_s_own_docker_container_builder_under_act(buildkit: Harness, tmp_path: Path) -> None:
    # The action under act, a real workflow runner, on the runner host (-self-hosted): it makes a
    # docker-container builder running the BuildKit image scripts/e2e-up made (a loopback tag), with that
    # image's buildkitd.toml; the build exports a registry cache. The next job changes a driver option: the
    # action makes a new builder, fresh, which the registry's cache alone makes warm.
    harness = buildkit
    image, config = harness.env["CACHEPORT_E2E_BUILDKIT_IMAGE"], harness.env["CACHEPORT_E2E_BUILDKITD_CONFIG"]
    cache = f"{harness.env['CACHEPORT_E2E_REGISTRY']}/gh-{uuid.uuid4().hex[:8]}/cache"
    repo = harness.project(tmp_path, "repo", work=2)
    shutil.copy2(ACTION, repo / "action.yml")
    shutil.copytree(ROOT / "templates" / "github", repo / "templates" / "github")
    inputs = {"backend": "registry", "set": f"ref={cache}", "github-runtime": "false",
              "builder-driver": "docker-container", "buildkit-image": image,
              "buildkitd-config": Path(config).read_text(), "builder-driver-opts": "network=host"}
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "build.yml").write_text(
        "name: build\non: push\njobs:\n" + workflow_job("cold", "", inputs)
        + workflow_job("warm", "cold", {**inputs, "builder-driver-opts": "network=host memory=4g"}))
    runner = Act(harness, tmp_path)
    try:
        log = runner.run(repo)
        cold = "\n".join(line for line in log.splitlines() if line.startswith("[build/cold]"))
        warm = "\n".join(line for line in log.splitlines() if line.startswith("[build/warm]"))
        assert "already installed in this job" in cold
        made = re.findall(r"creating the buildx builder (cacheport-[0-9a-f]{12})", log)
        assert len(made) == 2 and made[0] != made[1] and "reusing the buildx builder" not in log, log
        assert made[0] in cold and made[1] in warm
        assert ran(cold) == ["install", "slow", "random"], cold  # a fresh builder, an empty cache: every step ran
        assert ran(warm) == [], warm  # another fresh builder: every step came from the registry's cache
        assert harness.tags(*cache.split("/", 1)) == ["main"]
        for name in made:  # each runs the BuildKit image the input named
            inspect = subprocess.run(["docker", "inspect", "--format", "{{.Config.Image}}",
                                      f"buildx_buildkit_{name}0"], env=runner.env, capture_output=True, text=True)
            assert inspect.stdout.strip() == image, inspect.stderr
    finally:
        runner.remove_builders()


def test_under_act_the_save_step_keeps_the_cache_mounts_for_the_next_job_s_fresh_builder(
        buildkit: Harness, tmp_path: Path) -> None:
    # The action's default (mounts: true) and its save step, under act: the first job's step downloads three
    # files from a server on 127.0.0.1 into its cache mount, and the save step after the build stores the mount
    # beside the registry cache. The next job, on a new builder (another `builder` name), builds a context whose
    # requirements add one file: the action restores the mount first, so only that file is downloaded.
    from cacheport.mounts.artifact import mounts_name

    harness = buildkit
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    project = f"gh-{uuid.uuid4().hex[:8]}"
    repo = tmp_path / "repo"
    server = Downloads()
    mount_id = f"deps-{uuid.uuid4().hex[:8]}"
    for context, names in (("first", ["a", "b", "c"]), ("second", ["a", "b", "c", "d"])):
        downloads_context(harness, repo / context, server.port, names, mount_id, options="uid=1000,gid=1000")
    shutil.copy2(ACTION, repo / "action.yml")
    shutil.copytree(ROOT / "templates" / "github", repo / "templates" / "github")
    inputs = {"backend": "registry", "set": f"ref={reg}/{project}/cache", "github-runtime": "false",
              "builder-driver": "docker-container", "buildkit-image": harness.env["CACHEPORT_E2E_BUILDKIT_IMAGE"],
              "buildkitd-config": Path(harness.env["CACHEPORT_E2E_BUILDKITD_CONFIG"]).read_text(),
              "builder-driver-opts": "network=host", "mounts-helper-image": harness.env["CACHEPORT_E2E_HELPER_IMAGE"]}
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "build.yml").write_text(
        "name: build\non: push\njobs:\n"
        + workflow_job("first", "", {**inputs, "builder": "first", "context": "first"}, save=True)
        + workflow_job("second", "first", {**inputs, "builder": "second", "context": "second"}, save=True))
    runner = Act(harness, tmp_path)
    try:
        log = runner.run(repo)
        first = "\n".join(line for line in log.splitlines() if line.startswith("[build/first]"))
        second = "\n".join(line for line in log.splitlines() if line.startswith("[build/second]"))
        assert re.search(r"creating the buildx builder first-[0-9a-f]{12}", first), first
        assert re.search(r"creating the buildx builder second-[0-9a-f]{12}", second), second
        assert mount_said(first, mount_id, "missed") and mount_said(first, mount_id, "saved", "main.mounts"), first
        assert mount_said(second, mount_id, "restored", mounts_name("main")), second
        assert server.counts == {"a": 1, "b": 1, "c": 1, "d": 1}  # the second job fetched the new file alone
        assert harness.tags(reg, f"{project}/cache") == sorted(["main", mounts_name("main")])
    finally:
        server.close()
        runner.remove_builders()


def test_under_act_a_protected_save_step_signs_the_cache_mounts_with_the_key_its_env_gives(
        buildkit: Harness, tmp_path: Path) -> None:
    # trust = "signed" on a protected ref: the save step gets the signing key from a secret, through its own
    # `env:` (as docs/ci.md shows), and signs the mounts artifact it writes; the restore step needs no key.
    # `cacheport verify` afterwards reports main.mounts verified by that key. A second job's save step, not given
    # the key, saves nothing and says why in a warning.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    harness = buildkit
    key = Ed25519PrivateKey.generate()
    private = base64.b64encode(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())).decode()
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    reg = harness.env["CACHEPORT_E2E_REGISTRY"]
    project = f"gh-{uuid.uuid4().hex[:8]}"
    repo = tmp_path / "repo"
    server = Downloads()
    mount_id = f"deps-{uuid.uuid4().hex[:8]}"
    downloads_context(harness, repo / "app", server.port, ["a", "b"], mount_id, options="uid=1000,gid=1000")
    shutil.copy2(ACTION, repo / "action.yml")
    shutil.copytree(ROOT / "templates" / "github", repo / "templates" / "github")
    inputs = {"backend": "registry", "set": f"ref={reg}/{project}/cache", "github-runtime": "false",
              "builder-driver": "docker-container", "buildkit-image": harness.env["CACHEPORT_E2E_BUILDKIT_IMAGE"],
              "buildkitd-config": Path(harness.env["CACHEPORT_E2E_BUILDKITD_CONFIG"]).read_text(),
              "builder-driver-opts": "network=host", "mounts-helper-image": harness.env["CACHEPORT_E2E_HELPER_IMAGE"],
              "builder": "signed", "context": "app"}
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "build.yml").write_text(
        "name: build\non: push\njobs:\n" + workflow_job(
            "signed", "", inputs, save=True,
            save_env="          CACHE_SIGNING_KEY: ${{ secrets.CACHE_SIGNING_KEY }}\n")
        + workflow_job("unkeyed", "signed", {**inputs, "builder": "unkeyed"}, save=True))
    trust = {"GITHUB_REF_PROTECTED": "true", "CACHEPORT_TRUST": "signed", "CACHEPORT_SIGNERS": public}
    # A signature names the project: the same GITHUB_REPOSITORY for act's job and for verify.
    runner = Act(harness, tmp_path, {**trust, "GITHUB_REPOSITORY": "org/app"}, {"CACHE_SIGNING_KEY": private})
    try:
        log = runner.run(repo)
        signed = "\n".join(line for line in log.splitlines() if line.startswith("[build/signed]"))
        unkeyed = "\n".join(line for line in log.splitlines() if line.startswith("[build/unkeyed]"))
        assert mount_said(signed, mount_id, "saved", "main.mounts"), log
        assert "(signing-key-env) is not set" not in signed, log
        # A save step not given the key saves nothing (protected builds would refuse it), with a warning.
        assert "trust = \"signed\": this protected pipeline exports, but $CACHE_SIGNING_KEY" in unkeyed, unkeyed
        assert not mount_said(unkeyed, mount_id, "saved", "main.mounts"), unkeyed
        digest = re.search(r"signed \((sha256:[0-9a-f]{64})\)", signed)
        assert digest, log
        assert f"sha256-{digest.group(1).removeprefix('sha256:')}.cacheport-sig" in harness.tags(reg, f"{project}/cache")
        assert private not in log
        verified = subprocess.run(
            [sys.executable, "-m", "cacheport", "verify", "main", "--format", "json", "--backend", "registry",
             "--set", f"ref={reg}/{project}/cache"], cwd=repo, capture_output=True, text=True, timeout=120,
            env={**clean_environ(), **harness.docker_env, **github_env(tmp_path, "org/app", "main"), **trust})
        mounts = [d for d in json.loads(verified.stdout) if d["type"] == "mounts"]
        assert [(d["digest"], d["verified"]) for d in mounts] == [(digest.group(1), True)], [
            d["reason"] for d in mounts]
    finally:
        server.close()
        runner.remove_builders()


def summaries(log: str, job: str) -> list[str]:
    """What the job's steps added to its job summary, as act prints it: ``⚙  Summary - `` and the text, its later
    lines unprefixed, up to the next line act prints for a job."""
    found: list[str] = []
    current: list[str] | None = None
    for line in log.splitlines():
        if line.startswith("["):
            if current is not None:
                found.append("\n".join(current))
            current = None
            if line.startswith(f"[{job}]") and "Summary - " in line:
                current = [line.split("Summary - ", 1)[1]]
        elif current is not None:
            current.append(line)
    if current is not None:
        found.append("\n".join(current))
    return found


def mermaid_charts(markdown: str) -> list[str]:
    """The ``mermaid`` fenced blocks of a Markdown text."""
    return re.findall(r"^```mermaid\n(.*?)^```$", markdown, re.M | re.S)


def chart_series(chart: str) -> tuple[list[str], list[list[float]], list[str]]:
    """An xychart-beta chart's x-axis labels, its series' values (bars, then lines) and their colours."""
    labels = re.findall(r'"([^"]*)"', re.search(r"^\s*x-axis .*\[(.*)\]$", chart, re.M).group(1))  # type: ignore[union-attr]
    values = [[float(v) for v in m.split(",")] for m in re.findall(r"^\s*(?:bar|line) \[(.*)\]$", chart, re.M)]
    palette = re.search(r'plotColorPalette: "(.*)"', chart)
    return labels, values, [c.strip() for c in palette.group(1).split(",")] if palette else []


def draw(charts: list[str], mermaid_js: str, png: Path) -> str:
    """The charts drawn by mermaid.js, the library GitHub draws ```mermaid blocks with, in Debian's headless
    Chromium from files alone: a PNG to look at, and the page's DOM with the SVG mermaid.js made."""
    import html

    chromium = shutil.which("chromium")
    if chromium is None or not Path(mermaid_js).is_file():
        unavailable("no chromium or mermaid.js (CACHEPORT_E2E_MERMAID_JS): scripts/e2e-up installs them")
    page = png.with_suffix(".html")
    page.write_text("<!doctype html><html><body style='background:#fff'>"
                    + "".join(f'<pre class="mermaid">{html.escape(c)}</pre>' for c in charts)
                    + f'<script src="{Path(mermaid_js).as_uri()}"></script>'
                    + "<script>mermaid.initialize({startOnLoad: true});</script></body></html>")
    # Nothing beyond the files: no name resolves, any connection goes to a closed loopback port, and none of
    # Chromium's own background fetches (updates, field trials) starts.
    base = [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=760,720",
            f"--user-data-dir={png.parent / 'chromium-profile'}", "--virtual-time-budget=15000",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"]
    env = {**clean_environ(), "HOME": str(png.parent)}
    subprocess.run([*base, f"--screenshot={png}", page.as_uri()], env=env, capture_output=True, timeout=120,
                   check=True)
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return dom.stdout


def drawn_bars(dom: str, colors: list[str]) -> list[tuple[str, float]]:
    """Per build, left to right, the colour of its tallest bar in the first chart drawn and the share its top
    stands at on the y axis (its labels 0 and 100 give the scale), read from the SVG mermaid.js made."""
    import xml.etree.ElementTree as ET

    ns = "{http://www.w3.org/2000/svg}"
    root = ET.fromstring(dom[dom.index("<svg"):dom.index("</svg>") + 6])

    def y_of(transform: str) -> float:
        return float(re.search(r"translate\([^,]+,\s*([-\d.]+)\)", transform).group(1))  # type: ignore[union-attr]

    axis = next(g for g in root.iter(f"{ns}g") if g.get("class") == "left-axis")
    ticks = {t.text: y_of(t.get("transform", "")) for t in axis.iter(f"{ns}text")}
    zero, full = ticks["0"], ticks["100"]
    bars: dict[float, list[tuple[float, str]]] = {}
    for group in root.iter(f"{ns}g"):
        if (group.get("class") or "").startswith("bar-plot-"):
            for rect in group.iter(f"{ns}rect"):
                share = (zero - float(rect.get("y", "0"))) / (zero - full)
                bars.setdefault(round(float(rect.get("x", "0")), 1), []).append((share, rect.get("fill", "")))
    tallest = [max(at) for _x, at in sorted(bars.items())]
    assert tallest and {c for _s, c in tallest} <= set(colors), (tallest, colors)
    return [(c, share) for share, c in tallest]


def test_under_act_the_job_summary_has_the_trend_chart_under_the_build_report(buildkit: Harness,
                                                                                tmp_path: Path) -> None:
    # Three jobs under act, each with a fresh builder of its own: a cold build, a warm one from the registry's
    # cache, and one of a changed Dockerfile. After each build the report sub-action puts the build report in
    # the job summary, and under it the branch's trend with its chart in Mermaid, which GitHub draws there (it
    # drops data: images). The chart holds every build so far, each bar the share of cached steps the report above
    # it said, coloured by whether an import hit; mermaid.js, the library GitHub draws it with, draws it.
    harness = buildkit
    cache = f"{harness.env['CACHEPORT_E2E_REGISTRY']}/gh-{uuid.uuid4().hex[:8]}/cache"
    repo = harness.project(tmp_path, "repo", work=2)
    changed = repo / "changed"
    changed.mkdir()
    shutil.copy2(repo / "busybox", changed / "busybox")
    (changed / "Dockerfile").write_text((repo / "Dockerfile").read_text().rstrip("\n") + " && echo changed > /c\n")
    shutil.copy2(ACTION, repo / "action.yml")
    shutil.copytree(ROOT / "templates" / "github", repo / "templates" / "github")
    shutil.copytree(ROOT / "report", repo / "report")
    inputs = {"backend": "registry", "set": f"ref={cache}", "github-runtime": "false",
              "builder-driver": "docker-container", "buildkit-image": harness.env["CACHEPORT_E2E_BUILDKIT_IMAGE"],
              "buildkitd-config": Path(harness.env["CACHEPORT_E2E_BUILDKITD_CONFIG"]).read_text(),
              "builder-driver-opts": "network=host", "mounts": "false"}
    jobs = [("cold", "", "."), ("warm", "cold", "."), ("change", "warm", "changed")]
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "build.yml").write_text("name: build\non: push\njobs:\n" + "".join(
        workflow_job(name, needs, {**inputs, "builder": name, "context": context}, report=True)
        for name, needs, context in jobs))
    runner = Act(harness, tmp_path)
    try:
        log = runner.run(repo)
    finally:
        runner.remove_builders()

    drawings: list[tuple[str, list[str], list[str]]] = []  # per job: its summary's charts, their colours
    shares: list[float] = []  # each build's share of cached steps, as its own report said
    hits: list[bool] = []  # whether an import hit, as its own report said
    for (name, _needs, _context), expected_runs in zip(jobs, (["install", "slow", "random"], [], ["random"]),
                                                      strict=True):
        job_log = "\n".join(line for line in log.splitlines() if line.startswith(f"[build/{name}]"))
        # act prints a composite action's summary twice: after its step that wrote it, and after the action's
        found = list(dict.fromkeys(summaries(log, f"build/{name}")))
        assert len(found) == 1 and found[0].startswith("### BuildKit cache\n"), found or log
        summary = found[0]
        cached, total = map(int, re.search(r": (\d+)/(\d+) steps cached, \d+ executed\*\*", summary).groups())  # type: ignore[union-attr]
        assert ran(job_log) == expected_runs, job_log  # what BuildKit really ran
        shares.append(cached / total)
        hits.append("hit" in {status for (_cache, kind), status in table(summary).items() if kind == "import"})
        # Under the report, the trend: every build of the branch so far, and no data: image GitHub would drop.
        history = summary[summary.index("#### cacheport: cache history"):]
        assert summary.index("### BuildKit cache") < summary.index("#### cacheport: cache history")
        builds = f"{len(shares)} build" + ("" if len(shares) == 1 else "s")
        assert f"**cache history: {builds}**" in history and "data:image" not in history
        assert f"| main | {len(shares)} | {sum(hits)} (" in history
        charts = mermaid_charts(history)
        assert charts and charts[0].splitlines()[-1].strip().startswith("bar"), history
        labels, series, colors = chart_series(charts[0])
        assert labels == [str(i) for i in range(1, len(shares) + 1)]
        assert all(len(values) == len(shares) for values in series)
        # each build's bar: its share in percent, in the series of its kind (hit: the first colour, green)
        assert [max(column) for column in zip(*series, strict=True)] == [round(s * 100) for s in shares]
        hit_series = series[colors.index("#2e9d57")] if "#2e9d57" in colors else [0.0] * len(shares)
        assert [v > 0 for v in hit_series] == [h and s > 0 for h, s in zip(hits, shares, strict=True)]
        if len(shares) >= 2:  # and the build times, one point per build
            _labels, (times,), _colors = chart_series(charts[1])
            assert len(times) == len(shares) and all(t > 0 for t in times)
        drawings.append((name, charts, colors))
    # what the builds did: the cold one ran every step, the warm one none, the changed one its last
    assert shares[0] == 0 and not hits[0] and shares[1] == 1 and hits[1] and 0 < shares[2] < 1 and hits[2]

    # Each summary's chart as mermaid.js draws it: a bar per build so far, as tall as its share, green on a hit.
    for n, (name, charts, colors) in enumerate(drawings, 1):
        png = tmp_path / f"summary-{name}.png"
        drawn = drawn_bars(draw(charts, harness.env.get("CACHEPORT_E2E_MERMAID_JS", ""), png), colors)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(drawn) == n, drawn
        for (color, height), share, hit in zip(drawn, shares[:n], hits[:n], strict=True):
            assert abs(height - share) < 0.02, (name, drawn, shares)
            if share > 0:
                assert color == ("#2e9d57" if hit else "#b8bec6"), (name, drawn, hits)

"""The GitLab CI/CD components, run by a real pipeline runner: gitlab-ci-local's shell executor.

Each scenario is one or more pipeline runs in a git repository of its own (with a bare ``origin``), whose
``.gitlab-ci.yml`` includes the components from this checkout with ``include: local:``. The jobs run the
components' scripts as written, against the harness: the auth registry stands in for GitLab's registry, and
the main dockerd's TLS listener for Docker-in-Docker with ``DOCKER_TLS_CERTDIR`` (``DOCKER_HOST=tcp://…``,
``DOCKER_TLS_VERIFY=1``, ``DOCKER_CERT_PATH``), or its unix socket for a shell runner's own docker.

Most scenarios build with the ``docker`` builder driver, the engine's own builder. The component's default,
``docker-container``, runs end to end too, with ``buildkit-image`` set to the BuildKit image scripts/e2e-up
makes from ``../shared/buildkit`` (a loopback tag: nothing is pulled) and its buildkitd.toml as the
``buildkitd-config`` input: on the TLS context, cold, warm on a fresh builder, a branch, the builder reused by
the next job and a new builder for changed settings.

Assertions are on the job log and on what the registries hold. No job log may contain the registry
password, plain or base64, and after every run no docker configuration may hold it (the runner's; the job's
own is gone): every run checks that.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import attrs
import pytest

from cacheport.refs import slug

from .conftest import unavailable
from .harness import RAN, Downloads, Harness, cache_report, clean_environ, downloads_context, mount_said

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
FORK_MR = {  # a merge request pipeline from a fork, run in the parent project (GitLab's own variables)
    "CI_PIPELINE_SOURCE": "merge_request_event",
    "CI_MERGE_REQUEST_IID": "7",
    "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "999",
    "CI_MERGE_REQUEST_PROJECT_ID": "1217",
    "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "patch-1",
    "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
}


@pytest.fixture(scope="module")
def runner(harness: Harness) -> str:
    """gitlab-ci-local, as scripts/e2e-up installs it; skip (or, with CACHEPORT_E2E=require, fail) without it."""
    path = harness.env.get("CACHEPORT_E2E_GITLAB_CI_LOCAL", "")
    if not path or not os.access(path, os.X_OK):
        unavailable("no gitlab-ci-local (CACHEPORT_E2E_GITLAB_CI_LOCAL; run scripts/e2e-up as root)")
    if not harness.env.get("CACHEPORT_E2E_DOCKER_TLS_HOST") or not harness.env.get("CACHEPORT_E2E_DOCKER_CERT_PATH"):
        unavailable("dockerd has no TLS listener (CACHEPORT_E2E_DOCKER_TLS_HOST; run scripts/e2e-down, then e2e-up)")
    if shutil.which("rsync") is None:
        unavailable("gitlab-ci-local needs rsync (scripts/e2e-up installs it)")
    return path


@attrs.frozen
class Run:
    """One pipeline run: gitlab-ci-local's exit code and its whole output (every job's log, prefixed by name)."""

    code: int
    log: str

    @property
    def ran(self) -> list[str]:
        """The reference RUN steps that executed (each prints a marker when it does)."""
        return [line for line in self.log.splitlines() if RAN in line and "echo" not in line]

    def passed(self, job: str) -> bool:
        return re.search(rf"^\s*PASS\s+{re.escape(job)}\s*$", self.log, re.M) is not None


@attrs.define
class Project:
    """A project on a pretend GitLab: a git checkout with an ``origin``, a registry image, a runner's docker."""

    harness: Harness
    runner: str
    tmp: Path
    name: str = attrs.field(factory=lambda: f"group/app-{uuid.uuid4().hex[:8]}")
    repo: Path = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.repo = self.harness.project(self.tmp, "app", work=2.0)
        (self.repo / "templates").mkdir()
        for path in TEMPLATES.rglob("*.yml"):  # the component project's files, as `include: local:` finds them
            target = self.repo / "templates" / path.relative_to(TEMPLATES)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        origin = self.tmp / "origin.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
        self.git("init", "-q", "-b", "main")
        self.git("remote", "add", "origin", str(origin))
        (self.repo / ".git" / "info" / "exclude").write_text(".gitlab-ci-local/\ncacheport-report.json\n"
                                                               "cacheport-history.html\ncacheport-history/\n")
        # The runner's own docker configuration: its logins, contexts and buildx builders, kept between jobs.
        config = self.tmp / "docker-config"
        (config / "cli-plugins").mkdir(parents=True)
        (config / "cli-plugins" / "docker-buildx").symlink_to(
            Path(self.harness.env["CACHEPORT_E2E_DOCKER_CONFIG"]) / "cli-plugins" / "docker-buildx")
        # The project's CI/CD settings: the registry password, in a file of its own as GitLab keeps it.
        secrets = self.tmp / "ci-variables.yml"
        secrets.write_text(json.dumps({"CI_REGISTRY_PASSWORD": self.password}))
        secrets.chmod(0o600)
        bin_dir = self.tmp / "bin"  # cacheport from this checkout, as if the image had it installed
        bin_dir.mkdir()
        (bin_dir / "cacheport").write_text(f'#!/bin/sh\nexec {sys.executable} -m cacheport "$@"\n')
        (bin_dir / "cacheport").chmod(0o755)
        (self.tmp / "home").mkdir()
        (self.tmp / "home" / ".gitconfig").write_text("[user]\n\tname = dev\n\temail = dev@example.invalid\n")

    @property
    def registry(self) -> str:
        return self.harness.env["CACHEPORT_E2E_AUTH_REGISTRY"]

    @property
    def user(self) -> str:
        return self.harness.env["CACHEPORT_E2E_AUTH_USER"]

    @property
    def password(self) -> str:
        return self.harness.env["CACHEPORT_E2E_AUTH_PASSWORD"]

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=dev", "-c", "user.email=dev@example.invalid", *args],
                              cwd=self.repo, check=True, capture_output=True, text=True).stdout

    def commit(self, ci: str | None = None, message: str = "change", **files: str) -> None:
        """Commit a new ``.gitlab-ci.yml`` and other files (by name), and push the branch to origin."""
        if ci is not None:
            (self.repo / ".gitlab-ci.yml").write_text(ci)
        for name, text in files.items():
            (self.repo / name).write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        self.git("push", "-q", "origin", "HEAD")

    def docker_variables(self, tls: bool) -> dict[str, str]:
        """What a job sees: Docker-in-Docker with TLS, as the docker image's entrypoint sets it, or a plain socket."""
        if tls:
            return {"DOCKER_HOST": self.harness.env["CACHEPORT_E2E_DOCKER_TLS_HOST"], "DOCKER_TLS_VERIFY": "1",
                    "DOCKER_CERT_PATH": self.harness.env["CACHEPORT_E2E_DOCKER_CERT_PATH"]}
        return {"DOCKER_HOST": self.harness.env["CACHEPORT_E2E_DOCKER_HOST"]}

    def run(self, *jobs: str, tls: bool = True, variables: dict[str, str] | None = None,
            unset: tuple[str, ...] = ()) -> Run:
        """Run the pipeline (or only ``jobs``, whatever their rules) on the checked-out branch."""
        proc = self._runner(*jobs, tls=tls, variables=variables, unset=unset)
        run = Run(proc.returncode, proc.stdout + proc.stderr)
        for secret in self.secrets:
            assert secret not in run.log, "a job log holds the registry password"
        self.assert_no_password_in_a_docker_config()
        return run

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.password, b64(self.password), b64(f"{self.user}:{self.password}")

    def assert_no_password_in_a_docker_config(self) -> None:
        """The jobs logged in (for the push, for the cache), each to a docker configuration of its own, which
        its after_script removed: none is left, and the runner's own holds no password."""
        assert not list(self.tmp.rglob("cacheport-docker")), "a job's own docker configuration was left behind"
        for path in (self.tmp / "docker-config").rglob("*"):
            if path.is_file() and not path.is_symlink() and path.parent.name != "cli-plugins":
                text = path.read_text(errors="replace")
                assert not [s for s in self.secrets if s in text], f"{path} holds the registry password"

    def builders(self) -> list[str]:
        """The buildx builders the runner keeps (in its docker configuration)."""
        instances = self.tmp / "docker-config" / "buildx" / "instances"
        return sorted(p.name for p in instances.iterdir()) if instances.exists() else []

    def docker(self, *args: str) -> str:
        """The runner's docker, with its own configuration (contexts, builders)."""
        proc = subprocess.run([self.harness.env["CACHEPORT_E2E_DOCKER_BIN"], *args], capture_output=True, text=True,
                              env={**clean_environ(), "DOCKER_CONFIG": str(self.tmp / "docker-config"),
                                   **self.docker_variables(tls=True)}, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def jobs(self, variables: dict[str, str] | None = None) -> list[str]:
        """The jobs a pipeline with these variables would run, by their rules."""
        proc = self._runner("--list-csv", tls=False, variables=variables)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rows = proc.stdout.splitlines()
        return [row.split(";")[0] for row in rows[rows.index("name;stage;when;allowFailure;environment;needs") + 1:]
                if row.strip()]

    def _runner(self, *args: str, tls: bool, variables: dict[str, str] | None = None,
                unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        given = {
            "GITLAB_CI": "true",  # gitlab-ci-local says false, so that jobs can tell; these jobs are GitLab's
            "CI_REGISTRY": self.registry,
            "CI_REGISTRY_IMAGE": f"{self.registry}/{self.name}",
            "CI_REGISTRY_USER": self.user,
            "CI_PROJECT_DIR": str(self.repo),  # where the shell executor runs the job (else a made-up /builds/...)
            "DOCKER_CONFIG": str(self.tmp / "docker-config"),
            **self.docker_variables(tls),
            **(variables or {}),
        }
        cmd = [self.runner, "--force-shell-executor", "--no-color", "--variables-file",
               str(self.tmp / "ci-variables.yml"), "--home", str(self.tmp / "home"),
               "--ignore-predefined-vars", ",".join(k for k in given if k.startswith(("CI_", "GITLAB_")))]
        for key, value in given.items():
            cmd += ["--variable", f"{key}={value}"]
        for key in unset:
            cmd += ["--unset-variable", key]
        docker_bin = str(Path(self.harness.env["CACHEPORT_E2E_DOCKER_BIN"]).parent)
        env = {**clean_environ(), "HOME": str(self.tmp / "home"),
               "PATH": os.pathsep.join([str(self.tmp / "bin"), docker_bin, os.environ.get("PATH", "")])}
        for key in ("DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
            env.pop(key, None)
        return subprocess.run([*cmd, *args], cwd=self.repo, env=env, capture_output=True, text=True, timeout=600)

    def cache_tags(self, registry: str | None = None, repository: str | None = None) -> list[str]:
        auth = (self.user, self.password) if registry is None else None
        return self.harness.tags(registry or self.registry, repository or f"{self.name}/cache", auth=auth)

    def image_tags(self) -> list[str]:
        return self.harness.tags(self.registry, self.name, auth=(self.user, self.password))

    def layers(self, tag: str) -> list[str]:
        """The layer digests of the pushed image (its first platform's manifest)."""
        manifest = self.manifest(self.name, tag)
        if "manifests" in manifest:
            platform = next(m for m in manifest["manifests"]
                            if m.get("annotations", {}).get("vnd.docker.reference.type") != "attestation-manifest")
            manifest = self.manifest(self.name, platform["digest"])
        return [layer["digest"] for layer in manifest["layers"]]

    def manifest(self, repository: str, reference: str) -> dict[str, object]:
        request = urllib.request.Request(f"http://{self.registry}/v2/{repository}/manifests/{reference}")
        request.add_header("Authorization", f"Basic {b64(f'{self.user}:{self.password}')}")
        request.add_header("Accept", ", ".join([
            "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json"]))
        with urllib.request.urlopen(request, timeout=10) as response:
            doc: dict[str, object] = json.load(response)
            return doc


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def component(*, name: str = "container-build", **inputs: str) -> str:
    """An ``include:`` of the container-build component from this checkout, with the docker driver."""
    given = {"builder-driver": "docker", "build-args": "--network=host", **inputs}
    lines = [f"  - local: templates/{name}.yml", "    inputs:"]
    lines += [f"      {key}: {json.dumps(value)}" for key, value in given.items()]
    return "\n".join(lines) + "\n"


def pipeline(*includes: str, jobs: tuple[str, ...] = ("container-build",), extra: str = "") -> str:
    """A ``.gitlab-ci.yml``: the includes, and ``services: []`` for each job (gitlab-ci-local would start
    docker:dind even for the shell executor; the harness's dockerd stands in for it)."""
    text = "include:\n" + "".join(includes)
    text += "".join(f"{job}:\n  services: []\n" for job in jobs)
    return text + extra


REF_SLUG_JOB = """
ref-slug:
  stage: .pre
  script:
    - echo "ref-slug=<$CI_COMMIT_REF_SLUG>"
"""


def built(run: Run, job: str = "container-build") -> None:
    assert run.code == 0 and run.passed(job), run.log


def test_the_tls_listener_is_docker_in_docker_s(harness: Harness, runner: str) -> None:
    host = harness.env["CACHEPORT_E2E_DOCKER_TLS_HOST"]
    verified = {"DOCKER_HOST": host, "DOCKER_TLS_VERIFY": "1",
                "DOCKER_CERT_PATH": harness.env["CACHEPORT_E2E_DOCKER_CERT_PATH"]}
    docker = [harness.env["CACHEPORT_E2E_DOCKER_BIN"], "version", "--format", "{{.Server.Version}}"]
    ok = subprocess.run(docker, env={**clean_environ(), **verified}, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    # Without a client certificate the daemon refuses, as dind with DOCKER_TLS_CERTDIR does.
    anonymous = subprocess.run(docker, env={**clean_environ(), "DOCKER_HOST": host}, capture_output=True, text=True,
                               timeout=30)
    assert anonymous.returncode != 0


def test_main_is_cold_then_warm_from_the_registry_over_tls(harness: Harness, runner: str, tmp_path: Path) -> None:
    project = Project(harness, runner, tmp_path)
    project.commit(pipeline(component()))
    harness.prune()
    cold = project.run()
    built(cold)
    assert cold.ran, "the cold run should have run its steps"
    assert project.cache_tags() == ["main"] and project.image_tags() == ["main"]
    assert cache_report(cold.log)["export"] == {f"registry {project.registry}/{project.name}/cache:main": "written"}
    cold_layers = project.layers("main")

    harness.prune()  # nothing local is left: only the registry can make the next run warm
    warm = project.run()
    built(warm)
    assert warm.ran == [], warm.log
    assert ": 4/4 steps cached, 0 executed" in warm.log
    assert project.layers("main") == cold_layers  # the random step's layer too: it came from the cache
    # a collapsible section of the job log: gitlab-ci-local, like GitLab, reads the markers and shows the section
    assert re.search(r"cacheport_report took \d+ms", warm.log), warm.log
    # and the report is in the log once: its headline is the section's header, each import inside it
    hit = f"cacheport: cache:   import hit     registry {project.registry}/{project.name}/cache:main"
    assert warm.log.count(": 4/4 steps cached, 0 executed") == 1 and warm.log.count(hit) == 1, warm.log
    artifacts = sorted(project.repo.rglob("cacheport-report.json"), key=lambda p: p.stat().st_mtime)
    assert artifacts, "the job's cacheport-report.json artifact is missing"
    report = json.loads(artifacts[-1].read_text())
    assert report["steps"]["cached"] == report["steps"]["total"] == 4
    assert [(i["cache"], i["status"]) for i in report["imports"]] == [
        (f"registry {project.registry}/{project.name}/cache:main", "hit")]
    # The cache's history: the trend in its own collapsed section, and the page exposed in the merge request.
    assert re.search(r"cacheport_history took \d+ms", warm.log), warm.log
    assert re.search(r"main +2 +1 \(50%\)", warm.log), warm.log
    pages = sorted(project.repo.rglob("cacheport-history.html"), key=lambda p: p.stat().st_mtime)
    assert pages and pages[-1].read_text().count("<svg") == 1, "the history page artifact is missing"


def test_a_new_branch_is_warm_from_main_and_exports_to_its_own_slug(harness: Harness, runner: str,
                                                                    tmp_path: Path) -> None:
    project = Project(harness, runner, tmp_path)
    project.commit(pipeline(component()))
    built(project.run())
    main_layers = project.layers("main")

    project.git("checkout", "-q", "-b", "feature/Login")
    project.commit(message="start the feature")
    harness.prune()
    first = project.run()
    built(first)
    assert first.ran == [], first.log  # its own tag is empty: the hits came from main's
    cache = f"{project.registry}/{project.name}/cache"
    assert cache_report(first.log) == {"import": {f"registry {cache}:feature-login": "missed", f"registry {cache}:main": "hit"},
                                       "export": {f"registry {cache}:feature-login": "written"}}, first.log
    assert project.cache_tags() == ["feature-login", "main"]
    assert project.layers("feature-login") == main_layers


def test_a_branch_with_separator_runs_is_tagged_with_the_pipeline_s_ref_slug(harness: Harness, runner: str,
                                                                              tmp_path: Path) -> None:
    project = Project(harness, runner, tmp_path)
    project.git("checkout", "-q", "-b", "deps/bump__v2")
    project.commit(pipeline(component(), extra=REF_SLUG_JOB))
    run = project.run()
    built(run)
    ref_slug = re.search(r"^.*ref-slug=<([^>]*)>$", run.log, re.M)
    assert ref_slug, run.log
    # gitlab-ci-local collapses separator runs, where GitLab keeps each one (`deps-bump--v2`, as slug()
    # computes): either way, the cache tag is the pipeline's own $CI_COMMIT_REF_SLUG, the image's tag.
    assert ref_slug.group(1) == "deps-bump-v2" != slug("deps/bump__v2")
    assert project.cache_tags() == [ref_slug.group(1)] == project.image_tags()


def job_log(run: Run, job: str) -> str:
    """One job's lines of a pipeline's log (gitlab-ci-local prefixes each with the job's name, padded)."""
    return "\n".join(line for line in run.log.splitlines() if re.match(rf"{re.escape(job)}\s", line))


def ran(log: str) -> list[str]:
    return [line for line in log.splitlines() if RAN in line and "echo" not in line]


MADE = re.compile(r"creating the buildx builder (cacheport-[0-9a-f]{12})")


def test_the_default_docker_container_builder_cold_warm_a_branch_reused_and_remade(
        harness: Harness, runner: str, buildkit: Harness, tmp_path: Path) -> None:
    # The component's default path on Docker-in-Docker with TLS: a docker-container builder of the job's own,
    # on a context with the job's certificates, running the BuildKit image scripts/e2e-up made (a loopback tag)
    # and its buildkitd.toml, as the inputs name them.
    image = buildkit.env["CACHEPORT_E2E_BUILDKIT_IMAGE"]
    config = Path(buildkit.env["CACHEPORT_E2E_BUILDKITD_CONFIG"]).read_text()
    project = Project(harness, runner, tmp_path)
    inputs = {"builder-driver": "docker-container", "buildkit-image": image, "buildkitd-config": config,
              "builder-driver-opts": "network=host", "build-args": ""}
    project.commit(pipeline(component(**{"job-name": "first", **inputs}),
                            component(**{"job-name": "second", "stage": "test", **inputs}), jobs=("first", "second")))
    try:
        cache = f"{project.registry}/{project.name}/cache"

        # main, cold: the first job makes the builder and runs every step; the next job on the runner reuses it
        cold = project.run()
        assert cold.code == 0 and cold.passed("first") and cold.passed("second"), cold.log
        first, second = job_log(cold, "first"), job_log(cold, "second")
        made = MADE.search(first)
        assert made and "reusing the buildx builder" not in first, first
        builder = made.group(1)
        assert f"reusing the buildx builder {builder}" in second and not MADE.search(second), second
        assert len(ran(first)) == 3 and ran(second) == [], cold.log
        # docker login says where it wrote the password: the job's own configuration (gone now: Project.run)
        assert f"stored unencrypted in '{project.repo}.tmp/cacheport-docker/config.json'" in first, first
        assert project.builders() == [builder]
        # the builder runs the BuildKit image given, on the TLS context
        assert project.docker("inspect", "--format", "{{.Config.Image}}", f"buildx_buildkit_{builder}0").strip() == image
        assert re.search(r"Endpoint:\s+cacheport-tls", project.docker("buildx", "inspect", builder))
        assert cache_report(first)["export"] == {f"registry {cache}:main": "written"}
        assert project.cache_tags() == ["main"] and project.image_tags() == ["main"]  # pushed with the job's login
        cold_layers = project.layers("main")

        # main again on a fresh builder: only the registry's cache can make it warm
        project.docker("buildx", "rm", builder)
        warm = project.run("first")
        assert warm.code == 0 and warm.passed("first"), warm.log
        assert MADE.search(warm.log) and MADE.search(warm.log).group(1) == builder  # type: ignore[union-attr]
        assert ran(warm.log) == [] and ": 4/4 steps cached, 0 executed" in warm.log, warm.log
        assert project.layers("main") == cold_layers  # the random step's layer too: it came from the cache

        # a new branch, on a fresh builder: warm from main's cache, exporting to its own tag
        project.git("checkout", "-q", "-b", "feature/login")
        project.commit(message="start the feature")
        project.docker("buildx", "rm", builder)
        branch = project.run("first")
        assert branch.code == 0 and branch.passed("first"), branch.log
        assert ran(branch.log) == [], branch.log
        assert cache_report(branch.log) == {"import": {f"registry {cache}:feature-login": "missed",
                                                       f"registry {cache}:main": "hit"},
                                            "export": {f"registry {cache}:feature-login": "written"}}, branch.log
        assert project.cache_tags() == ["feature-login", "main"]

        # a changed input (a registry mirror in the buildkitd config): a new builder, not the old one reused
        plain = harness.env["CACHEPORT_E2E_REGISTRY"]
        mirror = f'[registry."docker.io"]\n  mirrors = ["{plain}/dockerhub"]\n'
        changed = {**inputs, "buildkitd-config": config + mirror}
        project.commit(pipeline(component(**{"job-name": "first", **changed}),
                                component(**{"job-name": "second", "stage": "test", **changed}), jobs=("first", "second")))
        remade = project.run("first")
        assert remade.code == 0 and remade.passed("first"), remade.log
        new = MADE.search(remade.log)
        assert new and new.group(1) != builder and "reusing the buildx builder" not in remade.log, remade.log
        assert project.builders() == sorted([builder, new.group(1)])
        assert ran(remade.log) == [], remade.log  # warm from the branch's own cache
    finally:  # the builders' containers live in the engine, which other tests share
        for name in project.builders():
            project.docker("buildx", "rm", name)


def test_a_merge_request_from_a_fork_imports_but_exports_nothing(harness: Harness, runner: str,
                                                                  tmp_path: Path) -> None:
    project = Project(harness, runner, tmp_path)
    project.commit(pipeline(component()))
    built(project.run(tls=False))
    project.git("checkout", "-q", "-b", "patch-1")
    project.commit(message="a contribution")
    harness.prune()
    run = project.run(tls=False, variables=FORK_MR, unset=("CI_COMMIT_BRANCH",))
    built(run)
    assert "untrusted" in run.log, run.log  # cacheport explain says why
    assert run.ran == [], run.log  # warm from the target branch's cache
    assert cache_report(run.log)["export"] == {} and re.search(r"cacheport: cache:\s+export none", run.log), run.log
    assert project.cache_tags() == ["main"]


def test_the_scheduled_cleanup_lists_then_deletes_the_caches_of_gone_branches(harness: Harness, runner: str,
                                                                             tmp_path: Path) -> None:
    project = Project(harness, runner, tmp_path)
    cleanup = "  - local: templates/cache-cleanup.yml\n"
    jobs = ("container-build", "cache-cleanup")
    project.commit(pipeline(component(), cleanup, jobs=jobs))
    built(project.run("container-build", tls=False))
    dockerfile = (project.repo / "Dockerfile").read_text()
    for branch in ("feature-a", "old-b"):  # each its own content, so each cache tag has its own manifest
        project.git("checkout", "-q", "-b", branch, "main")
        project.commit(Dockerfile=dockerfile + f"RUN echo {branch} > /branch\n")
        built(project.run("container-build", tls=False))
    project.git("checkout", "-q", "main")
    project.git("push", "-q", "origin", "--delete", "old-b")  # merged, and its source branch deleted
    assert project.cache_tags() == ["feature-a", "main", "old-b"]

    schedule = {"CI_PIPELINE_SOURCE": "schedule"}
    assert project.jobs() == ["container-build"]  # a push runs no cleanup
    assert project.jobs(schedule) == ["container-build", "cache-cleanup"]
    dry = project.run("cache-cleanup", tls=False, variables=schedule)
    assert dry.code == 0 and dry.passed("cache-cleanup"), dry.log
    assert re.search(r"would delete\s+old-b\s.*its branch is gone", dry.log), dry.log
    assert re.search(r"keep\s+main\s.*default branch", dry.log) and re.search(r"keep\s+feature-a\s", dry.log)
    assert project.cache_tags() == ["feature-a", "main", "old-b"]  # a dry run deletes nothing

    project.commit(pipeline(component(), cleanup + "    inputs:\n      delete: true\n", jobs=jobs))
    done = project.run("cache-cleanup", tls=False, variables=schedule)
    assert done.code == 0 and done.passed("cache-cleanup"), done.log
    assert re.search(r"deleted\s+old-b\s", done.log), done.log
    assert project.cache_tags() == ["feature-a", "main"]


def test_switching_cacheport_backend_in_the_pipeline_reads_the_old_cache_while_migrating(
        harness: Harness, runner: str, tmp_path: Path) -> None:
    project = Project(harness, runner, tmp_path)
    plain = harness.env["CACHEPORT_E2E_REGISTRY"]
    before = pipeline(component()) + "variables:\n  CACHEPORT_BACKEND: gitlab\n"
    project.commit(before)
    built(project.run())
    assert project.cache_tags() == ["main"]

    new_home = f"{plain}/{project.name}/cache"
    after = before.replace("  CACHEPORT_BACKEND: gitlab\n", "  CACHEPORT_BACKEND: registry\n"
                           f"  CACHEPORT_REGISTRY__REF: {new_home}\n  CACHEPORT_MIGRATION__FROM: gitlab\n")
    assert len(set(before.splitlines()) - set(after.splitlines())) == 1  # the one line that says where
    project.commit(after)
    harness.prune()
    moved = project.run()
    built(moved)
    assert "migrating from gitlab: dual-read" in moved.log  # cacheport explain, in the job log
    assert moved.ran == [], moved.log  # the new home is empty: every hit came from the old one
    old_home = f"{project.registry}/{project.name}/cache"
    assert cache_report(moved.log) == {"import": {f"registry {new_home}:main": "missed", f"registry {old_home}:main": "hit"},
                                       "export": {f"registry {new_home}:main": "written"}}, moved.log
    assert project.cache_tags(plain, f"{project.name}/cache") == ["main"]


def test_the_include_template_for_gitlab_without_components_runs_the_same_job(harness: Harness, runner: str,
                                                                              tmp_path: Path) -> None:
    project = Project(harness, runner, tmp_path)
    project.commit(pipeline("  - local: templates/gitlab/cacheport.gitlab-ci.yml\n") + (
        "variables:\n  CONTAINER_BUILDX_DRIVER: docker\n  CONTAINER_BUILD_ARGS: --network=host\n"))
    run = project.run()
    built(run)
    assert run.ran and project.cache_tags() == ["main"] and project.image_tags() == ["main"]


def test_a_later_job_s_fresh_builder_gets_the_cache_mounts_an_earlier_job_saved(
        harness: Harness, runner: str, buildkit: Harness, tmp_path: Path) -> None:
    # The component's default (mounts: true) on docker-container builders of the jobs' own, one per job (each
    # its own `builder` name, so each job's is new): the first job's step downloads three files from a server
    # on 127.0.0.1 into its cache mount, and the job saves the mount beside the layer cache; the next job
    # builds a context whose requirements add one file, and its fresh builder gets the mount first, so only
    # that file is downloaded. A third job with `mounts: false` downloads everything again.
    from cacheport.mounts.artifact import mounts_name

    image = buildkit.env["CACHEPORT_E2E_BUILDKIT_IMAGE"]
    config = Path(buildkit.env["CACHEPORT_E2E_BUILDKITD_CONFIG"]).read_text()
    project = Project(harness, runner, tmp_path)
    server = Downloads()
    mount_id = f"deps-{uuid.uuid4().hex[:8]}"
    files = {".": ["a", "b", "c"], "next": ["a", "b", "c", "d"], "off": ["a", "b", "c", "d", "e"]}
    for context, names in files.items():  # an unprivileged user's cache, as a package manager's step has it
        downloads_context(harness, project.repo / context, server.port, names, mount_id, options="uid=1000,gid=1000")
    inputs = {"builder-driver": "docker-container", "buildkit-image": image, "buildkitd-config": config,
              "builder-driver-opts": "network=host", "build-args": "--network=host",
              "mounts-helper-image": harness.env["CACHEPORT_E2E_HELPER_IMAGE"]}
    jobs = (("first", "build", ".", {}), ("second", "test", "next", {}), ("third", "deploy", "off", {"mounts": False}))
    project.commit(pipeline(*(component(**{"job-name": job, "stage": stage, "context": context, "builder": job,
                                           **inputs, **extra})  # type: ignore[arg-type]
                              for job, stage, context, extra in jobs),
                            jobs=tuple(job for job, *_ in jobs)))
    try:
        run = project.run()
        assert run.code == 0 and all(run.passed(job) for job, *_ in jobs), run.log
        first, second, third = (job_log(run, job) for job, *_ in jobs)
        made = re.findall(r"creating the buildx builder ((?:first|second|third)-[0-9a-f]{12})", run.log)
        assert len(set(made)) == 3 and "reusing the buildx builder" not in run.log, run.log  # a new one per job
        assert ran(first) and ran(second) and ran(third), run.log  # each context's step ran
        assert mount_said(first, mount_id, "missed") and mount_said(first, mount_id, "saved", "main.mounts"), first
        assert mount_said(second, mount_id, "restored", mounts_name("main")), second
        assert not mount_said(third, mount_id, r"\w+"), third  # mounts: false leaves them alone
        # what the server counted: the second job fetched only the one new file; the third, everything again
        assert server.counts == {"a": 2, "b": 2, "c": 2, "d": 2, "e": 1}
        assert project.cache_tags() == sorted(["main", mounts_name("main")])
    finally:
        server.close()
        for name in project.builders():
            project.docker("buildx", "rm", name)

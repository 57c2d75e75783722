"""The CI templates and examples: they parse, they match the CLI, and they do what docs/ci.md says.

The GitLab components (rendered with their inputs as GitLab does), the include template (merged with a
pipeline the way GitLab merges includes) and the GitHub action's steps run here for real, with cacheport from
this checkout and a stand-in ``docker`` that records every call. tests/e2e/test_gitlab_pipeline.py runs the
components with a real pipeline runner against real servers.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from cacheport.plugins import Plugins
from tests import github_actions
from tests.github_actions import expression, read_outputs

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "templates" / "gitlab" / "cacheport.gitlab-ci.yml"
BUILD_COMPONENT = ROOT / "templates" / "container-build.yml"
CLEANUP_COMPONENT = ROOT / "templates" / "cache-cleanup.yml"
COMPONENTS = (BUILD_COMPONENT, CLEANUP_COMPONENT)
GITLAB_EXAMPLE = ROOT / "examples" / "gitlab" / ".gitlab-ci.yml"
TEMPLATE_EXAMPLE = ROOT / "examples" / "gitlab" / "without-components.gitlab-ci.yml"
ACTION = ROOT / "action.yml"
GITHUB_EXAMPLE = ROOT / "examples" / "github" / "build.yml"
REPORT_ACTION = ROOT / "report" / "action.yml"
PLAN_FLAGS = ROOT / "templates" / "github" / "plan-flags.sh"
CI_DOC = ROOT / "docs" / "ci.md"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", [TEMPLATE, GITLAB_EXAMPLE, TEMPLATE_EXAMPLE, ACTION, GITHUB_EXAMPLE,
                                  ROOT / "mkdocs.yml"], ids=lambda p: str(p.relative_to(ROOT)))
def test_the_yaml_parses(path: Path) -> None:
    assert isinstance(load(path), dict)


@pytest.mark.parametrize("path", COMPONENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_component_is_a_spec_then_its_jobs(path: Path) -> None:
    # GitLab's component layout: templates/<name>.yml, a `spec:` document, `---`, then the configuration.
    spec, body = yaml.safe_load_all(path.read_text(encoding="utf-8"))
    assert set(spec) == {"spec"} and set(spec["spec"]) == {"inputs"}
    assert len(body) == 1 and next(iter(body)) == "$[[ inputs.job-name ]]"  # one job, no global keywords
    for name, item in spec["spec"]["inputs"].items():
        assert item.get("description"), f"input {name} has no description"
        assert "default" in item, f"input {name} has no default: every input is optional"
        assert isinstance(item["default"], bool) == (item.get("type") == "boolean"), name
        assert f"$[[ inputs.{name} ]]" in path.read_text(), f"input {name} is never used"


def installed(backend: str) -> bool:
    from cacheport.plugins import load as load_plugins

    return backend in load_plugins({}).backends()


def section(text: str, heading: str) -> str:
    """A markdown section: from ``heading`` to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    body = text.split(heading + "\n", 1)[1]
    stop = re.search(rf"^#{{1,{len(level)}}} ", body, re.M)
    return body[: stop.start()] if stop else body


def table_names(text: str) -> list[str]:
    """The first column of every markdown table row in ``text`` (without backticks), headers excluded."""
    lines = text.splitlines()
    names = []
    for i, line in enumerate(lines):
        header = i + 1 < len(lines) and lines[i + 1].startswith("|---")
        if line.startswith("|") and not line.startswith("|---") and not header:
            names.append(line.split("|")[1].strip().strip("`"))
    return names


def fenced(text: str, lang: str) -> list[str]:
    return [m.group(1) for m in re.finditer(rf"^```{lang}\n(.*?)^```$", text, re.M | re.S)]


def stand_in_docker(bin_dir: Path, log: Path) -> None:
    """A ``docker`` that records its arguments (a login's stdin, the chosen builder, its DOCKER_CONFIG, the
    buildkitd config it is given and the config.json it sees) and succeeds, except
    ``buildx inspect`` but of a builder ``buildx create`` made, and ``context update`` of a missing context;
    ``context show`` says ``default``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "docker"
    script.write_text(f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
stdin = sys.stdin.read() if "--password-stdin" in args else None
with open({str(log)!r}) if os.path.exists({str(log)!r}) else open(os.devnull) as fh:
    before = [json.loads(line)["args"] for line in fh]
with open({str(log)!r}, "a") as fh:
    config = os.environ.get("DOCKER_CONFIG")
    files = {{a: open(a).read() for a, b in zip(args[1:], args) if b == "--buildkitd-config"}}
    modes = {{}}
    if config and os.path.exists(os.path.join(config, "config.json")):
        files["config.json"] = open(os.path.join(config, "config.json")).read()
        modes["config.json"] = os.stat(os.path.join(config, "config.json")).st_mode & 0o777
    fh.write(json.dumps({{"args": args, "stdin": stdin, "builder": os.environ.get("BUILDX_BUILDER"),
                         "config": config, "files": files, "modes": modes}}) + "\\n")
if args[:2] == ["context", "show"]:
    print("default")
made = [a[a.index("--name") + 1] for a in before if a[:2] == ["buildx", "create"]]
contexts = [a[2] for a in before if a[:2] == ["context", "create"]]
sys.exit(1 if (args[:2] == ["buildx", "inspect"] and (not args[2:3] or args[2] not in made))
         or (args[:2] == ["context", "update"] and args[2] not in contexts) else 0)
""")
    script.chmod(0o755)


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def cacheport_shim(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "cacheport"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m cacheport "$@"\n')
    shim.chmod(0o755)


def base_environ(home: Path) -> dict[str, str]:
    drop = ("CACHEPORT_", "CI_", "GITLAB_", "GITHUB_", "ACTIONS_", "DOCKER_", "RUNNER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and k not in ("CI", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    # The builds' records (and the trend the templates show) would go to registry.example.com, not on this machine.
    env["CACHEPORT_HISTORY"] = "off"
    return env


# GitLab


GITLAB_PREDEFINED = {
    "CI": "true",
    "GITLAB_CI": "true",
    "CI_SERVER_URL": "https://gitlab.example.com",
    "CI_SERVER_FQDN": "gitlab.example.com",
    "CI_PROJECT_PATH": "group/app",
    "CI_PROJECT_DIR": "/builds/group/app",
    "CI_REGISTRY": "registry.example.com",
    "CI_REGISTRY_IMAGE": "registry.example.com/group/app",
    "CI_REGISTRY_USER": "gitlab-ci-token",
    "CI_REGISTRY_PASSWORD": "job-token-value",
    "CI_COMMIT_BRANCH": "feature/login",
    "CI_COMMIT_REF_NAME": "feature/login",
    "CI_COMMIT_REF_SLUG": "feature-login",
    "CI_DEFAULT_BRANCH": "main",
}
DIND_TLS = {"DOCKER_HOST": "tcp://docker:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/certs/client"}


def deep_merge(base: Any, override: Any) -> Any:
    """GitLab's merge for include and extends: hashes merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {k: deep_merge(base[k], v) if k in base else v for k, v in {**base, **override}.items()}
    return override


def render(path: Path, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A component's configuration with its inputs interpolated, as GitLab does for ``include: component:``: in
    the parsed YAML's keys and strings, so that a multi-line input stays one value."""
    spec_text, _, body = path.read_text(encoding="utf-8").partition("\n---\n")
    spec = yaml.safe_load(spec_text)["spec"]["inputs"]
    assert set(inputs) <= set(spec), f"unknown inputs: {set(inputs) - set(spec)}"
    values = {name: inputs.get(name, item["default"]) for name, item in spec.items()}
    for name, value in values.items():
        if spec[name].get("type") == "boolean":
            assert isinstance(value, bool), f"input {name} must be a boolean"

    def interpolate(node: Any) -> Any:
        if isinstance(node, dict):
            return {interpolate(k): interpolate(v) for k, v in node.items()}
        if isinstance(node, list):
            return [interpolate(item) for item in node]
        if isinstance(node, str):
            for name, value in values.items():
                node = node.replace(f"$[[ inputs.{name} ]]", str(value).lower() if isinstance(value, bool) else str(value))
            assert "$[[" not in node
        return node

    rendered: dict[str, Any] = interpolate(yaml.safe_load(body))
    return rendered


def component_file(address: str) -> Path:
    """``$CI_SERVER_FQDN/platform/cacheport/NAME@VERSION`` -> this checkout's templates/NAME.yml."""
    name, _, version = address.rpartition("/")[2].partition("@")
    assert version == VERSION, f"{address}: the examples pin this release, {VERSION}"
    return ROOT / "templates" / f"{name}.yml"


def pipeline(example: Mapping[str, Any]) -> dict[str, Any]:
    """The example's jobs: its components rendered, its include template merged, every ``extends`` resolved."""
    merged: dict[str, Any] = {}
    for item in example.get("include", []):
        if "component" in item:
            merged = deep_merge(merged, render(component_file(item["component"]), item.get("inputs", {})))
        else:
            assert item["file"] == "/" + TEMPLATE.relative_to(ROOT).as_posix()
            merged = deep_merge(merged, load(TEMPLATE))
    merged = deep_merge(merged, {k: v for k, v in example.items() if k != "include"})

    def resolve(name: str) -> dict[str, Any]:
        job = merged[name]
        parents = job.get("extends", [])
        parents = [parents] if isinstance(parents, str) else parents
        out: dict[str, Any] = {}
        for parent in parents:
            out = deep_merge(out, resolve(parent))
        return deep_merge(out, {k: v for k, v in job.items() if k != "extends"})

    return {name: resolve(name) for name, job in merged.items() if isinstance(job, dict) and name != "variables"}


def expand(value: str, env: Mapping[str, str]) -> str:
    """GitLab's expansion of ``$VAR`` and ``${VAR}`` in variable values; unknown variables are left alone."""
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda m: env.get(m.group(1) or m.group(2), m.group(0)), value)


def run_gitlab_job(job: Mapping[str, Any], globals_: Mapping[str, str], settings: Mapping[str, str],
                   tmp_path: Path, install: bool = False,
                   cli_log: Path | None = None) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """Run a job's before_script and script as a runner would, in ``sh -e``, then its after_script in a shell of
    its own; return the first and the docker calls. The checkout is ``tmp_path/project``.

    Variables, lowest first: predefined, the pipeline's, the job's, the project's CI/CD settings.
    ``install`` leaves cacheport off the PATH, so the job installs it (with a stand-in python3 and pip);
    ``cli_log`` makes it a cacheport that records its calls there and does nothing.
    """
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    bin_dir, log = tmp_path / "bin", tmp_path / "docker.jsonl"
    stand_in_docker(bin_dir, log)
    if install:
        stand_in_python(bin_dir / "python3", tmp_path / "pip.jsonl")
    elif cli_log:
        recording_cacheport(bin_dir / "cacheport", cli_log)
    else:
        cacheport_shim(bin_dir)
    env = base_environ(home)
    path = env.get("PATH", "").split(os.pathsep)
    if install:  # the test's own virtualenv (tox's) has a cacheport on the PATH: the job must not see it
        path = [d for d in path if d and not (Path(d) / "cacheport").exists()]
    env["PATH"] = os.pathsep.join([str(bin_dir), *path])
    env["TMPDIR"] = str(tmp_path)
    env.update(GITLAB_PREDEFINED)
    for values in (globals_, job.get("variables", {})):
        env.update({k: expand(str(v), env) for k, v in values.items()})
    env.update(settings)
    work = tmp_path / "project"
    work.mkdir(exist_ok=True)
    env["CI_PROJECT_DIR"] = str(work)
    script = "\n".join([*job.get("before_script", []), *job["script"]])
    proc = subprocess.run(["sh", "-e", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    if job.get("after_script"):
        after = subprocess.run(["sh", "-e", "-c", "\n".join(job["after_script"])], cwd=work, env=env,
                               capture_output=True, text=True, timeout=60)
        assert after.returncode == 0, after.stdout + after.stderr
    return proc, calls(log)


def stand_in_python(path: Path, log: Path) -> None:
    """A ``python3`` whose ``-m venv DIR`` makes DIR/bin/python, whose ``-m pip install`` records the requirement
    and puts a cacheport (this checkout's) into DIR/bin."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
if args[:2] == ["-m", "venv"]:
    os.makedirs(os.path.join(args[2], "bin"), exist_ok=True)
    me = os.path.join(args[2], "bin", "python")
    with open(__file__) as src, open(me, "w") as dst:
        dst.write(src.read())
    os.chmod(me, 0o755)
elif args[:3] == ["-m", "pip", "install"]:
    with open({str(log)!r}, "a") as fh:
        fh.write(json.dumps(args[3:]) + "\\n")
    cli = os.path.join(os.path.dirname(sys.argv[0]), "cacheport")
    with open(cli, "w") as fh:
        fh.write("#!/bin/sh\\nexec {sys.executable} -m cacheport \\"$@\\"\\n")
    os.chmod(cli, 0o755)
else:
    sys.exit(f"unexpected: {{args}}")
""")
    path.chmod(0o755)


DEFAULT_BUILDER = ["--driver", "docker-container", "--driver-opt", "image=moby/buildkit:buildx-stable-1"]


def builder_name(docker_calls: list[dict[str, Any]]) -> str:
    """The builder the job made or reused: ``cacheport-`` and a digest of its settings."""
    names = {c["args"][2] for c in docker_calls if c["args"][:2] == ["buildx", "inspect"]}
    assert len(names) == 1 and re.fullmatch(r"cacheport-[0-9a-f]{12}", next(iter(names))), names
    return names.pop()


def build_call(docker_calls: list[dict[str, Any]]) -> dict[str, Any]:
    builds = [c for c in docker_calls if c["args"][:2] == ["buildx", "build"]]
    assert len(builds) == 1, docker_calls
    return builds[0]


def test_the_template_is_a_hidden_job_and_a_job_that_extends_it() -> None:
    template = load(TEMPLATE)
    assert set(template) == {".cacheport-build", "container-build"}  # no global keys: includes leak nothing
    base = template[".cacheport-build"]
    assert {"image", "services", "variables", "before_script", "script"} <= set(base)
    assert template["container-build"]["extends"] == ".cacheport-build"
    assert "CACHEPORT_BACKEND" not in base["variables"], "a default here would override the config file"


def test_the_component_runs_the_include_template_s_scripts_word_for_word() -> None:
    job = render(BUILD_COMPONENT, {})["container-build"]
    base = load(TEMPLATE)[".cacheport-build"]
    assert job["before_script"] == base["before_script"] and job["script"] == base["script"]
    assert job["after_script"] == base["after_script"]  # the job's own docker configuration goes with it
    # The component's inputs become the variables the template reads; none is a CACHEPORT_ setting, which
    # as a job variable would beat the pipeline's own CACHEPORT_BACKEND (GitLab's precedence).
    assert not [name for name in job["variables"] if name.startswith("CACHEPORT_")]
    assert set(job["variables"]) - {"DOCKER_TLS_CERTDIR"} <= set(template_settings())


def test_the_cleanup_installs_cacheport_as_the_build_does() -> None:
    build = load(TEMPLATE)[".cacheport-build"]["before_script"]
    cleanup = render(CLEANUP_COMPONENT, {})["cache-cleanup"]["script"]
    install = next(step for step in build if "pip install" in step)
    assert install in cleanup
    def code(step: str) -> list[str]:
        return [line.split("  #")[0].rstrip() for line in step.splitlines()]

    shared = [line for line in code(build[0]) if "INSTALL_CACHEPORT" in line or "CONTAINER_CACHE_BACKEND" in line]
    assert code(cleanup[0]) == shared  # the same default release, the same backend input


@pytest.mark.parametrize("path", [TEMPLATE, *COMPONENTS], ids=lambda p: str(p.relative_to(ROOT)))
def test_the_scripts_are_posix_sh(path: Path) -> None:
    jobs = load(path) if path == TEMPLATE else render(path, {})
    for name, job in jobs.items():
        if "script" not in job:  # container-build: it only extends .cacheport-build
            continue
        script = "\n".join([*job.get("before_script", []), *job["script"]])
        proc = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"


def test_a_pinned_component_installs_the_same_cacheport_release() -> None:
    # One version everywhere: the package's, the components' defaults, the template's, the examples' pins.
    for path in COMPONENTS:
        spec = next(yaml.safe_load_all(path.read_text()))["spec"]["inputs"]
        assert spec["cacheport-version"]["default"] == VERSION, path
    assert re.search(r"INSTALL_CACHEPORT_VERSION:-([\w.]+)\}", load(TEMPLATE)[".cacheport-build"]["before_script"][0]
                     ).group(1) == VERSION  # type: ignore[union-attr]
    pins = re.findall(r"(?:@|ref: )v?(\d+\.\d+\.\d+)", "".join(p.read_text() for p in (
        GITLAB_EXAMPLE, TEMPLATE_EXAMPLE, TEMPLATE, *COMPONENTS, CI_DOC)))
    assert pins and set(pins) == {VERSION}, pins


def template_settings() -> dict[str, str]:
    """The template's settings and their defaults: every variable the first before_script step reads (with
    its ``${NAME:=default}`` when it has one), and the job's variables."""
    job = load(TEMPLATE)[".cacheport-build"]
    first = job["before_script"][0]
    names = {n for n in re.findall(r"\$\{(\w+)", first) if not n.startswith("CI_")}
    defaults = dict(re.findall(r'^: "\$\{(\w+):?=(.*?)\}"', first, re.M))
    return {**{n: "" for n in names}, **defaults, **{k: str(v) for k, v in job["variables"].items()}}


def test_the_template_s_defaults_give_way_to_a_variable_set_anywhere() -> None:
    # GitLab lets a job's own `variables:` beat the pipeline's, so a default there would silently win over a
    # pipeline-wide setting; the shell's ${NAME:=default} gives way to a variable from anywhere.
    assert set(load(TEMPLATE)[".cacheport-build"]["variables"]) == {"DOCKER_TLS_CERTDIR"}
    assert {"CONTAINER_IMAGE", "CONTAINER_PUSH", "INSTALL_CACHEPORT", "INSTALL_CACHEPORT_VERSION"} <= set(
        template_settings())


def test_every_template_variable_is_documented() -> None:
    documented = table_names(section(CI_DOC.read_text(), "### The include template"))
    variables = set(template_settings())
    assert variables <= set(documented)
    assert set(documented) - variables == {"CACHEPORT_BACKEND", "CACHEPORT_KEY", "CACHEPORT_READ_ONLY",
                                           "CACHEPORT_<BACKEND>__<OPTION>"}


@pytest.mark.parametrize("path", COMPONENTS, ids=lambda p: p.name)
def test_every_component_input_is_documented(path: Path) -> None:
    spec = next(yaml.safe_load_all(path.read_text()))["spec"]["inputs"]
    heading = f"#### `{path.stem}` inputs"
    documented = table_names(section(CI_DOC.read_text(), heading))
    assert documented == list(spec), f"{heading} in docs/ci.md lists the inputs in the file's order"


def test_the_examples_include_what_this_repository_ships() -> None:
    example = load(GITLAB_EXAMPLE)
    assert {component_file(i["component"]) for i in example["include"]} == set(COMPONENTS)
    legacy = load(TEMPLATE_EXAMPLE)
    assert [i["file"] for i in legacy["include"]] == ["/" + TEMPLATE.relative_to(ROOT).as_posix()]
    template = load(TEMPLATE)
    for name, job in legacy.items():
        if isinstance(job, dict) and "extends" in job:
            assert job["extends"] in template, name


def test_the_example_pipeline_builds_and_pushes_with_the_branch_s_cache(tmp_path: Path) -> None:
    example = load(GITLAB_EXAMPLE)
    jobs = pipeline(example)
    assert set(jobs) == {"container-build", "worker-build", "cache-cleanup"}

    proc, docker = run_gitlab_job(jobs["container-build"], example.get("variables", {}), {}, tmp_path / "app", install=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pip = [json.loads(line) for line in (tmp_path / "app" / "pip.jsonl").read_text().splitlines()]
    assert pip[0][-1] == f"cacheport=={VERSION}"  # the component's own release
    logins = [c for c in docker if c["args"][0] == "login"]
    assert logins and all(c["stdin"] == "job-token-value" for c in logins)
    assert all("job-token-value" not in " ".join(c["args"]) for c in docker)
    for login in logins:  # the template's, for the push, and cacheport build's, for the cache
        args = login["args"]
        assert args[args.index("--username") + 1] == "gitlab-ci-token" and args[-1] == "registry.example.com"
    made = [c["args"] for c in docker if c["args"][:2] in (["buildx", "inspect"], ["buildx", "create"])]
    name = builder_name(docker)
    assert made[:2] == [["buildx", "inspect", name], ["buildx", "create", "--name", name, *DEFAULT_BUILDER]]
    cache = "registry.example.com/group/app/cache"
    build = build_call(docker)
    assert build["builder"] == name  # BUILDX_BUILDER, not `buildx use`: a shell runner's default stays
    # cacheport build's own record of the build (a temporary file) is not the template's business
    assert [a for a in build["args"] if not a.startswith("--metadata-file=")] == [
        "buildx", "build", "--progress=rawjson",
        f"--cache-from=type=registry,ref={cache}:feature-login",
        f"--cache-from=type=registry,ref={cache}:main",
        f"--cache-to=type=registry,ref={cache}:feature-login,mode=max,ignore-error=true,image-manifest=true,oci-mediatypes=true",
        "--tag", "registry.example.com/group/app:feature-login",
        "--file", "./Dockerfile",
        "--push", ".",
    ]
    assert "cacheport: cache:" in proc.stderr  # cacheport build's summary line

    proc, docker = run_gitlab_job(jobs["worker-build"], example.get("variables", {}), {}, tmp_path / "worker")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    worker = build_call(docker)["args"]
    assert f"--cache-to=type=registry,ref={cache}:worker-feature-login,mode=max,ignore-error=true,image-manifest=true,oci-mediatypes=true" in worker
    assert worker[-1] == "worker" and worker[worker.index("--tag") + 1] == "registry.example.com/group/app/worker:feature-login"


def test_the_include_template_example_builds_the_same_way(tmp_path: Path) -> None:
    example = load(TEMPLATE_EXAMPLE)
    jobs = pipeline(example)
    assert {n for n in jobs if not n.startswith(".")} == {"container-build", "worker-build"}
    proc, docker = run_gitlab_job(jobs["container-build"], example.get("variables", {}), {}, tmp_path / "app", install=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pip = [json.loads(line) for line in (tmp_path / "app" / "pip.jsonl").read_text().splitlines()]
    assert pip[0][-1] == f"git+https://gitlab.example.com/platform/cacheport.git@{VERSION}"
    proc, docker = run_gitlab_job(jobs["worker-build"], example.get("variables", {}), {}, tmp_path / "worker")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--cache-to=type=registry,ref=registry.example.com/group/app/cache:worker-feature-login,mode=max," \
           "ignore-error=true,image-manifest=true,oci-mediatypes=true" in build_call(docker)["args"]


def test_on_docker_in_docker_with_tls_the_builder_sits_on_a_context_with_the_job_s_certificates(
        tmp_path: Path) -> None:
    job = render(BUILD_COMPONENT, {})["container-build"]
    assert job["variables"]["DOCKER_TLS_CERTDIR"] == "/certs" and job["services"] == ["docker:27-dind"]
    proc, docker = run_gitlab_job(job, {}, DIND_TLS, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tls = "host=tcp://docker:2376,ca=/certs/client/ca.pem,cert=/certs/client/cert.pem,key=/certs/client/key.pem"
    args = [c["args"] for c in docker]
    assert ["context", "create", "cacheport-tls", "--docker", tls] in args
    assert ["buildx", "create", "--name", builder_name(docker), *DEFAULT_BUILDER, "cacheport-tls"] in args


def test_docker_in_docker_without_tls_is_one_input(tmp_path: Path) -> None:
    job = render(BUILD_COMPONENT, {"docker-tls-certdir": ""})["container-build"]
    assert job["variables"]["DOCKER_TLS_CERTDIR"] == ""  # the dind service listens on 2375, without TLS
    proc, docker = run_gitlab_job(job, {}, {"DOCKER_HOST": "tcp://docker:2375"}, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [c for c in docker if c["args"][0] == "context"]
    assert ["buildx", "create", "--name", builder_name(docker), *DEFAULT_BUILDER] in [c["args"] for c in docker]


def test_the_docker_driver_uses_the_engine_s_own_builder(tmp_path: Path) -> None:
    job = render(BUILD_COMPONENT, {"builder-driver": "docker"})["container-build"]
    proc, docker = run_gitlab_job(job, {}, DIND_TLS, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [c for c in docker if c["args"][:2] == ["buildx", "create"]]
    assert build_call(docker)["builder"] == "default"  # the current context's: the environment's TLS endpoint


def test_a_second_job_on_the_same_runner_reuses_the_builder(tmp_path: Path) -> None:
    job = render(BUILD_COMPONENT, {})["container-build"]
    run_gitlab_job(job, {}, {}, tmp_path)
    proc, docker = run_gitlab_job(job, {}, {}, tmp_path)  # same stand-in docker, which remembers the builder
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"reusing the buildx builder {builder_name(docker)}" in proc.stdout
    assert len([c for c in docker if c["args"][:2] == ["buildx", "create"]]) == 1


TOML = '[registry."docker.io"]\n  mirrors = ["pulp.example.com/dockerhub"]\n[registry."registry.internal:5000"]\n  http = true'


def test_the_builder_runs_the_buildkit_image_config_and_driver_options_given(tmp_path: Path) -> None:
    inputs = {"buildkit-image": "pulp.example.com/dockerhub/moby/buildkit:v0.32.2", "buildkitd-config": TOML,
              "builder-driver-opts": "network=host memory=2g"}
    proc, docker = run_gitlab_job(render(BUILD_COMPONENT, inputs)["container-build"], {}, {}, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    create = next(c for c in docker if c["args"][:2] == ["buildx", "create"])
    config = create["args"][create["args"].index("--buildkitd-config") + 1]
    assert create["args"] == ["buildx", "create", "--name", builder_name(docker), "--driver", "docker-container",
                              "--driver-opt", "image=pulp.example.com/dockerhub/moby/buildkit:v0.32.2",
                              "--driver-opt", "network=host", "--driver-opt", "memory=2g",
                              "--buildkitd-config", config]
    assert create["files"][config] == TOML + "\n"  # the input's text, as a file in the job's own directory
    assert Path(config).parent == tmp_path / "project.tmp" / "cacheport-docker"
    assert not Path(config).exists()  # after_script removed it with the rest


def test_a_buildkitd_config_file_is_given_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "buildkitd.toml").write_text(TOML)
    job = render(BUILD_COMPONENT, {"buildkitd-config": "buildkitd.toml"})["container-build"]
    proc, docker = run_gitlab_job(job, {}, {}, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    create = next(c["args"] for c in docker if c["args"][:2] == ["buildx", "create"])
    assert create[-2:] == ["--buildkitd-config", "buildkitd.toml"]


@pytest.mark.parametrize("change", [
    {"buildkit-image": "registry.internal:5000/moby/buildkit:v0.32.2"},
    {"buildkitd-config": TOML},
    {"builder-driver-opts": "network=host"},
    {"builder-driver": "kubernetes"},
], ids=lambda change: next(iter(change)))
def test_a_changed_builder_setting_makes_a_new_builder_and_the_same_reuses_it(change: dict[str, str],
                                                                             tmp_path: Path) -> None:
    before = render(BUILD_COMPONENT, {})["container-build"]
    after = render(BUILD_COMPONENT, change)["container-build"]
    for job in (before, after, after):  # one runner, whose stand-in docker remembers every builder it made
        proc, docker = run_gitlab_job(job, {}, {}, tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    made = [c["args"][3] for c in calls(tmp_path / "docker.jsonl") if c["args"][:2] == ["buildx", "create"]]
    assert len(made) == len(set(made)) == 2, made  # the old one is never reused, the new one is
    builds = [c["builder"] for c in docker if c["args"][:2] == ["buildx", "build"]]
    assert f"reusing the buildx builder {made[1]}" in proc.stdout and builds == [*made, made[1]]


@pytest.mark.parametrize(("driver", "image"), [("kubernetes", True), ("remote", False)])
def test_only_drivers_that_run_an_image_get_one(driver: str, image: bool, tmp_path: Path) -> None:
    job = render(BUILD_COMPONENT, {"builder-driver": driver, "builder-driver-opts": "cacert=/certs/ca.pem"})
    proc, docker = run_gitlab_job(job["container-build"], {}, {}, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    create = next(c["args"] for c in docker if c["args"][:2] == ["buildx", "create"])
    assert create[4:] == ["--driver", driver, *(["--driver-opt", "image=moby/buildkit:buildx-stable-1"] if image else []),
                          "--driver-opt", "cacert=/certs/ca.pem"]


def test_the_job_s_logins_go_to_its_own_docker_config_which_goes_with_the_job(tmp_path: Path) -> None:
    runner_config = tmp_path / "home" / ".docker"
    runner_config.mkdir(parents=True)
    (runner_config / "config.json").write_text(json.dumps({
        "auths": {"docker.io": {"auth": "cnVubmVyOmh1Yg=="}}, "credsStore": "pass",
        "credHelpers": {"registry.example.com": "ecr-login"}, "proxies": {"default": {"httpProxy": "http://p:3128"}}}))
    example = load(GITLAB_EXAMPLE)
    proc, docker = run_gitlab_job(pipeline(example)["container-build"], example.get("variables", {}), {}, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job_config = tmp_path / "project.tmp" / "cacheport-docker"
    logins = [c for c in docker if c["args"][0] == "login"]
    assert len(logins) == 2 and logins[0]["config"] == str(job_config)  # the template's
    # cacheport build logs in to a private copy of its own, removed once the build ends
    assert logins[1]["config"] != str(job_config) and not Path(logins[1]["config"]).exists()
    # the runner's settings and logins, without the helpers that would keep the job's password elsewhere
    assert json.loads(logins[0]["files"]["config.json"]) == {
        "auths": {"docker.io": {"auth": "cnVubmVyOmh1Yg=="}}, "proxies": {"default": {"httpProxy": "http://p:3128"}}}
    assert logins[0]["modes"]["config.json"] == 0o600  # it holds the runner's logins: the owner's alone
    assert not job_config.exists()  # after_script removed it
    assert {p.name for p in runner_config.iterdir()} == {"config.json", "buildx", "contexts", "cli-plugins"}
    assert "job-token-value" not in (runner_config / "config.json").read_text()


def test_the_component_s_inputs_reach_the_build(tmp_path: Path) -> None:
    inputs = {"backend": "registry", "key": "api", "image": "registry.example.com/group/api:$CI_COMMIT_SHORT_SHA",
              "context": "api", "dockerfile": "api/Containerfile", "build-args": "--platform linux/arm64",
              "push": False, "builder-driver": "", "cacheport-install": "cacheport==9.9.9"}
    job = render(BUILD_COMPONENT, {"job-name": "api-build", **inputs})["api-build"]
    settings = {"CACHEPORT_REGISTRY__REF": "harbor.example.com/team/app/cache"}
    pipeline_variables = {"CACHEPORT_BACKEND": "gitlab", "CI_COMMIT_SHORT_SHA": "abc123"}
    proc, docker = run_gitlab_job(job, pipeline_variables, settings, tmp_path / "a", install=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((tmp_path / "a" / "pip.jsonl").read_text())[-1] == "cacheport==9.9.9"
    assert not [c for c in docker if c["args"][:2] == ["buildx", "create"]]  # empty driver: the current builder
    build = build_call(docker)["args"]
    assert "--cache-to=type=registry,ref=harbor.example.com/team/app/cache:api-feature-login,mode=max," \
           "ignore-error=true,image-manifest=true,oci-mediatypes=true" in build  # the backend input beats the pipeline's CACHEPORT_BACKEND
    assert build[build.index("--tag") + 1] == "registry.example.com/group/api:abc123"
    assert build[build.index("--file") + 1] == "api/Containerfile"
    assert "--push" not in build and build[-3:] == ["--platform", "linux/arm64", "api"]


def test_one_variable_moves_the_cache(tmp_path: Path) -> None:
    example = load(GITLAB_EXAMPLE)
    settings = {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": "harbor.example.com/team/app/cache"}
    proc, docker = run_gitlab_job(pipeline(example)["container-build"], example.get("variables", {}), settings, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [a for a in build_call(docker)["args"] if a.startswith("--cache-")] == [
        "--cache-from=type=registry,ref=harbor.example.com/team/app/cache:feature-login",
        "--cache-from=type=registry,ref=harbor.example.com/team/app/cache:main",
        "--cache-to=type=registry,ref=harbor.example.com/team/app/cache:feature-login,mode=max,ignore-error=true,image-manifest=true,oci-mediatypes=true",
    ]


def cleanup_calls(tmp_path: Path, inputs: Mapping[str, Any]) -> list[list[str]]:
    """Run the cleanup job's script with a stand-in cacheport that records its arguments."""
    job = render(CLEANUP_COMPONENT, inputs)["cache-cleanup"]
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}]  # scheduled pipelines only
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "cacheport.jsonl"
    (bin_dir / "cacheport").write_text(f"#!{sys.executable}\nimport json, sys\n"
                                       f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    (bin_dir / "cacheport").chmod(0o755)
    env = {**base_environ(tmp_path), **GITLAB_PREDEFINED, "CI_PIPELINE_SOURCE": "schedule"}
    env.update({k: str(v) for k, v in job["variables"].items()})
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    proc = subprocess.run(["sh", "-e", "-c", "\n".join(job["script"])], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_cleanup_is_a_dry_run_unless_enabled(tmp_path: Path) -> None:
    assert cleanup_calls(tmp_path / "dry", {})[-1] == ["prune", "--branches-gone"]
    assert cleanup_calls(tmp_path / "yes", {"delete": True, "older-than": "30d"})[-1] == [
        "prune", "--branches-gone", "--older-than", "30d", "--yes"]


@pytest.mark.skipif(not installed("pulp"), reason="the pulp backend (plugins/cacheport-pulp) is not installed")
@pytest.mark.parametrize("example_path", [GITLAB_EXAMPLE, TEMPLATE_EXAMPLE], ids=["component", "include template"])
def test_the_documented_variables_move_the_example_to_pulp_in_dual_read(example_path: Path,
                                                                        tmp_path: Path) -> None:
    block = next(d for d in fenced(section(CI_DOC.read_text(), "### Moving the cache to Pulp"), "yaml")
                 if d.startswith("variables:"))
    example = load(example_path)
    assert "CACHEPORT_BACKEND" not in example.get("variables", {}), "it would beat the config file's backend"
    example.setdefault("variables", {}).update(yaml.safe_load(block)["variables"])
    settings = {"CACHEPORT_PULP__URL": "pulp.example.com", "PULP_USERNAME": "builder", "PULP_PASSWORD": "pulp-pw"}
    proc, docker = run_gitlab_job(pipeline(example)["container-build"], example.get("variables", {}), settings, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "migrating from gitlab: dual-read" in proc.stdout  # cacheport explain in the job log
    cache = [a for a in build_call(docker)["args"] if a.startswith("--cache-")]
    assert cache == [
        "--cache-from=type=registry,ref=pulp.example.com/group/app/cache:feature-login",
        "--cache-from=type=registry,ref=pulp.example.com/group/app/cache:main",
        "--cache-from=type=registry,ref=registry.example.com/group/app/cache:feature-login",
        "--cache-from=type=registry,ref=registry.example.com/group/app/cache:main",
        "--cache-to=type=registry,ref=pulp.example.com/group/app/cache:feature-login,mode=max,ignore-error=true,"
        "image-manifest=true,oci-mediatypes=true",
    ]
    pulp_login = [c for c in docker if c["args"][0] == "login" and c["args"][-1] == "pulp.example.com"]
    assert pulp_login and pulp_login[0]["stdin"] == "pulp-pw"


def test_the_documented_toml_diff_is_the_config_the_docs_run() -> None:
    text = section(CI_DOC.read_text(), "### Moving the cache to Pulp")
    diff = next(d for d in fenced(text, "diff") if d.startswith(" [tool.cacheport]"))
    assert len([line for line in diff.splitlines() if line.startswith("-")]) == 1
    after = "".join(line[1:] + "\n" for line in diff.splitlines() if line[:1] in (" ", "+"))
    assert after in fenced(text, "toml")  # the block test_docs runs `cacheport explain` on


# GitHub Actions


NOT_FLAGS = {"version", "source", "github-runtime", "python-version"}  # how to install and set up, not what to plan
MOUNT_INPUTS = {"mode", "mounts", "mounts-helper-image", "context", "file", "target", "build-args"}  # the cache mounts' (cacheport mounts)
BUILDER_INPUTS = {"builder-driver", "builder", "buildkit-image", "buildkitd-config", "builder-driver-opts"}  # ditto


def plan_flags() -> set[str]:
    """The long names of the options every plan-making command shares (``cacheport.cli.common.plan_options``)."""
    from cacheport.cli.common import plan_options

    params = plan_options(lambda **kw: None).__click_params__
    return {max(p.opts, key=len)[2:] for p in params} - {"verbose"}


def test_every_action_input_is_a_cacheport_args_flag_and_back() -> None:
    from cacheport.cli.args import command

    args_flags = {opt for p in command.params for opt in p.opts}
    inputs = set(load(ACTION)["inputs"]) - BUILDER_INPUTS - MOUNT_INPUTS
    assert {f"--{name}" for name in inputs - NOT_FLAGS} <= args_flags
    assert inputs - NOT_FLAGS == plan_flags()
    step = action_step("args")
    assert 'source "$ACTION_PATH/templates/github/plan-flags.sh"' in step["run"]
    assert '"${plan_flags[@]}"' in step["run"]
    for name in inputs - NOT_FLAGS:
        assert f"--{name}" in PLAN_FLAGS.read_text() and expression(f"inputs.{name}") in step["env"].values()


def test_every_action_input_is_documented() -> None:
    documented = table_names(section(CI_DOC.read_text(), "### The action"))
    assert set(load(ACTION)["inputs"]) | set(load(ACTION)["outputs"]) == set(documented)


def test_the_action_s_outputs_are_exactly_what_render_writes(builtins: Plugins, clean_env: dict[str, str]) -> None:
    from cacheport import render
    from cacheport.config import load_config
    from cacheport.context import detect_context
    from cacheport.plan import build_plan

    config = load_config(Path.cwd(), clean_env, cli=[("backend", "registry", "--backend"),
                                                      ("ref", "registry.example.com/app/cache", "--set ref=")])
    plan = build_plan(config, detect_context(builtins.context_providers(), clean_env, Path.cwd()), builtins)
    written = re.findall(r"^([\w-]+)<<DELIM$", render.github_output(plan, "DELIM"), re.M)
    outputs = {name: output for name, output in load(ACTION)["outputs"].items() if name != "builder"}
    assert set(outputs) == set(written)
    for name, output in outputs.items():
        assert output["value"] == expression(f"steps.args.outputs.{name}")
    assert "args --format github" in action_step("args")["run"]


def action_step(step_id: str) -> dict[str, Any]:
    return next(s for s in load(ACTION)["runs"]["steps"] if s.get("id") == step_id)


def github_environ(tmp_path: Path) -> dict[str, str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"repository": {"default_branch": "main", "full_name": "org/app"}}))
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        **base_environ(home),
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "org/app",
        "GITHUB_REF": "refs/heads/feature/login",
        "GITHUB_REF_NAME": "feature/login",
        "GITHUB_REF_TYPE": "branch",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_OUTPUT": str(tmp_path / "github-output"),
        "GITHUB_PATH": str(tmp_path / "github-path"),
        "RUNNER_TEMP": str(tmp_path),
    }


def run_step(step_id: str, inputs: Mapping[str, str], env: dict[str, str], cwd: Path,
             contexts: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """A step of action.yml, the way the runner runs it."""
    return github_actions.run_step(ACTION, action_step(step_id), inputs, env, cwd, contexts)


GHA = "type=gha,scope=org-app-feature-login"
RUNTIME = {"ACTIONS_RUNTIME_TOKEN": "runtime-token", "ACTIONS_RESULTS_URL": "http://127.0.0.1:1/"}
ACTION_CASES = {
    "defaults: gha, with the runtime the action exports": (
        {}, RUNTIME, 0, {"cache-from": f"{GHA}\ntype=gha,scope=org-app-main",
                         "cache-to": f"{GHA},mode=max,ignore-error=true"}, None),
    "gha without the runtime: a warning annotation": (
        {"github-runtime": "false"}, {}, 0, None, "::warning title=cacheport::gha cache needs ACTIONS_RUNTIME_TOKEN"),
    "registry, key and options": (
        {"backend": "registry", "key": "app", "set": "ref=ghcr.io/Org/App/cache\n  mode=min\n"}, {}, 0,
        {"cache-from": "type=registry,ref=ghcr.io/org/app/cache:app-feature-login\n"
                       "type=registry,ref=ghcr.io/org/app/cache:app-main",
         "cache-to": "type=registry,ref=ghcr.io/org/app/cache:app-feature-login,mode=min,ignore-error=true,image-manifest=true,oci-mediatypes=true"}, None),
    "read-only": (
        {"backend": "registry", "set": "ref=ghcr.io/org/app/cache", "read-only": "true"}, {}, 0,
        {"cache-from": "type=registry,ref=ghcr.io/org/app/cache:feature-login\n"
                       "type=registry,ref=ghcr.io/org/app/cache:main", "cache-to": ""},
        "::warning title=cacheport::not exporting cache: read-only is set"),
    "a config file": (
        {"config": "deploy/cacheport.toml"}, {}, 0,
        {"cache-from": "type=registry,ref=registry.example.com/from-file/cache:feature-login\n"
                       "type=registry,ref=registry.example.com/from-file/cache:main",
         "cache-to": "type=registry,ref=registry.example.com/from-file/cache:feature-login,mode=max,ignore-error=true,image-manifest=true,oci-mediatypes=true"},
        None),
    "an unknown backend: an error annotation": (
        {"backend": "nope"}, {}, 2, None, "::error title=cacheport::--backend: unknown backend 'nope'"),
}


@pytest.mark.parametrize("case", ACTION_CASES)
def test_the_action_s_args_step(case: str, tmp_path: Path) -> None:
    inputs, extra_env, status, outputs, annotation = ACTION_CASES[case]
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "cacheport.toml").write_text(
        'backend = "registry"\n[registry]\nref = "registry.example.com/from-file/cache"\n')
    bin_dir = tmp_path / "bin"
    cacheport_shim(bin_dir)
    env = {**github_environ(tmp_path), **extra_env}
    proc = run_step("args", inputs, env, tmp_path, {"steps.install.outputs.cli": str(bin_dir / "cacheport")})
    assert proc.returncode == status, proc.stderr
    if outputs is not None:
        assert read_outputs(tmp_path / "github-output") == outputs
    if annotation is None:
        assert "::warning" not in proc.stderr and "::error" not in proc.stderr, proc.stderr
    else:
        assert annotation in proc.stderr


@pytest.mark.parametrize(("inputs", "requirement"), [
    ({}, str(ROOT)),
    ({"version": "0.1.0"}, "cacheport==0.1.0"),
    ({"version": "0.1.0", "source": "git+https://example.com/cacheport.git@v0.1.0"},
     "git+https://example.com/cacheport.git@v0.1.0"),
], ids=["the action's own source", "a version", "a source"])
def test_the_action_s_install_step(inputs: dict[str, str], requirement: str, tmp_path: Path) -> None:
    python = tmp_path / "python" / "python3"
    stand_in_python(python, tmp_path / "pip.jsonl")
    contexts = {"steps.python.outputs.python-path": str(python), "github.action_path": str(ROOT)}
    proc = run_step("install", inputs, github_environ(tmp_path), tmp_path, contexts)
    assert proc.returncode == 0, proc.stderr
    pip = json.loads((tmp_path / "pip.jsonl").read_text())
    assert pip[-1] == requirement
    venv_bin = tmp_path / "cacheport-venv" / "bin"
    assert (tmp_path / "github-path").read_text() == f"{venv_bin}\n"
    assert read_outputs(tmp_path / "github-output") == {"cli": str(venv_bin / "cacheport")}
    assert subprocess.run([venv_bin / "cacheport", "--version"], capture_output=True).returncode == 0


def run_builder_step(inputs: Mapping[str, str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """The action's builder step on a stand-in docker that remembers the builders it made (in ``tmp_path``)."""
    step = action_step("builder")
    assert step["if"] == "inputs.builder-driver != ''"  # no builder-driver, no builder of the action's own
    bin_dir = tmp_path / "bin"
    stand_in_docker(bin_dir, tmp_path / "docker.jsonl")
    env = github_environ(tmp_path)
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    env["GITHUB_ENV"] = str(tmp_path / "github-env")
    for name in ("github-output", "github-env"):
        (tmp_path / name).write_text("")
    proc = run_step("builder", inputs, env, tmp_path, {})
    return proc, read_outputs(tmp_path / "github-output")


def test_the_action_makes_the_builder_it_is_asked_for_and_reuses_it(tmp_path: Path) -> None:
    inputs = {"builder-driver": "docker-container", "buildkit-image": "registry.internal:5000/moby/buildkit:v0.32.2",
              "buildkitd-config": TOML, "builder-driver-opts": "network=host\nmemory=2g"}
    proc, outputs = run_builder_step(inputs, tmp_path)
    assert proc.returncode == 0, proc.stderr
    name = outputs["builder"]
    assert re.fullmatch(r"cacheport-[0-9a-f]{12}", name)
    assert (tmp_path / "github-env").read_text() == f"BUILDX_BUILDER={name}\n"  # for the job's later steps
    create = next(c for c in calls(tmp_path / "docker.jsonl") if c["args"][:2] == ["buildx", "create"])
    config = str(tmp_path / "cacheport-buildkitd.toml")
    assert create["args"] == ["buildx", "create", "--name", name, "--driver", "docker-container",
                              "--driver-opt", "image=registry.internal:5000/moby/buildkit:v0.32.2",
                              "--driver-opt", "network=host", "--driver-opt", "memory=2g", "--buildkitd-config", config]
    assert create["files"][config] == TOML + "\n"

    again, outputs = run_builder_step(inputs, tmp_path)  # a later job on the same runner
    assert again.returncode == 0 and outputs["builder"] == name and f"reusing the buildx builder {name}" in again.stdout
    changed, outputs = run_builder_step({**inputs, "buildkit-image": "moby/buildkit:v0.32.2"}, tmp_path)
    assert changed.returncode == 0 and outputs["builder"] != name and "creating the buildx builder" in changed.stdout


def test_the_action_runs_composite_steps_on_a_python_cacheport_supports() -> None:
    action = load(ACTION)
    assert action["runs"]["using"] == "composite"
    python = next(s for s in action["runs"]["steps"] if s.get("id") == "python")
    assert python["uses"].startswith("actions/setup-python@")
    assert python["if"] == "steps.runner-python.outputs.path == ''"  # only when the runner has none of its own
    assert python["with"]["python-version"] == expression("inputs.python-version")
    major, minor = (int(x) for x in action["inputs"]["python-version"]["default"].split("."))
    assert (major, minor) >= (3, 11)
    assert python["with"]["update-environment"] is False  # the job's own python stays as it was
    runtime = next(s for s in action["runs"]["steps"] if "ghaction-github-runtime" in s.get("uses", ""))
    assert runtime["if"] == "inputs.github-runtime == 'true'"


def test_the_example_workflow_feeds_the_action_s_outputs_to_build_push_action() -> None:
    workflow = load(GITHUB_EXAMPLE)
    assert "on" in workflow or True in workflow  # YAML 1.1 reads a bare `on` as true
    steps = workflow["jobs"]["image"]["steps"]
    ours = next(s for s in steps if re.search(r"/cacheport@", s.get("uses", "")))
    assert set(ours.get("with", {})) <= set(load(ACTION)["inputs"])
    build = next(s for s in steps if s.get("uses", "").startswith("docker/build-push-action@"))
    for name in ("cache-from", "cache-to"):  # its builder is setup-buildx-action's: no builder-driver, no builder
        assert build["with"][name] == expression(f"steps.{ours['id']}.outputs.{name}")
    assert "builder-driver" not in ours.get("with", {}) and steps.index(ours) < steps.index(build)


@pytest.mark.parametrize(("version", "found"), [("3.12", True), ("3.11", True), ("3.10", False)])
def test_the_action_uses_the_runner_s_python_when_it_is_new_enough(version: str, found: bool, tmp_path: Path) -> None:
    """A runner without the Python setup-python would install (self-hosted, a container) must still work."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    major, minor = version.split(".")
    fake = bin_dir / "python3"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import sys; sys.exit(({major}, {minor}) < (3, 11))'\n")
    fake.chmod(0o755)
    (bin_dir / "bash").symlink_to("/bin/bash")  # and no other python on this PATH
    env = {**github_environ(tmp_path), "PATH": str(bin_dir)}
    proc = run_step("runner-python", {}, env, tmp_path, {})
    assert proc.returncode == 0, proc.stderr
    outputs = read_outputs(tmp_path / "github-output")
    if found:
        assert outputs == {"path": str(fake)}
    else:
        assert outputs == {} and "setup-python installs one" in proc.stdout


# The report sub-action

REPORT_OWN = {"metadata": "--metadata-file", "metadata-file": "--metadata-file", "builder": "--builder"}


def test_the_report_sub_action_takes_the_cache_step_s_plan_inputs_and_installs_the_same_way() -> None:
    from cacheport.cli.report import command

    report, main = load(REPORT_ACTION), load(ACTION)
    assert report["runs"]["using"] == "composite"
    inputs = set(report["inputs"])
    assert inputs - NOT_FLAGS - set(REPORT_OWN) == plan_flags()
    assert inputs & NOT_FLAGS == NOT_FLAGS - {"github-runtime"}  # it runs nothing that needs the cache service
    for name in inputs & set(main["inputs"]) - {"builder"}:  # the report's names a builder, the other's makes one
        assert report["inputs"][name]["default"] == main["inputs"][name]["default"], name
    flags = {opt for p in command.params for opt in p.opts}
    assert set(REPORT_OWN.values()) <= flags
    steps = {s.get("id"): s for s in report["runs"]["steps"]}
    for step_id in ("runner-python", "install"):  # the same scripts, from the checkout the sub-action sits in
        script = re.search(r'"\$ACTION_PATH/(templates/github/[\w-]+\.sh)"', action_step(step_id)["run"])
        assert script and f'"$ACTION_PATH/../{script.group(1)}"' in steps[step_id]["run"]
        assert steps[step_id]["env"] == action_step(step_id)["env"]
    assert steps["python"]["uses"] == action_step("python")["uses"] and steps["python"]["if"] == action_step("python")["if"]
    assert 'source "$ACTION_PATH/../templates/github/plan-flags.sh"' in steps["report"]["run"]
    for name in inputs - NOT_FLAGS:
        assert steps["report"]["env"][f"INPUT_{name.upper().replace('-', '_')}"] == expression(f"inputs.{name}")


def test_every_report_input_is_documented() -> None:
    documented = table_names(section(CI_DOC.read_text(), "### The report sub-action"))
    assert set(load(REPORT_ACTION)["inputs"]) == set(documented)


def run_report(tmp_path: Path, inputs: Mapping[str, str], extra_env: Mapping[str, str] = (),
               install: bool = True) -> github_actions.ActionRun:
    env = {**github_environ(tmp_path), **dict(extra_env)}
    if install:
        github_actions.installed_cacheport(tmp_path, str(ROOT), sys.executable)
    return github_actions.run_action(REPORT_ACTION, {"backend": "registry", "set": "ref=ghcr.io/org/app/cache",
                                                     **inputs}, env, tmp_path, tmp_path / "runner")


def warnings(run: github_actions.ActionRun) -> list[str]:
    return [line for line in run.log.splitlines() if line.startswith("::warning")]


@pytest.mark.parametrize(("inputs", "warning"), [
    ({"metadata": "{not json"}, "::warning title=cacheport report::the metadata input: not a buildx metadata file: "
                                "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ({"metadata": "[1, 2]"}, "::warning title=cacheport report::not a buildx --metadata-file document (a JSON object)"),
    ({"metadata-file": "no/such/metadata.json"}, "::warning title=cacheport report::Invalid value for "
                                                 "'--metadata-file': File 'no/such/metadata.json' does not exist."),
], ids=["bad JSON", "JSON that is no metadata", "a missing file"])
def test_a_broken_report_input_is_one_warning_and_never_fails_the_job(inputs: dict[str, str], warning: str,
                                                                       tmp_path: Path) -> None:
    run = run_report(tmp_path, inputs)
    assert run.code == 0 and all(p.returncode == 0 for p in run.steps.values()), run.log
    assert [w.split(" (see ")[0] for w in warnings(run)] == [warning]
    assert run.summary == ""


def test_given_both_metadata_and_a_metadata_file_the_report_reads_metadata_and_says_so(tmp_path: Path) -> None:
    run = run_report(tmp_path, {"metadata": "{not json", "metadata-file": "no/such/metadata.json"})
    assert run.code == 0, run.log
    said = [w.split(" (see ")[0] for w in warnings(run)]
    assert said[0] == "::warning title=cacheport report::both metadata and metadata-file are given: reading metadata"
    assert said[1].startswith("::warning title=cacheport report::the metadata input: not a buildx metadata file")

def test_when_cacheport_can_t_be_installed_the_report_is_a_warning(tmp_path: Path) -> None:
    run = run_report(tmp_path, {"metadata": "{}", "source": str(tmp_path / "no-such-cacheport.whl")}, install=False)
    assert run.steps["install"].returncode != 0  # continue-on-error: the job goes on
    assert run.code == 0 and run.steps["report"].returncode == 0
    assert warnings(run) == ["::warning title=cacheport report::no cache report: cacheport could not be installed"]


def test_the_report_masks_the_plan_s_secrets_before_it_says_anything(tmp_path: Path) -> None:
    token = "ghs_" + "s3cr3t" * 6
    run = run_report(tmp_path, {"backend": "gha", "set": "ghtoken-env=GH_TOKEN", "metadata": "{not json"},
                     {"GH_TOKEN": token, **RUNTIME})
    stderr = run.steps["report"].stderr.splitlines()
    assert stderr[0] == f"::add-mask::{token}"
    assert token not in "\n".join(stderr[1:]) + run.steps["report"].stdout + run.summary
    assert run.code == 0 and len(warnings(run)) == 1


def test_after_the_cache_step_the_report_installs_nothing(tmp_path: Path) -> None:
    python = tmp_path / "python" / "python3"
    stand_in_python(python, tmp_path / "pip.jsonl")
    contexts = {"steps.runner-python.outputs.path": str(python)}
    env = github_environ(tmp_path)
    assert run_step("install", {}, env, tmp_path, contexts).returncode == 0
    report_install = next(s for s in load(REPORT_ACTION)["runs"]["steps"] if s.get("id") == "install")
    again = github_actions.run_step(REPORT_ACTION, report_install, {}, env, tmp_path, contexts)
    assert again.returncode == 0, again.stderr
    assert "already installed in this job" in again.stdout
    assert [json.loads(line)[-1] for line in (tmp_path / "pip.jsonl").read_text().splitlines()] == [str(ROOT)]
    venv_bin = tmp_path / "cacheport-venv" / "bin"
    assert read_outputs(tmp_path / "github-output") == {"cli": str(venv_bin / "cacheport")}


def test_the_example_workflow_reports_on_the_build_with_the_cache_step_s_plan() -> None:
    steps = load(GITHUB_EXAMPLE)["jobs"]["image"]["steps"]
    ours = next(s for s in steps if re.search(r"/cacheport@", s.get("uses", "")))
    build = next(s for s in steps if s.get("uses", "").startswith("docker/build-push-action@"))
    report = next(s for s in steps if re.search(r"/cacheport/report@", s.get("uses", "")))
    assert report["uses"].split("/report@")[1] == ours["uses"].split("@")[1]  # the same release
    assert steps.index(build) < steps.index(report)
    # a failed build is reported too; one that never ran is not (the builder's last build may be another job's)
    assert report["if"] == f"always() && steps.{build['id']}.outcome != 'skipped'"
    assert report["with"]["metadata"] == expression(f"steps.{build['id']}.outputs.metadata")
    plan_inputs = set(load(REPORT_ACTION)["inputs"]) - NOT_FLAGS - set(REPORT_OWN)
    assert {k: v for k, v in report["with"].items() if k in plan_inputs} == \
        {k: v for k, v in ours["with"].items() if k in plan_inputs}


# Cache mounts: the GitLab job hands the switch to cacheport build; the action runs cacheport mounts around the build


def recording_cacheport(path: Path, log: Path, status: int = 0, stderr: str = "") -> None:
    """A ``cacheport`` that records its arguments and the mounts settings it was given; ``cacheport mounts`` prints
    a line about a mount, says ``stderr`` and exits with ``status``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""#!{sys.executable}
import json, os, sys
with open({str(log)!r}, "a") as fh:
    fh.write(json.dumps({{"args": sys.argv[1:], "env": {{k: v for k, v in os.environ.items()
                                                       if k.startswith("CACHEPORT_MOUNTS")}}}}) + "\\n")
if sys.argv[1:2] == ["mounts"]:
    sys.stderr.write(f"cacheport: mount  {{sys.argv[2]}}d  deps from main.mounts (1.0 MiB, 0.5 s)\\n" + {stderr!r})
    sys.exit({status})
""")
    path.chmod(0o755)


@pytest.mark.parametrize(("inputs", "settings"), [
    ({}, {}),
    ({"mounts": False}, {"CACHEPORT_MOUNTS": "off"}),
    ({"mounts-helper-image": "registry.internal:5000/library/busybox:1.36"},
     {"CACHEPORT_MOUNTS__HELPER_IMAGE": "registry.internal:5000/library/busybox:1.36"}),
], ids=["on by default, as the config says", "mounts: false", "a helper image"])
def test_the_component_s_mounts_inputs_reach_cacheport_build(inputs: dict[str, Any], settings: dict[str, str],
                                                               tmp_path: Path) -> None:
    job = render(BUILD_COMPONENT, inputs)["container-build"]
    proc, _docker = run_gitlab_job(job, {}, {}, tmp_path, cli_log=tmp_path / "cacheport.jsonl")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    build = next(c for c in calls(tmp_path / "cacheport.jsonl") if c["args"][0] == "build")
    assert build["env"] == settings


def test_in_the_include_template_a_project_s_cacheport_mounts_variable_turns_them_off(tmp_path: Path) -> None:
    job = pipeline(load(TEMPLATE_EXAMPLE))["container-build"]
    for settings in ({"CACHEPORT_MOUNTS": "off"}, {"CONTAINER_CACHE_MOUNTS": "false"}):
        (tmp_path / "cacheport.jsonl").unlink(missing_ok=True)
        proc, _docker = run_gitlab_job(job, {}, settings, tmp_path, cli_log=tmp_path / "cacheport.jsonl")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        build = next(c for c in calls(tmp_path / "cacheport.jsonl") if c["args"][0] == "build")
        assert build["env"] == {"CACHEPORT_MOUNTS": "off"}


def run_mounts_action(tmp_path: Path, inputs: Mapping[str, str], status: int = 0, stderr: str = "",
                      docker: bool = False) -> tuple[github_actions.ActionRun, list[dict[str, Any]]]:
    """The whole action, after an install of this checkout's cacheport, with a recording cacheport in its venv
    (and with ``docker``, a stand-in docker)."""
    env = github_environ(tmp_path)
    if docker:
        stand_in_docker(tmp_path / "docker-bin", tmp_path / "docker.jsonl")
        env["PATH"] = os.pathsep.join([str(tmp_path / "docker-bin"), env["PATH"]])
        env["GITHUB_ENV"] = str(tmp_path / "github-env")
    cli = github_actions.installed_cacheport(tmp_path, str(ROOT), sys.executable)
    log = tmp_path / "cacheport.jsonl"
    log.unlink(missing_ok=True)
    recording_cacheport(cli, log, status, stderr)
    run = github_actions.run_action(ACTION, {"github-runtime": "false", **inputs}, env, tmp_path, tmp_path / "runner")
    return run, calls(log)


MOUNTS_PLAN = {"backend": "registry", "set": "ref=ghcr.io/org/app/cache", "key": "api"}
MOUNTS_BUILD = {"context": "api", "file": "api/Containerfile", "target": "app",
                "build-args": "PYTHON=3.12\n  INDEX_URL=http://127.0.0.1:8080/simple\n"}
MOUNTS_FLAGS = ["api", "--backend", "registry", "--key", "api", "--set", "ref=ghcr.io/org/app/cache",
                "--file", "api/Containerfile", "--target", "app",
                "--build-arg", "PYTHON=3.12", "--build-arg", "INDEX_URL=http://127.0.0.1:8080/simple"]


def test_the_action_restores_the_build_s_cache_mounts_by_default_after_the_cache_flags(tmp_path: Path) -> None:
    run, cli = run_mounts_action(tmp_path, {**MOUNTS_PLAN, **MOUNTS_BUILD,
                                            "mounts-helper-image": "ghcr.io/org/busybox:1.36"})
    assert run.code == 0, run.log
    assert [c["args"][:2] for c in cli] == [["args", "--format"], ["mounts", "restore"]]
    assert cli[1]["args"][2:] == MOUNTS_FLAGS
    assert cli[1]["env"] == {"CACHEPORT_MOUNTS__HELPER_IMAGE": "ghcr.io/org/busybox:1.36"}
    # what happened to each mount: in the log, and in the job summary
    assert "cacheport: mount  restored  deps from main.mounts (1.0 MiB, 0.5 s)" in run.steps["mounts"].stderr
    assert run.summary == ("### Cache mounts: restore\n\n```text\n"
                           "mount  restored  deps from main.mounts (1.0 MiB, 0.5 s)\n```\n")


def test_the_action_s_save_mode_saves_the_cache_mounts_and_does_nothing_else(tmp_path: Path) -> None:
    run, cli = run_mounts_action(tmp_path, {**MOUNTS_PLAN, **MOUNTS_BUILD, "mode": "save"})
    assert run.code == 0, run.log
    assert "args" in run.skipped and run.outputs["cache-from"] == ""
    assert [c["args"] for c in cli] == [["mounts", "save", *MOUNTS_FLAGS]]
    assert cli[0]["env"] == {}


def test_the_action_s_mounts_go_to_the_builder_it_made(tmp_path: Path) -> None:
    run, cli = run_mounts_action(tmp_path, {**MOUNTS_PLAN, "builder-driver": "docker-container"}, docker=True)
    assert run.code == 0, run.log
    restore = cli[-1]["args"]
    assert restore[:2] == ["mounts", "restore"]
    assert restore[restore.index("--builder") + 1] == run.outputs["builder"] != ""


def test_mounts_false_leaves_the_cache_mounts_alone(tmp_path: Path) -> None:
    for mode in ("restore", "save"):
        run, cli = run_mounts_action(tmp_path, {**MOUNTS_PLAN, "mounts": "false", "mode": mode})
        assert run.code == 0 and "mounts" in run.skipped, run.log
        assert not [c for c in cli if c["args"][0] == "mounts"]


@pytest.mark.parametrize(("status", "stderr", "said"), [
    (0, "cacheport: warning: cache mounts: no archive under any name: pip missed\n",
     ["::warning title=cacheport::cache mounts: no archive under any name: pip missed"]),
    (2, "cacheport: error: --file: no such file: Dockerfile\n",
     ["::warning title=cacheport::--file: no such file: Dockerfile",
      "::warning title=cacheport::cache mounts: `cacheport mounts restore` exited with 2; the build goes on without them"]),
], ids=["a warning", "a failure"])
def test_a_mounts_problem_is_a_warning_and_never_fails_the_job(status: int, stderr: str, said: list[str],
                                                               tmp_path: Path) -> None:
    run, _cli = run_mounts_action(tmp_path, MOUNTS_PLAN, status, stderr)
    assert run.code == 0 and run.steps["mounts"].returncode == 0, run.log
    assert [line for line in run.steps["mounts"].stderr.splitlines() + run.steps["mounts"].stdout.splitlines()
            if line.startswith("::")] == said


def test_an_unknown_mode_is_a_warning(tmp_path: Path) -> None:
    run, cli = run_mounts_action(tmp_path, {**MOUNTS_PLAN, "mode": "post"})
    assert run.code == 0, run.log
    assert "::warning title=cacheport::mode: 'post' is neither restore nor save; cache mounts left alone" in run.log
    assert not [c for c in cli if c["args"][0] == "mounts"]


def test_the_docs_show_the_save_step_with_the_cache_step_s_inputs() -> None:
    text = section(CI_DOC.read_text(), "### Cache mounts with the action")
    steps = yaml.safe_load(textwrap.dedent(fenced(text, "yaml")[0]))
    cache, build, save = steps
    assert build["uses"].startswith("docker/build-push-action@") and save["with"]["mode"] == "save"
    assert {k: v for k, v in save["with"].items() if k != "mode"} == cache["with"]
    assert set(cache["with"]) <= set(load(ACTION)["inputs"])
    assert cache["with"]["build-args"] == build["with"]["build-args"]

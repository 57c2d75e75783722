"""A new user's first hour, command by command (issue 23): what the README and the --help examples say runs
as written on a laptop, in a fresh git repository with no remote and no config."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cacheport.cli.build import take_progress
from cacheport.errors import CacheportError
from cacheport.kit import layout_store
from cacheport.oci.layout import Layout
from cacheport.ops.build import Prelude
from cacheport.ops.seed import name_pairs
from cacheport.plugins import Plugins
from cacheport.records import CacheStore
from tests.fakes.caches import local_cache


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=60)


@pytest.fixture
def repo(clean_env: dict[str, str], tmp_path: Path) -> Path:
    """A new git repository with no remote and no config: where a laptop user starts."""
    root = tmp_path / "app"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True, env=clean_env)
    return root


def test_prune_older_than_runs_in_a_repository_without_a_remote(repo: Path, clean_env: dict[str, str],
                                                                tmp_path: Path) -> None:
    cache = local_cache(tmp_path / "cache").directory
    env = {**clean_env, "CACHEPORT_LOCAL__SRC": str(cache)}
    out = run("prune", "--older-than", "14d", env=env, cwd=repo)
    assert out.returncode == 0, out.stderr
    # The directory's one cache is every branch's, the default branch's too: kept unless named.
    assert out.stdout.splitlines()[0].split()[:2] == ["keep", "latest"]
    assert "default branch" in out.stdout.splitlines()[0]
    assert run("prune", "latest", "--yes", env=env, cwd=repo).returncode == 0
    assert Layout(cache).names() == []


def _branch_store(location: str) -> CacheStore:
    """A store that keeps one cache per branch, named after it (as registry backends do)."""
    return CacheStore(location=location, format="image-manifest", name_for=lambda b: b, branch_of=lambda n: n,
                      open=lambda: None)  # type: ignore[arg-type, return-value]


def test_seed_all_from_a_local_cache_writes_the_default_branch_s_name_not_latest(tmp_path: Path) -> None:
    local = layout_store(str(tmp_path / "cache"))
    [pair] = name_pairs(("local", local), ("registry", _branch_store("127.0.0.1:5000/app/cache")), ["latest"],
                        default_branch="main")
    assert (pair.branch, pair.source.name, pair.target.name) == ("main", "latest", "main")


def test_seed_all_from_a_local_cache_asks_for_the_branch_when_the_default_is_unknown(tmp_path: Path) -> None:
    local = layout_store(str(tmp_path / "cache"))
    with pytest.raises(CacheportError, match=r"local keeps one cache for every branch, and the default branch is "
                                             r"unknown here.*--branch BRANCH"):
        name_pairs(("local", local), ("registry", _branch_store("127.0.0.1:5000/app/cache")), ["latest"])


def test_seed_all_from_a_local_cache_on_the_command_line(repo: Path, clean_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    cache = local_cache(tmp_path / "cache").directory
    env = {**clean_env, "CACHEPORT_LOCAL__SRC": str(cache)}
    args = ("seed", "--from", "local", "--to", "registry", "--set", "registry.ref=127.0.0.1:9/app/cache", "--all",
            "--dry-run")
    asked = run(*args, env=env, cwd=repo)
    assert asked.returncode == 2 and asked.stderr.strip().endswith("name the branch: --branch BRANCH")
    subprocess.run(["git", "-C", str(repo), "update-ref", "refs/remotes/origin/main", "HEAD"], env=clean_env,
                   capture_output=True)
    subprocess.run(["git", "-C", str(repo), "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main"],
                   env=clean_env, check=True)
    told = run(*args, env=env, cwd=repo)
    assert "copying it as the default branch's (main)" in told.stderr


@pytest.mark.parametrize("argv, fixed", [
    (["build", ".", "-t", "app", "--network=host"], "cacheport build . -t app -- --network=host"),
    (["build", "--network", "host", "."], "cacheport build . -- --network host"),
    (["build", "--no-cache", ".", "--", "--pull"], "cacheport build . -- --no-cache --pull"),
])
def test_a_buildx_flag_before_the_double_dash_shows_the_corrected_command(argv: list[str], fixed: str,
                                                                          clean_env: dict[str, str],
                                                                          tmp_path: Path) -> None:
    out = run(*argv, env=clean_env, cwd=tmp_path)
    assert out.returncode == 2
    assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("cacheport: error: no such option '--")
    assert f"buildx's own flags go after --: {fixed} (see 'cacheport build --help')" in out.stderr


def test_a_typo_of_one_of_build_s_own_options_keeps_click_s_suggestion(clean_env: dict[str, str],
                                                                       tmp_path: Path) -> None:
    out = run("build", ".", "--tga", "x", env=clean_env, cwd=tmp_path)
    assert out.returncode == 2 and "'--tag'" in out.stderr and "after --" not in out.stderr


@pytest.mark.parametrize("extra, rest, mode", [
    (["--progress=plain", "--push"], ["--push"], "plain"),
    (["--progress", "tty", "--pull"], ["--pull"], "tty"),
    (["--push"], ["--push"], None),
    (["--progress=plain", "--progress=quiet"], [], "quiet"),
])
def test_the_user_s_progress_flag_is_taken_out_of_buildx_s_arguments(extra: list[str], rest: list[str],
                                                                      mode: str | None) -> None:
    assert take_progress(extra) == (rest, mode)


def test_what_buildx_says_before_the_build_starts_is_held_back() -> None:
    fed: list[str] = []
    held = Prelude(fed.append)
    for line in ['ERROR: "docker buildx build" requires exactly 1 argument.\n', "See 'docker buildx build --help'.\n",
                 "\n", "Usage:  docker buildx build [OPTIONS] PATH | URL | -\n"]:
        held.add(line)
    assert not held.started and fed == []
    assert held.failure() == 'ERROR: "docker buildx build" requires exactly 1 argument.'
    started = Prelude(fed.append)
    started.add("WARNING: something\n")
    started.add('{"vertexes": []}\n')
    assert started.started and fed == ["WARNING: something\n", '{"vertexes": []}\n']


def test_getting_started_s_ci_example_leaves_the_next_section_on_the_laptop(repo: Path,
                                                                            clean_env: dict[str, str]) -> None:
    """The page's commands run in one shell, as a reader types them: the GitLab variables of "The same command
    in CI" must not leak into "A cache of your choosing", whose output is a laptop's."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "getting-started.md").read_text()

    def commands(heading: str) -> str:
        section = page.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
        return re.search(r"^```sh\n(.*?)^```$", section, re.M | re.S).group(1)  # type: ignore[union-attr]

    script = commands("The same command in CI") + commands("A cache of your choosing")
    out = subprocess.run(["bash", "-e", "-c", script], cwd=repo, capture_output=True, text=True, timeout=120,
                         env={**clean_env, "PATH": f"{Path(sys.executable).parent}:{clean_env['PATH']}"})
    assert out.returncode == 0, out.stderr
    assert "cache:feature-login,mode=max" in out.stdout
    assert "(local detected)" in out.stdout and "registry.example.com/team/app/cache:main," in out.stdout


def test_explain_shows_the_format_the_export_carries_not_unset(tmp_path: Path, builtins: Plugins) -> None:
    from cacheport.config import load_config
    from cacheport.context import Context
    from cacheport.plan import build_plan
    from cacheport.render import explain

    ctx = Context("local", "app", branch="main", trusted=True)
    plan = build_plan(load_config(tmp_path, {}, cli=[("backend", "registry", "--backend"),
                                                     ("ref", "127.0.0.1:5000/app/cache", "--set ref")]), ctx, builtins)
    assert plan.exports[0].get("image-manifest") == "true"
    text = explain(plan)
    assert re.search(r"\n  registry\.image-manifest +true +← default: registry's own choice, as its export states\n",
                     text), text
    assert re.search(r"\n  registry\.compression +\(unset\) +← default\n", text)  # not stated: still unset
    stated = build_plan(load_config(tmp_path, {}, cli=[
        ("backend", "registry", "--backend"), ("ref", "127.0.0.1:5000/app/cache", "--set ref"),
        ("oci-mediatypes", "false", "--set oci-mediatypes")]), ctx, builtins)
    assert re.search(r"\n  registry\.image-manifest +false +← default: registry's own choice", explain(stated))


def test_branches_gone_in_a_repository_without_a_remote_reads_its_own_branches(repo: Path,
                                                                                clean_env: dict[str, str]) -> None:
    from cacheport.errors import ConfigError
    from cacheport.ops.inventory import remote_branches

    git = ["git", "-C", str(repo), "-c", "user.email=you@example.com", "-c", "user.name=you"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], check=True, env=clean_env)
    subprocess.run([*git, "branch", "feature/x"], check=True, env=clean_env)
    assert sorted(remote_branches(repo)) == ["feature/x", "main"]
    subprocess.run([*git, "remote", "add", "upstream", str(repo / "nowhere")], check=True, env=clean_env)
    with pytest.raises(ConfigError, match=r"^--branches-gone: git ls-remote --heads origin: fatal: "):
        remote_branches(repo)


def test_explain_never_takes_an_option_for_an_export_attribute_of_the_same_name(tmp_path: Path,
                                                                                builtins: Plugins) -> None:
    from cacheport.config import load_config
    from cacheport.context import Context
    from cacheport.plan import build_plan
    from cacheport.render import explain

    plan = build_plan(load_config(tmp_path, {}), Context("local", "app", branch="main", trusted=True), builtins)
    assert plan.exports[0].get("dest", "").endswith(".new")  # where this build writes, not where the cache lives
    assert re.search(r"\n  local\.dest +\(unset\) +← default\n", explain(plan)), explain(plan)


def test_status_after_seeding_a_local_cache_does_not_ask_to_seed_it_again(repo: Path, clean_env: dict[str, str],
                                                                          tmp_path: Path) -> None:
    from tests.fakes.registry import FakeRegistry

    cache = local_cache(tmp_path / "cache").directory
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "init"], env=clean_env,
                   check=True, capture_output=True)
    with FakeRegistry() as new:
        (repo / "cacheport.toml").write_text(
            f'backend = "registry"\n[registry]\nref = "{new.host}/app/cache"\n'
            f'[local]\nsrc = "{cache}"\n[migration]\nfrom = "local"\n')
        before = run("status", env=clean_env, cwd=repo)
        assert before.returncode == 0, before.stderr
        assert "1 tag(s) only in local: `cacheport seed --from local --to registry --all`" in before.stdout
        # One row per cache, under the name it has (or will have, once seeded) in the new backend.
        assert re.search(r"\nmain +\S+ \S+ \S+ \(latest\) +- ", before.stdout), before.stdout
        seeded = run("seed", "--from", "local", "--to", "registry", "--all", env=clean_env, cwd=repo)
        assert seeded.returncode == 0, seeded.stderr
        after = run("status", env=clean_env, cwd=repo)
        assert after.returncode == 0, after.stderr
        # The directory's one cache (latest) now is the default branch's tag in the registry: one row, nothing
        # to seed.
        assert [line.split()[0] for line in after.stdout.splitlines()[3:]] == ["TAG", "main"], after.stdout
        assert "(latest)" in after.stdout.splitlines()[4] and "only in local" not in after.stdout
        doc = json.loads(run("status", "--format", "json", env=clean_env, cwd=repo).stdout)
        assert [(r["tag"], r["old_tag"], r["new"] is not None) for r in doc["tags"]] == [("main", "latest", True)]


@pytest.mark.parametrize("argv, fixed", [
    (["args", "--network=host"], "docker buildx build $(cacheport args) --network=host ."),
    (["args", "--network", "host"], "docker buildx build $(cacheport args) --network host ."),
    (["args", "--", "--network=host", "--pull"], "docker buildx build $(cacheport args) --network=host --pull ."),
])
def test_a_buildx_flag_given_to_args_shows_where_it_goes(argv: list[str], fixed: str, clean_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    out = run(*argv, env=clean_env, cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.splitlines()) == 1
    assert out.stderr.rstrip().endswith(f"buildx's own go on buildx's command line: {fixed} "
                                        "(see 'cacheport args --help')")


def test_a_typo_of_one_of_args_own_options_keeps_click_s_suggestion(clean_env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    out = run("args", "--formt", "json", env=clean_env, cwd=tmp_path)
    assert out.returncode == 2 and "'--format'" in out.stderr and "buildx" not in out.stderr


@pytest.mark.parametrize("setting, key", [("username=bob", "username = 'bob'"), ("username-env=ME", "username-env = 'ME'")])
def test_a_user_name_without_a_password_variable_is_said(setting: str, key: str, clean_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    out = run("args", "-b", "registry", "--set", "ref=127.0.0.1:5000/app/cache", "--set", setting, env=clean_env,
              cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("--cache-from=type=registry,")
    assert f"cacheport: warning: {key} is set but password-env is not, so no login is made" in out.stderr
    fine = run("args", "-b", "registry", "--set", "ref=127.0.0.1:5000/app/cache", "--set", setting,
               "--set", "password-env=CACHE_PW", env=clean_env, cwd=tmp_path)
    assert "password-env" not in fine.stderr


def test_build_without_the_buildx_plugin_says_to_install_it(clean_env: dict[str, str], tmp_path: Path) -> None:
    docker = tmp_path / "docker"  # docker 28 without the plugin: what it prints, and its exit status
    docker.write_text(f"""#!{sys.executable}
import sys
if sys.argv[1:2] == ["buildx"] and sys.argv[2:3] != ["build"]:
    sys.stderr.write("docker: unknown command: docker buildx\\n\\nRun 'docker --help' for more information\\n")
    sys.exit(1)
sys.stderr.write("unknown flag: --progress\\n\\nUsage:  docker [OPTIONS] COMMAND [ARG...]\\n\\n"
                 "Run 'docker --help' for more information\\n")
sys.exit(125)
""")
    docker.chmod(0o755)
    env = {**clean_env, "CACHEPORT_DOCKER": str(docker), "CACHEPORT_BACKEND": "local",
           "CACHEPORT_LOCAL__SRC": str(tmp_path / "cache")}
    out = run("build", ".", env=env, cwd=tmp_path)
    assert out.returncode == 125
    assert out.stderr.splitlines() == [
        "cacheport: error: buildx is not installed (docker: unknown command: docker buildx), exit 125: install the "
        "docker-buildx plugin; `docker buildx version` must work, and `cacheport doctor` checks the whole setup"]


def test_status_of_a_local_cache_claims_no_format_its_table_contradicts(repo: Path, clean_env: dict[str, str],
                                                                        tmp_path: Path) -> None:
    cache = local_cache(tmp_path / "cache").directory  # image-manifest, as BuildKit 0.21 and later write it
    out = run("status", env={**clean_env, "CACHEPORT_LOCAL__SRC": str(cache)}, cwd=repo)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"{cache}: 1 cache(s)"
    assert lines[3].split()[:2] == ["latest", "image-manifest"]


@pytest.mark.parametrize("ci_file, backend", [(".gitlab-ci.yml", "gitlab"), (".github/workflows", "gha"), (None, None)])
def test_init_on_a_laptop_leaves_the_backend_to_each_place_when_a_ci_reads_the_file_too(
        ci_file: str | None, backend: str | None, repo: Path, clean_env: dict[str, str]) -> None:
    if ci_file:
        (repo / ci_file).parent.mkdir(parents=True, exist_ok=True)
        (repo / ci_file).mkdir() if ci_file.endswith("workflows") else (repo / ci_file).write_text("build: {}\n")
    out = run("init", env=clean_env, cwd=repo)
    assert out.returncode == 0, out.stderr
    written = (repo / "cacheport.toml").read_text()
    if backend:
        # backend = "local" here would be the CI jobs' backend too, each job keeping its cache to itself
        assert "backend =" not in written.replace('#   backend = "registry"', "")
        assert f"{ci_file} builds with {backend}" in out.stdout and out.stderr == ""
        plan = json.loads(run("explain", "--format", "json", env=clean_env, cwd=repo).stdout)
        assert plan["backend"] == "local"  # this laptop still keeps its own
        in_ci = run("explain", "--format", "json", env={**clean_env, "GITLAB_CI": "true", "CI": "true",
                    "CI_REGISTRY_IMAGE": "127.0.0.1:5000/group/app", "CI_PROJECT_PATH": "group/app",
                    "CI_COMMIT_REF_NAME": "main", "CI_DEFAULT_BRANCH": "main"}, cwd=repo)
        if backend == "gitlab":
            assert json.loads(in_ci.stdout)["backend"] == "gitlab", in_ci.stderr
    else:
        assert written == 'backend = "local"\n' and out.stderr == ""
    chosen = run("init", "--force", "--backend", "local", env=clean_env, cwd=repo)
    assert chosen.returncode == 0 and chosen.stderr == ""  # asked for by name: no warning


def test_bake_output_for_a_local_cache_makes_its_directory_and_names_the_flag_buildx_asks_for(
        repo: Path, clean_env: dict[str, str], tmp_path: Path) -> None:
    cache_root = tmp_path / "xdg-cache"
    env = {**clean_env, "XDG_CACHE_HOME": str(cache_root)}
    out = run("args", "--format", "bake", env=env, cwd=repo)
    assert out.returncode == 0, out.stderr
    dest = Path(re.search(r"dest=([^,\"]+)", out.stdout)[1])
    assert dest.is_relative_to(cache_root / "cacheport") and dest.parent.is_dir() and not dest.exists()
    note = [line for line in out.stderr.splitlines() if "--allow=fs=" in line]
    assert len(note) == 1 and f"--allow=fs={dest.parent}" in note[0]
    # A cache inside the project needs no grant, and gets no note.
    inside = run("args", "--format", "bake", "--set", f"src={repo / '.cache'}", "--backend", "local",
                 env=env, cwd=repo)
    assert inside.returncode == 0, inside.stderr
    assert "--allow" not in inside.stderr
    # Other formats say nothing about bake.
    assert "--allow" not in run("args", env=env, cwd=repo).stderr

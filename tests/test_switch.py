"""`cacheport switch` and `cacheport init`: edits that keep the file, and a stateful model of migrations."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cacheport_builtins import contexts, gitlab, local, registry
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cacheport.config import load_config
from cacheport.context import Context
from cacheport.errors import ConfigError
from cacheport.plan import Plan, build_plan
from cacheport.plugins import Plugins
from cacheport.switch import switched

from .conftest import GITLAB_ENV

PYPROJECT = """\
[project]
name = "app"  # the app

# Where the build cache lives
[tool.cacheport]
backend = "gitlab"   # today

[tool.cacheport.registry]
ref = "new.example/app/cache"  # tomorrow
"""


def test_switch_keeps_everything_else_byte_for_byte() -> None:
    after = switched(PYPROJECT, pyproject=True, current="gitlab", new="registry", phase=None, finish=False)
    assert after == PYPROJECT.replace('backend = "gitlab"', 'backend = "registry"') + (
        '\n[tool.cacheport.migration]\nfrom = "gitlab"\nphase = "dual-read"\n'
    )
    onward = switched(after, pyproject=True, current="registry", new=None, phase="dual-write", finish=False)
    assert 'phase = "dual-write"' in onward
    done = switched(onward, pyproject=True, current="registry", new=None, phase=None, finish=True)
    assert "migration" not in done and done.startswith(PYPROJECT.replace('"gitlab"   # today', '"registry"   # today'))


def test_switch_refuses_to_abandon_a_migration_in_progress() -> None:
    after = switched(PYPROJECT, pyproject=True, current="gitlab", new="registry", phase=None, finish=False)
    with pytest.raises(ConfigError, match="still in dual-read; finish it first"):
        switched(after, pyproject=True, current="registry", new="local", phase=None, finish=False)


def run(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_switch_cli_writes_atomically_and_refuses_env_and_broken_results(clean_env: dict[str, str]) -> None:
    cwd = Path.cwd()
    (cwd / "pyproject.toml").write_text(PYPROJECT)
    (cwd / "pyproject.toml").chmod(0o640)
    env = {**clean_env, **GITLAB_ENV}
    dry = run(cwd, "switch", "registry", "--dry-run", env=env)
    assert dry.returncode == 0 and '+backend = "registry"   # today' in dry.stdout
    assert (cwd / "pyproject.toml").read_text() == PYPROJECT
    broken = run(cwd, "switch", "inline", env=env)  # inline needs a ref
    assert broken.returncode == 2 and "not written" in broken.stderr and "needs option 'ref'" in broken.stderr
    assert (cwd / "pyproject.toml").read_text() == PYPROJECT
    fixed = run(cwd, "switch", "inline", "--set", "ref=new.example/app", env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert (cwd / "pyproject.toml").stat().st_mode & 0o777 == 0o640
    assert "[tool.cacheport.inline]" in (cwd / "pyproject.toml").read_text()
    refused = run(cwd, "switch", "--finish", env={**env, "CACHEPORT_BACKEND": "local"})
    assert refused.returncode == 2 and "set by CACHEPORT_BACKEND" in refused.stderr
    assert sorted(p.name for p in cwd.iterdir()) == ["pyproject.toml"]  # no temp files left behind


def test_init_writes_a_working_starter(clean_env: dict[str, str]) -> None:
    cwd = Path.cwd()
    out = run(cwd, "init", env={**clean_env, **GITLAB_ENV})
    assert out.returncode == 0, out.stderr
    assert (cwd / "cacheport.toml").read_text() == 'backend = "gitlab"\n'
    again = run(cwd, "init", env=clean_env)
    assert again.returncode == 2 and "exists already" in again.stderr
    missing = run(cwd, "init", "--backend", "registry", "--force", env=clean_env)
    assert missing.returncode == 2 and "needs option 'ref'" in missing.stderr
    assert (cwd / "cacheport.toml").read_text() == 'backend = "gitlab"\n'


def test_init_in_a_subdirectory_writes_where_builds_from_the_top_read_it_and_says_where(
        clean_env: dict[str, str]) -> None:
    repo = Path.cwd() / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    deep = repo / "sub" / "deep"
    deep.mkdir(parents=True)
    out = run(deep, "init", "--backend", "registry", "--set", "ref=127.0.0.1:1/app/cache", env=clean_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"wrote {repo / 'cacheport.toml'}: backend = registry")
    assert not (deep / "cacheport.toml").exists()
    explained = run(repo, "explain", "--format", "json", env=clean_env)  # a build from the top reads it
    assert json.loads(explained.stdout)["backend"] == "registry", explained.stderr
    again = run(deep, "init", env=clean_env)
    assert again.returncode == 2 and f"{repo / 'cacheport.toml'} exists already" in again.stderr

    here = run(deep, "init", "--here", env=clean_env)  # a monorepo's project, built from its own directory
    assert here.returncode == 0 and (deep / "cacheport.toml").read_text() == 'backend = "local"\n'
    assert here.stdout.startswith("wrote cacheport.toml:")  # where it runs: the name says it


def test_init_where_pyproject_holds_the_settings_or_cacheport_config_names_the_file(
        clean_env: dict[str, str]) -> None:
    repo = Path.cwd() / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "sub").mkdir()
    (repo / "pyproject.toml").write_text(PYPROJECT)
    refused = run(repo / "sub", "init", env=clean_env)
    assert refused.returncode == 2 and f"{repo / 'pyproject.toml'} has a [tool.cacheport] table" in refused.stderr
    dry = run(repo / "sub", "init", "--dry-run", env=clean_env)
    assert dry.returncode == 0 and dry.stderr == f"cacheport: would write {repo / 'cacheport.toml'}\n"
    assert not (repo / "cacheport.toml").exists()
    forced = run(repo / "sub", "init", "--force", env=clean_env)
    assert forced.returncode == 0 and (repo / "cacheport.toml").is_file()
    chosen = Path.cwd() / "elsewhere.toml"
    named = run(repo / "sub", "init", env={**clean_env, "CACHEPORT_CONFIG": str(chosen)})
    assert named.returncode == 0 and named.stdout.startswith(f"wrote {chosen}:") and chosen.is_file()


# --- a stateful model: random sequences of switches, phases, finishes, overrides and builds ---------------

BACKENDS = ("registry", "gitlab", "local")
BRANCH = "feat"


def owner(entry_text: str) -> str:
    if "type=local" in entry_text:
        return "local"
    return "registry" if "new.example" in entry_text else "gitlab"


class Migrations(RuleBasedStateMachine):
    """The model: which backends hold cache for the branch. Builds put cache where the plan exports."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="cacheport-stateful-"))
        self.plugins = Plugins.from_modules([registry, gitlab, local, contexts])
        self.context = Context("gitlab", "group/app", branch=BRANCH, default_branch="main")
        self.holding: set[str] = set()
        self.override: str | None = None

    @initialize(start=st.sampled_from(BACKENDS))
    def start(self, start: str) -> None:
        self.path = self.tmp / "cacheport.toml"
        self.path.write_text(f'# the team\'s cache settings\nbackend = "{start}"  # where it lives\n'
                             f'[registry]\nref = "new.example/app/cache"  # the new registry\n'
                             f'[local]\nsrc = "{self.tmp}/local"\n')

    def plan(self, override: str | None = None) -> Plan:
        env = {**GITLAB_ENV, "CI_REGISTRY_IMAGE": "old.example/group/app", "HOME": str(self.tmp)}
        if override:
            env["CACHEPORT_BACKEND"] = override
        return build_plan(load_config(self.tmp, env), self.context, self.plugins)

    def edit(self, **kwargs: object) -> None:
        current = self.plan().backend
        try:
            text = switched(self.path.read_text(), pyproject=False, current=current, **kwargs)  # type: ignore[arg-type]
        except ConfigError:
            return  # refused: the file must stay as it was
        self.path.write_text(text)

    @rule(new=st.sampled_from(BACKENDS), phase=st.sampled_from([None, "dual-read", "dual-write", "cutover"]))
    def switch(self, new: str, phase: str | None) -> None:
        self.edit(new=new, phase=phase, finish=False)

    @rule(phase=st.sampled_from(["dual-read", "dual-write", "cutover"]))
    def move_phase(self, phase: str) -> None:
        self.edit(new=None, phase=phase, finish=False)

    @rule()
    def finish(self) -> None:
        before = self.plan()
        self.edit(new=None, phase=None, finish=True)
        after = self.plan()
        if before.migration:
            assert all(owner(e.format()) != before.migration.old for e in (*after.imports, *after.exports))

    @rule(backend=st.sampled_from([None, *BACKENDS]))
    def override_by_env(self, backend: str | None) -> None:
        self.override = backend

    @rule()
    def build(self) -> None:
        plan = self.plan(self.override)
        self.holding |= {owner(e.format()) for e in plan.exports}

    @invariant()
    @precondition(lambda self: hasattr(self, "path"))
    def the_file_round_trips_with_its_comments(self) -> None:
        import tomlkit

        text = self.path.read_text()
        assert tomlkit.dumps(tomlkit.parse(text)) == text
        for comment in ("# the team's cache settings", "# where it lives", "# the new registry"):
            assert comment in text

    @invariant()
    @precondition(lambda self: hasattr(self, "path"))
    def plans_are_valid_and_keep_cache_readable(self) -> None:
        plan = self.plan()
        texts = [e.format() for e in plan.exports]
        assert len(texts) == len(set(texts)), "duplicate exports"
        read = {owner(e.format()) for e in plan.imports}
        if plan.migration:
            assert {plan.backend, plan.migration.old} & self.holding <= read
        assert plan.backend in read


TestMigrations = Migrations.TestCase
TestMigrations.settings = settings(max_examples=40, stateful_step_count=12, deadline=None)


def test_switch_from_the_context_default_knows_it(clean_env: dict[str, str]) -> None:
    cwd = Path.cwd()
    env = {**clean_env, **GITLAB_ENV}
    default = run(cwd, "switch", "registry", "--set", "ref=new.example/app/cache", "--dry-run", env=env)
    assert default.returncode == 0, default.stderr
    assert 'from = "gitlab"' in default.stdout and "taken to be in 'gitlab' (the gitlab default here)" in default.stderr
    told = run(cwd, "switch", "registry", "--from", "gitlab", "--set", "ref=new.example/app/cache",
               "--set", "insecure=true", env=env)
    assert told.returncode == 0, told.stderr
    text = (cwd / "cacheport.toml").read_text()
    assert 'from = "gitlab"' in text and "insecure = true" in text


@pytest.mark.parametrize("ci_file, old", [(None, "local"), (".gitlab-ci.yml", "gitlab"),
                                          (".github/workflows/build.yml", "gha")])
def test_switch_on_a_laptop_without_config_reads_the_cache_where_the_repository_s_ci_keeps_it(
        clean_env: dict[str, str], ci_file: str | None, old: str) -> None:
    cwd = Path.cwd()
    subprocess.run(["git", "init", "-q", str(cwd)], check=True)
    if ci_file:
        (cwd / ci_file).parent.mkdir(parents=True, exist_ok=True)
        (cwd / ci_file).write_text("")
    (cwd / "sub").mkdir()
    out = run(cwd / "sub", "switch", "registry", "--set", "ref=127.0.0.1:5000/app/cache", env=clean_env)
    assert out.returncode == 0, out.stderr
    assert f"taken to be in {old!r}" in out.stderr
    assert f'[migration]\nfrom = "{old}"\nphase = "dual-read"' in next(cwd.rglob("cacheport.toml")).read_text()


def test_switch_without_config_asks_when_the_repository_has_two_cis(clean_env: dict[str, str]) -> None:
    cwd = Path.cwd()
    subprocess.run(["git", "init", "-q", str(cwd)], check=True)
    (cwd / ".gitlab-ci.yml").write_text("")
    (cwd / ".github" / "workflows").mkdir(parents=True)
    out = run(cwd, "switch", "registry", "--set", "ref=127.0.0.1:5000/app/cache", env=clean_env)
    assert out.returncode == 2 and "cacheport switch registry --from BACKEND" in out.stderr
    assert not (cwd / "cacheport.toml").exists()


def test_switch_to_where_the_cache_already_is_names_the_backend_without_a_migration(
        clean_env: dict[str, str]) -> None:
    cwd = Path.cwd()
    subprocess.run(["git", "init", "-q", str(cwd)], check=True)
    (cwd / ".gitlab-ci.yml").write_text("")
    out = run(cwd, "switch", "gitlab", "--set", "ref=127.0.0.1:5000/group/app/cache", env=clean_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{cwd / 'cacheport.toml'}: backend = gitlab; no migration: the cache is already there\n"
    text = (cwd / "cacheport.toml").read_text()
    assert 'backend = "gitlab"' in text and "migration" not in text
    again = run(cwd, "switch", "gitlab", env=clean_env)
    assert again.returncode == 2 and "'gitlab' is already the backend" in again.stderr
    assert (cwd / "cacheport.toml").read_text() == text

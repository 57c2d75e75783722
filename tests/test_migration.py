"""Migration phases: dual-read, dual-write and cutover, as the plan applies them."""

from __future__ import annotations

from pathlib import Path

import pytest

from cacheport import render
from cacheport.config import load_config
from cacheport.context import Context
from cacheport.errors import ConfigError
from cacheport.plan import Plan, build_plan
from cacheport.plugins import Plugins

from .conftest import GITLAB_ENV

CTX = Context("gitlab", "group/app", branch="feat", default_branch="main", default_backend="gitlab")
BASE = '[tool.cacheport]\nbackend = "registry"\n[tool.cacheport.registry]\nref = "new.example/app/cache"\n'


def plan(tmp_path: Path, plugins: Plugins, extra: str = "", ctx: Context = CTX) -> Plan:
    (tmp_path / "pyproject.toml").write_text(BASE + extra)
    return build_plan(load_config(tmp_path, GITLAB_ENV), ctx, plugins)


def refs(entries: tuple) -> list[str]:  # type: ignore[type-arg]
    return [e.get("ref") for e in entries]


def test_dual_read_imports_new_then_old_and_exports_new_only(tmp_path: Path, builtins: Plugins) -> None:
    p = plan(tmp_path, builtins, '[tool.cacheport.migration]\nfrom = "gitlab"\nphase = "dual-read"\n')
    assert refs(p.imports) == [
        "new.example/app/cache:feat", "new.example/app/cache:main",
        "registry.example.com/group/app/cache:feat", "registry.example.com/group/app/cache:main",
    ]
    assert refs(p.exports) == ["new.example/app/cache:feat"]
    assert p.migration is not None and (p.migration.old, p.migration.phase) == ("gitlab", "dual-read")
    assert "migrating from gitlab: dual-read" in render.explain(p)


def test_dual_write_exports_to_both(tmp_path: Path, builtins: Plugins) -> None:
    p = plan(tmp_path, builtins, '[tool.cacheport.migration]\nfrom = "gitlab"\nphase = "dual-write"\n')
    assert refs(p.exports) == ["new.example/app/cache:feat", "registry.example.com/group/app/cache:feat"]
    assert len(p.imports) == 4
    assert {lg.password_env for lg in p.logins} == {"CI_REGISTRY_PASSWORD", "CI_JOB_TOKEN"}


def test_cutover_and_no_table_use_the_new_backend_only(tmp_path: Path, builtins: Plugins) -> None:
    cut = plan(tmp_path, builtins, '[tool.cacheport.migration]\nfrom = "gitlab"\nphase = "cutover"\n')
    none = plan(tmp_path, builtins)
    assert refs(cut.imports) == refs(none.imports) == ["new.example/app/cache:feat", "new.example/app/cache:main"]
    assert refs(cut.exports) == refs(none.exports)
    assert any("switch --finish" in w for w in cut.warnings)
    assert cut.migration is None


def test_phase_defaults_to_dual_read(tmp_path: Path, builtins: Plugins) -> None:
    p = plan(tmp_path, builtins, '[tool.cacheport.migration]\nfrom = "gitlab"\n')
    assert p.migration is not None and p.migration.phase == "dual-read"


def test_untrusted_jobs_write_neither_backend(tmp_path: Path, builtins: Plugins) -> None:
    fork = Context("gitlab", "group/app", branch="feat", default_branch="main", trusted=False)
    p = plan(tmp_path, builtins, '[tool.cacheport.migration]\nfrom = "gitlab"\nphase = "dual-write"\n', ctx=fork)
    assert p.exports == () and len(p.imports) == 4


def test_migration_keys_are_checked(tmp_path: Path, builtins: Plugins) -> None:
    with pytest.raises(ConfigError, match=r"\[migration\] has no key 'form' \(did you mean 'from'"):
        plan(tmp_path, builtins, '[tool.cacheport.migration]\nform = "gitlab"\n')
    with pytest.raises(ConfigError, match="allowed values are dual-read, dual-write, cutover"):
        plan(tmp_path, builtins, '[tool.cacheport.migration]\nfrom = "gitlab"\nphase = "both"\n')


def test_migration_from_the_environment(tmp_path: Path, builtins: Plugins) -> None:
    (tmp_path / "pyproject.toml").write_text(BASE)
    env = {**GITLAB_ENV, "CACHEPORT_MIGRATION__FROM": "gitlab", "CACHEPORT_MIGRATION__PHASE": "dual-write"}
    p = build_plan(load_config(tmp_path, env), CTX, builtins)
    assert p.migration is not None and p.migration.phase == "dual-write" and len(p.exports) == 2


def test_an_old_backend_that_cannot_work_here_is_skipped_not_fatal(tmp_path: Path, builtins: Plugins) -> None:
    (tmp_path / "pyproject.toml").write_text(BASE + '[tool.cacheport.migration]\nfrom = "gitlab"\n')
    p = build_plan(load_config(tmp_path, {}), Context("local", "app", branch="main"), builtins)  # no CI_REGISTRY_IMAGE
    assert refs(p.imports) == ["new.example/app/cache:main"] and p.migration is None
    assert any("the old backend 'gitlab' can't be used here" in w for w in p.warnings)

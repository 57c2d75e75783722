"""Typos and surprises get a hint: a misspelt table, variable, option or plugin backend; an environment variable
that silently beats the config file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cacheport.config import OTHER_VARIABLES, load_config
from cacheport.context import Context
from cacheport.errors import ConfigError, UnknownBackendError
from cacheport.plan import build_plan
from cacheport.plugins import Plugins
from tests.e2e.harness import HARNESS_PREFIXES

LAPTOP = Context("local", "app", branch="main", trusted=True)
ROOT = Path(__file__).resolve().parent.parent


def plan(tmp_path: Path, plugins: Plugins, toml: str = "", env: dict[str, str] | None = None,
         cli: list[tuple[str, object, str]] | None = None):
    if toml:
        (tmp_path / "cacheport.toml").write_text(toml)
    return build_plan(load_config(tmp_path, env or {}, cli=cli or []), LAPTOP, plugins)


def test_a_misspelt_table_is_named_when_the_backend_misses_an_option(tmp_path: Path, builtins: Plugins) -> None:
    with pytest.raises(ConfigError, match=r"needs option 'ref'.*the file has a table \[registy\]: did you mean "
                                          r"\[registry\]\?"):
        plan(tmp_path, builtins, 'backend = "registry"\n[registy]\nref = "127.0.0.1:5000/app/cache"\n')


def test_a_misspelt_idle_table_is_a_warning_with_the_name_it_resembles(tmp_path: Path, builtins: Plugins) -> None:
    found = plan(tmp_path, builtins, 'backend = "local"\n[registy]\nref = "127.0.0.1:5000/app/cache"\n')
    assert [w for w in found.warnings if "[registy]" in w and "did you mean 'registry'?" in w]


def test_an_unknown_cacheport_variable_is_warned_about_with_the_likely_name(tmp_path: Path,
                                                                            builtins: Plugins) -> None:
    found = plan(tmp_path, builtins, env={"CACHEPORT_BAKEND": "registry", "CACHEPORT_REGISTRY_REF": "x"})
    assert found.backend == "local"
    assert "CACHEPORT_BAKEND is not a cacheport variable and is ignored (did you mean 'CACHEPORT_BACKEND'?)" \
        in found.warnings
    assert any(w.startswith("CACHEPORT_REGISTRY_REF is not") and "'CACHEPORT_REGISTRY__REF'" in w
               for w in found.warnings)


def test_another_tool_s_family_of_variables_is_one_warning_and_a_typo_beside_it_still_its_own(
        tmp_path: Path, builtins: Plugins) -> None:
    family = {f"CACHEPORT_E2E_THING_{i}": "x" for i in range(5)}
    found = plan(tmp_path, builtins, env={**family, "CACHEPORT_HISTROY": "off", "CACHEPORT_ZZ_ONE": "1",
                                          "CACHEPORT_ZZ_TWO": "2"})
    strangers = [w for w in found.warnings if "not cacheport variable" in w or "not a cacheport variable" in w]
    assert ("CACHEPORT_E2E_* (5 variables: CACHEPORT_E2E_THING_0, CACHEPORT_E2E_THING_1, ...) are not cacheport "
            "variables and are ignored") in strangers
    assert not [w for w in strangers if w.startswith("CACHEPORT_E2E_THING")]
    # Two of a kind are not a family yet: each is named.
    assert [w.split()[0] for w in strangers if w.startswith("CACHEPORT_ZZ_")] == ["CACHEPORT_ZZ_ONE", "CACHEPORT_ZZ_TWO"]
    assert "CACHEPORT_HISTROY is not a cacheport variable and is ignored (did you mean 'CACHEPORT_HISTORY'?)" \
        in strangers
    assert len(strangers) == 4
    # Three misspellings of one of cacheport's words are still three warnings, each with its likely name.
    typos = plan(tmp_path, builtins, env={"CACHEPORT_MOUNT_ENABLED": "0", "CACHEPORT_MOUNT_HELPER_IMAGE": "x",
                                          "CACHEPORT_MOUNT_MAX_SIZE": "1"}).warnings
    assert "CACHEPORT_MOUNT_ENABLED is not a cacheport variable and is ignored (did you mean " \
           "'CACHEPORT_MOUNTS__ENABLED'?)" in typos
    assert not [w for w in typos if "CACHEPORT_MOUNT_*" in w]


def test_known_variables_are_not_warned_about(tmp_path: Path, builtins: Plugins) -> None:
    env = {"CACHEPORT_DOCKER": "docker",
           "CACHEPORT_STRICT_PLUGINS": "1", "CACHEPORT_LOAD_PLUGINS": "", "CACHEPORT_KEY": "arm64",
           "CACHEPORT_CACHE_FROM": "type=local,src=/x",
           "CACHEPORT_LOCAL__MODE": "min", "CACHEPORT_MIGRATION__PHASE": "dual-read"}
    found = plan(tmp_path, builtins, env=env)
    assert not [w for w in found.warnings if "not a cacheport variable" in w]


def test_the_test_harness_s_variables_are_not_cacheport_s(tmp_path: Path, builtins: Plugins) -> None:
    """cacheport knows nothing of its own test harness: its variables are warned about like any stranger's (the
    tests never hand them to cacheport: tests/e2e/harness.py's clean_environ)."""
    env = {"CACHEPORT_E2E_STATE": "/x", "CACHEPORT_PULP_STATE": "/var/tmp/p", "CACHEPORT_DOCKER": "docker"}
    found = plan(tmp_path, builtins, env=env)
    assert sorted(w.split()[0] for w in found.warnings if "not a cacheport variable" in w) == [
        "CACHEPORT_E2E_STATE", "CACHEPORT_PULP_STATE"]


def test_every_variable_the_repository_reads_is_known() -> None:
    """The list in cacheport.config is the one place: a new CACHEPORT_* variable in code, scripts, templates or
    docs that is not a setting must be added there, or users who set it would be told it is a typo."""
    from cacheport.config import GLOBAL_OPTIONS

    globals_ = {f"CACHEPORT_{o.key.upper().replace('-', '_')}" for o in GLOBAL_OPTIONS}
    word = re.compile(r"(?<![A-Za-z0-9_])CACHEPORT_[A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9_])")
    files = subprocess.run(["git", "ls-files", "src", "plugins", "scripts", "templates", "report", "examples",
                            ".ci", "tox.ini", "action.yml", "docs", "README.md", "tests/e2e"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    unknown = {}
    for name in files:
        path = ROOT / name
        if not path.is_file():
            continue
        for found in word.findall(path.read_text(encoding="utf-8", errors="replace")):
            if ("__" in found or found in globals_ or found in OTHER_VARIABLES or found.startswith(HARNESS_PREFIXES)
                    or found.endswith("_")):
                continue
            unknown.setdefault(found, name)
    assert not unknown, (f"add these to cacheport.config.OTHER_VARIABLES (or, the test harness's, under "
                         f"tests/e2e/harness.py's HARNESS_PREFIXES): {unknown}")


def test_an_environment_variable_beating_the_file_is_warned_about(tmp_path: Path, builtins: Plugins,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    toml = 'backend = "registry"\n[registry]\nref = "127.0.0.1:5000/app/cache"\nmode = "max"\n'
    found = plan(tmp_path, builtins, toml, {"CACHEPORT_BACKEND": "local", "CACHEPORT_REGISTRY__MODE": "min"})
    assert found.backend == "local"
    assert "CACHEPORT_BACKEND = 'local' overrides cacheport.toml backend = 'registry' (the environment beats the " \
           "config file); unset CACHEPORT_BACKEND to use the file's value" in found.warnings
    assert any(w.startswith("CACHEPORT_REGISTRY__MODE = 'min' overrides cacheport.toml [registry] mode = 'max'")
               for w in found.warnings)


def test_no_override_warning_when_they_agree_or_the_file_is_silent_or_a_flag_decides(tmp_path: Path,
                                                                                   builtins: Plugins) -> None:
    toml = 'backend = "local"\n'
    agree = plan(tmp_path, builtins, toml, {"CACHEPORT_BACKEND": "local", "CACHEPORT_KEY": "arm64"})
    flag = plan(tmp_path, builtins, toml, {"CACHEPORT_BACKEND": "registry"}, cli=[("backend", "local", "--backend")])
    assert not [w for w in (*agree.warnings, *flag.warnings) if "overrides" in w]


def test_an_override_of_a_secret_option_shows_no_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    from cacheport.config import env_overrides

    (tmp_path / "cacheport.toml").write_text('[acme]\ntoken = "file-secret"\n')
    config = load_config(tmp_path, {"CACHEPORT_ACME__TOKEN": "env-secret"})
    [line] = env_overrides(config, {"acme": frozenset({"token"})})
    assert "secret" not in line and line.startswith("CACHEPORT_ACME__TOKEN overrides cacheport.toml [acme] token ")


def test_set_with_a_typo_is_echoed_as_typed(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "cacheport", "args", "--backend", "registry", "--set", "reff=foo"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 2
    assert out.stderr.startswith("cacheport: error: --set reff: backend 'registry' has no option 'reff' "
                                 "(did you mean 'ref'?)")


def test_a_documented_plugin_backend_that_is_missing_says_what_to_install(builtins: Plugins) -> None:
    with pytest.raises(UnknownBackendError, match=r"unknown backend 'pulp' \(it comes from the cacheport-pulp "
                                                  r"plugin, which is not installed or not loaded"):
        builtins.backend("pulp")
    with pytest.raises(UnknownBackendError, match=r"unknown backend 'regstry' \(did you mean 'registry'\?\)"):
        builtins.backend("regstry")

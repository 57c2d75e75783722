from __future__ import annotations

from pathlib import Path

import pytest
from cacheport_builtins.registry import BACKEND as REGISTRY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacheport.config import find_config, interpolate, load_config, resolve_backend, resolve_globals
from cacheport.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_pyproject_table_is_found_from_a_subdirectory(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool.cacheport]\nbackend = "gitlab"\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert find_config(sub) == (tmp_path / "pyproject.toml", "tool.cacheport")


def test_pyproject_without_the_table_is_skipped_and_cacheport_toml_wins(tmp_path: Path) -> None:
    write(tmp_path / "cacheport.toml", 'backend = "registry"\n')
    inner = tmp_path / "pkg"
    inner.mkdir()
    write(inner / "pyproject.toml", "[project]\nname = 'x'\n")
    assert find_config(inner) == (tmp_path / "cacheport.toml", "")


def test_the_search_stops_at_the_top_of_the_git_checkout(tmp_path: Path) -> None:
    # a leftover file above the repository belongs to something else
    write(tmp_path / "pyproject.toml", '[tool.cacheport]\nbackend = "registy"\n')
    repo = tmp_path / "app"
    (repo / ".git").mkdir(parents=True)
    (repo / "src").mkdir()
    assert find_config(repo / "src") is None
    write(repo / "cacheport.toml", 'backend = "local"\n')
    assert find_config(repo / "src") == (repo / "cacheport.toml", "")
    assert find_config(tmp_path) == (tmp_path / "pyproject.toml", "tool.cacheport")  # outside any checkout: upward


def test_file_values_and_their_sources(tmp_path: Path) -> None:
    write(tmp_path / "cacheport.toml", 'backend = "registry"\nkey = "web"\n[registry]\nref = "r.example/app"\n')
    config = load_config(tmp_path, {})
    glob = resolve_globals(config)
    assert glob["backend"].value == "registry"
    assert "cacheport.toml" in glob["backend"].source.detail
    opts = resolve_backend(config, REGISTRY, selected=True)
    assert opts["ref"].value == "r.example/app"
    assert opts["ref"].source.detail.endswith("[registry] ref")
    assert opts["mode"].value == "max" and opts["mode"].source.level == "default"


levels = st.fixed_dictionaries(
    {},
    optional={
        "file": st.sampled_from(["min", "max"]),
        "env": st.sampled_from(["min", "max"]),
        "cli": st.sampled_from(["min", "max"]),
    },
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(levels)
def test_the_highest_level_wins(tmp_path: Path, given_levels: dict[str, str]) -> None:
    toml = '[registry]\nref = "r/app"\n' + (f'mode = "{given_levels["file"]}"\n' if "file" in given_levels else "")
    write(tmp_path / "cacheport.toml", toml)
    env = {"CACHEPORT_REGISTRY__MODE": given_levels["env"]} if "env" in given_levels else {}
    cli = [("mode", given_levels["cli"], "--set mode=")] if "cli" in given_levels else []
    mode = resolve_backend(load_config(tmp_path, env, cli=cli), REGISTRY, selected=True)["mode"]
    for level in ("cli", "env", "file"):
        if level in given_levels:
            assert (mode.value, mode.source.level) == (given_levels[level], level)
            break
    else:
        assert (mode.value, mode.source.level) == ("max", "default")


def test_env_values_are_typed(tmp_path: Path) -> None:
    env = {"CACHEPORT_REGISTRY__REF": "r/app", "CACHEPORT_REGISTRY__IGNORE_ERROR": "no",
           "CACHEPORT_REGISTRY__COMPRESSION_LEVEL": "3", "CACHEPORT_READ_ONLY": "true"}
    config = load_config(tmp_path, env)
    opts = resolve_backend(config, REGISTRY, selected=True)
    assert opts["ignore-error"].value is False
    assert opts["compression-level"].value == 3
    assert opts["ignore-error"].source.detail == "CACHEPORT_REGISTRY__IGNORE_ERROR"
    assert resolve_globals(config)["read-only"].value is True


def test_interpolation() -> None:
    env = {"CI_REGISTRY_IMAGE": "reg/g/app"}
    assert interpolate("${CI_REGISTRY_IMAGE}/cache", env, "x") == "reg/g/app/cache"
    assert interpolate("${NOPE:-fallback}/c", env, "x") == "fallback/c"
    assert interpolate("cost $$5 $HOME", env, "x") == "cost $5 $HOME"
    with pytest.raises(ConfigError, match="NOPE is not set"):
        interpolate("${NOPE}/cache", env, "cacheport.toml [registry] ref")


@pytest.mark.parametrize(
    "toml, env, message",
    [
        ('backnd = "x"\n', {}, r"cacheport.toml: unknown key 'backnd' \(did you mean 'backend'\?\)"),
        ('[registry]\nref = "r"\nmode = "maximum"\n', {}, r"cacheport.toml \[registry\] mode = 'maximum': allowed values are min, max"),
        ('[registry]\nref = "r"\nreff = "x"\n', {}, r"cacheport.toml \[registry\] reff: backend 'registry' has no option 'reff' \(did you mean 'ref'\?\)"),
        ('[registry]\nref = "r"\nignore-error = "yes"\n', {}, r"ignore-error = 'yes': expected true or false"),
        ('[registry]\nref = "${UNSET_VAR}/c"\n', {}, r"environment variable UNSET_VAR is not set"),
        ("[registry]\nref = [1]\n", {}, r"\[registry\] ref: expected a single value, not a list"),
        ("backend = \n", {}, r"cacheport.toml: not valid TOML"),
        ("", {"CACHEPORT_REGISTRY__REF": "r", "CACHEPORT_REGISTRY__COMPRESSION_LEVEL": "high"}, r"CACHEPORT_REGISTRY__COMPRESSION_LEVEL = 'high': expected a whole number"),
        ("", {}, r"backend 'registry' needs option 'ref'.*CACHEPORT_REGISTRY__REF"),
        ("", {"CACHEPORT_REGISTRY__REF": "r", "CACHEPORT_REGISTRY__MDOE": "min"},
         r"CACHEPORT_REGISTRY__MDOE: backend 'registry' has no option 'MDOE' \(did you mean 'mode'\?\)"),
    ],
)
def test_bad_input_names_file_key_value_and_what_is_allowed(tmp_path: Path, toml: str, env: dict[str, str], message: str) -> None:
    write(tmp_path / "cacheport.toml", toml)
    with pytest.raises(ConfigError, match=message):
        config = load_config(tmp_path, env)
        resolve_backend(config, REGISTRY, selected=True)


def test_set_without_backend_applies_only_to_the_selected_backend(tmp_path: Path) -> None:
    config = load_config(tmp_path, {}, cli=[("ref", "r/x", "--set ref="), ("registry.mode", "min", "--set registry.mode=")])
    assert resolve_backend(config, REGISTRY, selected=True)["ref"].value == "r/x"
    with pytest.raises(ConfigError, match="needs option 'ref'"):
        resolve_backend(config, REGISTRY, selected=False)


@pytest.mark.parametrize("name, text, table", [
    (None, "", r"\[registry\] in cacheport.toml"),  # no config yet: where `cacheport init` writes one
    ("pyproject.toml", "[tool.cacheport]\n", r"\[tool.cacheport.registry\] in .*pyproject.toml"),
    ("cacheport.toml", "", r"\[registry\] in .*cacheport.toml"),
])
def test_a_missing_option_names_the_table_of_the_file_it_belongs_in(name: str | None, text: str, table: str,
                                                                     tmp_path: Path) -> None:
    if name:
        write(tmp_path / name, text)
    config = load_config(tmp_path, {})
    with pytest.raises(ConfigError, match=rf"needs option 'ref': set it in {table}, CACHEPORT_REGISTRY__REF,"):
        resolve_backend(config, REGISTRY, selected=True)


def test_explicit_config_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path, {"CACHEPORT_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize(
    "toml, env, message",
    [
        ("history-keep = -1\n", {}, r"cacheport.toml history-keep = -1: records kept per branch, 1 or more"),
        ("history-keep = 0\n", {}, r"cacheport.toml history-keep = 0: records kept per branch, 1 or more"),
        ("", {"CACHEPORT_HISTORY_KEEP": "-5"}, r"^CACHEPORT_HISTORY_KEEP = -5: records kept per branch, 1 or more"),
        ("history-dir = 5\n", {}, r"cacheport.toml history-dir = 5: expected a directory, as a string"),
        ("history-dir = true\n", {}, r"cacheport.toml history-dir = true: expected a directory, as a string"),
        # the file's spelling (true, not Python's True), and the values allowed
        ("exports = true\n", {}, r"cacheport.toml exports = true: expected one of 'auto', 'when-changed', 'always'$"),
    ],
)
def test_bad_global_values_are_one_line_naming_key_value_and_what_is_allowed(
        tmp_path: Path, toml: str, env: dict[str, str], message: str) -> None:
    write(tmp_path / "cacheport.toml", toml)
    with pytest.raises(ConfigError, match=message):
        resolve_globals(load_config(tmp_path, env))


def test_history_keep_of_one_and_a_history_dir_from_a_variable_are_taken(tmp_path: Path) -> None:
    write(tmp_path / "cacheport.toml", "history-keep = 1\n")
    resolved = resolve_globals(load_config(tmp_path, {"CACHEPORT_HISTORY_DIR": "5"}))
    assert resolved["history-keep"].value == 1
    assert resolved["history-dir"].value == "5"  # a variable is always text: a directory named 5 is meant


@pytest.mark.parametrize(
    "name, toml, env, message",
    [
        ("cacheport.toml", '[registry]\nref = "r"\nexports = "always"\n', {},
         r"cacheport.toml \[registry\] exports: backend 'registry' has no option 'exports' \(exports is a top-level "
         r"key: put it above \[registry\]\); its options are: ref, "),
        ("pyproject.toml", '[tool.cacheport.registry]\nref = "r"\nhistory-keep = 3\n', {},
         r"\(history-keep is a top-level key: put it above \[tool.cacheport.registry\]\)"),
        ("cacheport.toml", '[registry]\nref = "r"\n', {"CACHEPORT_REGISTRY__EXPORTS": "always"},
         r"\(exports is a top-level key: CACHEPORT_EXPORTS\)"),
    ],
)
def test_a_top_level_key_written_under_a_backend_table_says_where_it_goes(
        tmp_path: Path, name: str, toml: str, env: dict[str, str], message: str) -> None:
    write(tmp_path / name, toml)
    with pytest.raises(ConfigError, match=message) as caught:
        resolve_backend(load_config(tmp_path, env), REGISTRY, selected=True)
    assert "did you mean" not in str(caught.value)

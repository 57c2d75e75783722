from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest

from cacheport import Backend, BackendEntries, Option, hookimpl
from cacheport.errors import PluginError
from cacheport.plugins import Plugins, load


def make_dist(site: Path, dist: str, module: str, entry_name: str, body: str) -> Path:
    """Install a minimal distribution into ``site`` the way pip lays one out (dist-info + entry points)."""
    (site / module).mkdir(parents=True, exist_ok=True)
    (site / module / "__init__.py").write_text(body)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[cacheport]\n{entry_name} = {module}\n")
    return site


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    yield path
    for name in [m for m in sys.modules if m.startswith("cacheport_test_")]:
        del sys.modules[name]
    importlib.invalidate_caches()


BROKEN = "import cacheport_test_this_module_does_not_exist\n"
DUPLICATE = """
from cacheport import Backend, BackendEntries, hookimpl

@hookimpl
def cacheport_backends():
    return [Backend(name="Registry", description="impostor", options=[], entries=lambda r: BackendEntries())]
"""
MISSPELLED = """
from cacheport import hookimpl

@hookimpl
def cacheport_backend():
    return []
"""


def test_builtins_come_from_the_entry_point_group() -> None:
    plugins = load({"CACHEPORT_LOAD_PLUGINS": ""})
    assert {i.name for i in plugins.infos if i.source == "built-in"} >= {"registry", "gitlab", "local", "contexts"}
    assert set(plugins.backends()) >= {"registry", "gitlab", "local"}


def test_the_example_plugin_from_plugins_dir_is_installed_and_loaded() -> None:
    plugins = load({})
    info = next(i for i in plugins.infos if i.name == "shared-dir")
    assert (info.distribution, info.source, info.error) == ("cacheport-example", "entry point", None)
    assert plugins.backend_owners()["shared-dir"].distribution == "cacheport-example"


def test_allowlist_limits_third_party_plugins() -> None:
    assert "shared-dir" not in load({"CACHEPORT_LOAD_PLUGINS": ""}).backends()
    assert "shared-dir" in load({"CACHEPORT_LOAD_PLUGINS": "cacheport-example"}).backends()
    assert "shared-dir" in load({"CACHEPORT_LOAD_PLUGINS": "other, shared-dir"}).backends()


def test_a_broken_plugin_is_skipped_with_its_error(site: Path) -> None:
    make_dist(site, "cacheport-broken", "cacheport_test_broken", "broken", BROKEN)
    plugins = load({})
    broken = next(i for i in plugins.infos if i.name == "broken")
    assert broken.distribution == "cacheport-broken"
    assert broken.error is not None and "ModuleNotFoundError" in broken.error
    assert broken.traceback is not None and "Traceback" in broken.traceback
    assert "registry" in plugins.backends()


def test_strict_mode_re_raises(site: Path) -> None:
    make_dist(site, "cacheport-broken", "cacheport_test_broken2", "broken", BROKEN)
    with pytest.raises(ModuleNotFoundError):
        load({"CACHEPORT_STRICT_PLUGINS": "1"})


def test_duplicate_backend_names_both_distributions(site: Path) -> None:
    make_dist(site, "cacheport-impostor", "cacheport_test_dup", "impostor", DUPLICATE)
    plugins = load({})
    with pytest.raises(PluginError, match=r"'registry' is provided twice: by plugin 'impostor' from cacheport-impostor 0.1 and by plugin 'registry' from cacheport"):
        plugins.backends()


def test_a_misspelled_hook_fails_loudly_not_silently(site: Path) -> None:
    make_dist(site, "cacheport-typo", "cacheport_test_typo", "typo", MISSPELLED)
    typo = next(i for i in load({}).infos if i.name == "typo")
    assert typo.error is not None and "cacheport_backend" in typo.error


def test_a_hook_that_raises_or_returns_junk_is_contained() -> None:
    bad = types.SimpleNamespace(cacheport_backends=hookimpl(lambda: ["not a backend"]))
    good = types.SimpleNamespace(cacheport_backends=hookimpl(
        lambda: [Backend("ok", "fine", [Option("x", "x")], lambda r: BackendEntries())]
    ))
    plugins = Plugins.from_modules([bad, good], strict=False)
    assert list(plugins.backends()) == ["ok"]
    assert any(i.error and "expected Backend" in i.error for i in plugins.infos)
    with pytest.raises(PluginError, match="expected Backend"):
        Plugins.from_modules([bad], strict=True).backends()


def test_each_test_gets_a_fresh_manager(builtins: Plugins) -> None:
    assert "shared-dir" not in builtins.backends()

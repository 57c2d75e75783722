from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import pytest

from cacheport import Backend, BackendEntries, Option, hookimpl
from cacheport.errors import PluginError
from cacheport.plugins import Plugins, load
from tests.fakes.docker import stand_in_docker
from tests.fakes.plugins import BROKEN, make_dist


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    yield path
    for name in [m for m in sys.modules if m.startswith("cacheport_test_")]:
        del sys.modules[name]
    importlib.invalidate_caches()


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


# A registry-type backend written against the 0.1 docs: entries only, no store, no cacheport_api.
OLD_REGISTRY = """
from cacheport import Backend, BackendEntries, CacheEntry, Option, hookimpl

@hookimpl
def cacheport_backends():
    def entries(request):
        ref = request.options["ref"]
        return BackendEntries(imports=[CacheEntry("registry", {"ref": f"{ref}:main"})],
                              exports=[CacheEntry("registry", {"ref": f"{ref}:main", "mode": "max"})])
    return [Backend(name="oldreg", description="0.1-style", options=[Option("ref", "where", required=True)],
                    entries=entries)]
"""


def test_a_0_1_registry_backend_without_a_store_builds_and_is_told_how_to_add_one(tmp_path: Path) -> None:
    import json
    import os
    import subprocess

    from cacheport import API_VERSION

    site = make_dist(tmp_path / "site", "cacheport-test-oldreg", "cacheport_test_oldreg", "oldreg", OLD_REGISTRY)
    log = tmp_path / "argv"
    docker = stand_in_docker(tmp_path, log)
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(site), "CACHEPORT_DOCKER": str(docker),
           "CACHEPORT_BACKEND": "oldreg", "CACHEPORT_OLDREG__REF": "127.0.0.1:5999/app"}

    def cacheport(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cacheport", *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=60)

    args = cacheport("args")
    assert args.returncode == 0, args.stderr
    assert "--cache-from=type=registry,ref=127.0.0.1:5999/app:main" in args.stdout
    assert "oldreg" in cacheport("explain").stdout
    built = cacheport("build", ".", "--", "--builder", "ci")
    assert built.returncode == 0, built.stderr
    assert "type=registry,ref=127.0.0.1:5999/app:main,mode=max" in " ".join(json.loads(log.read_text()))
    for command in (["status"], ["seed", "--from", "local", "--branch", "main"]):
        out = cacheport(*command)
        assert out.returncode == 2, out.stderr
        (line,) = [line for line in out.stderr.splitlines() if line.strip()]
        assert "backend 'oldreg'" in line and "cacheport.kit.registry_store" in line
        assert "cacheport.kit.registry_backend" in line
    listing = {r["name"]: r for r in json.loads(cacheport("plugins", "--format", "json").stdout)}
    assert listing["oldreg"]["api"] is None and listing["registry"]["api"] == API_VERSION

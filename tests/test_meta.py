"""Meta-tests: the plugin API and the backends are documented, the docs can't drift from the code, and the tests
stay independent of one another."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cacheport import hookspecs
from cacheport.config import GLOBAL_OPTIONS, env_name
from cacheport.plugins import load

ROOT = Path(__file__).resolve().parent.parent
HOOKS = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("cacheport_")]


def test_there_are_hooks() -> None:
    assert {f.__name__ for f in HOOKS} >= {"cacheport_backends", "cacheport_context_providers"}


@pytest.mark.parametrize("hook", HOOKS, ids=lambda f: f.__name__)
def test_every_hook_is_typed_documented_and_has_a_working_example(hook) -> None:  # type: ignore[no-untyped-def]
    doc = inspect.getdoc(hook) or ""
    assert "Returns:" in doc and "Example::" in doc
    assert inspect.signature(hook).return_annotation != inspect.Signature.empty
    example = inspect.cleandoc(doc.split("Example::", 1)[1])
    namespace: dict[str, object] = {}
    exec(compile(example, f"<{hook.__name__} example>", "exec"), namespace)
    assert callable(namespace[hook.__name__])
    assert list(namespace[hook.__name__]())  # type: ignore[operator]


def test_every_builtin_backend_and_option_is_in_the_backend_docs() -> None:
    text = (ROOT / "docs" / "backends.md").read_text()
    for backend in load({"CACHEPORT_LOAD_PLUGINS": ""}).backends().values():
        assert f"### `{backend.name}`" in text
        for option in backend.options:
            assert f"| `{option.name}` |" in text and env_name(backend.name, option.name) in text


def test_generated_backend_docs_are_current() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-backend-docs"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_generated_trust_docs_are_current() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-trust-docs"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_every_trust_rule_is_in_the_trust_docs() -> None:
    from cacheport.trust import RULES

    text = (ROOT / "docs" / "trust.md").read_text()
    for rule in RULES:
        assert f"| `{rule.id}` |" in text


def test_every_global_key_is_in_the_configuration_docs() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for option in GLOBAL_OPTIONS:
        assert f"`{option.name}`" in text
    for name in ("CACHEPORT_BACKEND", "CACHEPORT_KEY", "CACHEPORT_READ_ONLY", "CACHEPORT_LOAD_PLUGINS",
                 "CACHEPORT_STRICT_PLUGINS", "CACHEPORT_CONFIG"):
        assert name in text


# Every backend is done only when a real build went through it (s3 and azblob on a remote BuildKit).
E2E_PROOF = {
    "registry": "tests/e2e/test_builds.py::test_registry_backend",
    "gitlab": "tests/e2e/test_builds.py::test_gitlab_backend_with_auth",
    "local": "tests/e2e/test_builds.py::test_local_backend_rotates",
    "gha": "tests/e2e/test_more_backends.py::test_gha_backend",
    "inline": "tests/e2e/test_more_backends.py::test_inline_backend_through_a_pushed_image",
    "pulp": "tests/e2e/test_pulp.py::test_pulp_cold_then_warm",
    "s3": "tests/e2e/test_builders.py::test_s3_backend_on_remote",
    "azblob": "tests/e2e/test_builders.py::test_azblob_backend_on_remote",
    "shared-dir": "tests/e2e/test_more_backends.py::test_example_plugin_backend",
    "acme": "tests/e2e/test_stores.py::test_the_example_registry_plugin_gets_seed_and_status_from_the_kit",
}
# A backend no real build can go through here, with the reason docs/backends.md gives, and what proves it instead.
NO_E2E: dict[str, str] = {}
DOCTOR_PROOF: dict[str, str] = {}


@pytest.mark.parametrize("name", sorted(load({}).backends()))
def test_every_backend_has_an_end_to_end_test_or_a_documented_reason(name: str) -> None:
    import ast

    if name in NO_E2E:
        assert NO_E2E[name] in (ROOT / "docs" / "backends.md").read_text()
    else:
        assert name in E2E_PROOF, f"backend {name!r} has no end-to-end test"
    path, _, func = (DOCTOR_PROOF if name in NO_E2E else E2E_PROOF)[name].partition("::")
    tree = ast.parse((ROOT / path).read_text())
    assert func in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}, f"{path}::{func}"


@pytest.mark.parametrize(("mode", "collected"), [("require", True), ("", False)])
def test_tests_on_our_own_buildkit_are_never_left_out_when_e2e_is_required(tmp_path: Path, mode: str,
                                                                           collected: bool) -> None:
    """s3 and azblob have their only end-to-end tests on the remote builder: under CACHEPORT_E2E=require (CI) a
    harness without our BuildKit must fail them, not leave them out of the run."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEPORT_")}
    env.update(CACHEPORT_E2E=mode, CACHEPORT_E2E_STATE=str(tmp_path),
               CACHEPORT_E2E_BUILDKIT_MISSING="no BuildKit at /nowhere")
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "tests/e2e/test_builders.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    listed = [line for line in done.stdout.splitlines() if "test_builders.py::" in line]
    assert bool(listed) == collected, done.stdout + done.stderr
    assert ("deselected" in done.stdout) != collected, done.stdout


def test_end_to_end_tests_skip_only_through_unavailable() -> None:
    """``unavailable`` skips locally and fails under CACHEPORT_E2E=require; a bare skip would pass CI unseen."""
    bare = [f"{path.name}:{n}" for path in sorted((ROOT / "tests" / "e2e").glob("*.py")) if path.name != "conftest.py"
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if re.search(r"pytest\.(skip|importorskip)\(|mark\.skip(if)?\b", line)]
    assert bare == [], "use tests/e2e/conftest.py's unavailable() instead"


def imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports (or may import: ``from a import b`` counts ``a`` and ``a.b``), as an absolute
    dotted name; relative imports are resolved against the package ``path`` is in."""
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join([*package[:len(package) - node.level + 1], *([node.module] if node.module else [])]) \
                if node.level else node.module or ""
            names += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return names


def test_no_test_module_imports_another() -> None:
    """Tests share code through tests/fakes/, tests/e2e/harness.py and conftest fixtures, never by importing a
    test module: that ties one file's helpers to another file's tests, and a move or rename breaks both."""
    modules = sorted((ROOT / "tests").rglob("test_*.py"))
    assert len(modules) > 40
    crossing = [f"{path.relative_to(ROOT)} imports {name}" for path in modules for name in imported_modules(path)
                if name.split(".")[0] == "tests" and any(part.startswith("test_") for part in name.split("."))]
    assert crossing == []

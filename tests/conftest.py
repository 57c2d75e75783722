"""Shared fixtures: a fresh plugin manager per test, so installed plugins never leak in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cacheport_builtins import azblob, contexts, gha, gitlab, inline, local, registry, s3
from hypothesis import settings

from cacheport.plugins import Plugins
from tests import netguard
from tests.fakes.registry import FakeRegistry

if TYPE_CHECKING:
    from tests.fakes.sigstore import FakeSigstore

# No test asserts a time, and Hypothesis' deadline is one: on a loaded machine it fails tests that are right.
settings.register_profile("cacheport", deadline=None)
settings.load_profile("cacheport")

BUILTINS = (registry, gitlab, local, gha, inline, s3, azblob, contexts)


NETGUARD_DIR = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Tests never reach the network: this process and its Python subprocesses may talk to loopback only."""
    import tempfile

    netguard.install()
    folder = Path(tempfile.mkdtemp(prefix="cacheport-netguard-"))
    config.stash[NETGUARD_DIR] = folder
    log = folder / "violations"
    log.touch()
    for name, value in netguard.subprocess_env(log).items():
        if name in ("PYTHONPATH", "NETGUARD_LOG"):
            os.environ[name] = value


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the violations log's folder. A Python subprocess that outlives the run (a server a test left
    behind) may still try to write it: netguard then refuses the connection all the same, without the log."""
    import shutil

    folder = config.stash.get(NETGUARD_DIR, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    """Fail a test that tried a non-loopback address, in this process or in a Python subprocess."""
    log = Path(os.environ["NETGUARD_LOG"])
    netguard.violations.clear()
    log.write_text("")
    yield
    tried = netguard.violations + log.read_text().splitlines()
    if tried:
        pytest.fail(f"the test tried to reach the network: {'; '.join(dict.fromkeys(tried))}", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """With CACHEPORT_E2E=require (CI), a skipped test is a failed test (an expected failure stays one)."""
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and not hasattr(report, "wasxfail")
            and os.environ.get("CACHEPORT_E2E", "").strip().lower() == "require"):
        report.outcome = "failed"
        report.longrepr = f"skipped, but CACHEPORT_E2E=require: {report.longrepr}"


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A module skipped at collection (importorskip) is a failure under CACHEPORT_E2E=require too."""
    if report.skipped and os.environ.get("CACHEPORT_E2E", "").strip().lower() == "require":
        report.outcome = "failed"


@pytest.fixture
def builtins() -> Plugins:
    """The built-in plugins only, registered into a fresh manager."""
    return Plugins.from_modules(BUILTINS)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment with no CI and no cacheport variables, and a working directory outside any project."""
    for name in list(os.environ):
        if name.startswith(("CACHEPORT_", "CI_", "GITLAB_", "GITHUB_", "ACTIONS_")) or name in ("CI", "XDG_CACHE_HOME"):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    yield dict(os.environ)


GITLAB_ENV = {
    "GITLAB_CI": "true",
    "CI_PROJECT_PATH": "group/app",
    "CI_REGISTRY_IMAGE": "registry.example.com/group/app",
    "CI_COMMIT_BRANCH": "feature/Login-Form",
    "CI_COMMIT_REF_NAME": "feature/Login-Form",
    "CI_COMMIT_REF_SLUG": "feature-login-form",
    "CI_DEFAULT_BRANCH": "main",
    "CI_JOB_NAME": "build",
}


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    """A well-behaved fake registry on 127.0.0.1 (``tests/fakes/registry.py``)."""
    with FakeRegistry() as registry:
        yield registry


@pytest.fixture
def sigstore() -> Iterator[FakeSigstore]:
    """A stand-in OIDC issuer and Fulcio-like CA on 127.0.0.1 (``tests/fakes/sigstore.py``)."""
    from tests.fakes.sigstore import FakeSigstore  # cryptography: only for the tests that sign

    with FakeSigstore() as server:
        yield server

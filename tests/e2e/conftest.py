from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .harness import Harness, Pulp, read_env, read_pulp_env

E2E_MODE = os.environ.get("CACHEPORT_E2E", "").strip().lower()


@pytest.fixture(scope="session")
def harness() -> Iterator[Harness]:
    """The running e2e servers; skip (or, with CACHEPORT_E2E=require, fail) when they are not there."""
    env, why = read_env()
    if not why:
        h = Harness(env)
        probe = h.docker("info", "--format", "{{.ServerVersion}}", check=False)
        if probe.returncode != 0:
            why = f"dockerd at {env['CACHEPORT_E2E_DOCKER_HOST']} does not answer: {probe.stderr.strip()}"
    if why:
        if E2E_MODE == "require":
            pytest.fail(f"CACHEPORT_E2E=require, but {why}", pytrace=False)
        pytest.skip(why)
    yield h


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def pulp() -> Pulp:
    """The running Pulp (scripts/pulp-up); skip (or, with CACHEPORT_E2E=require, fail) when it is not there."""
    found, why = read_pulp_env()
    if found is None:
        if E2E_MODE == "require":
            pytest.fail(f"CACHEPORT_E2E=require, but {why}", pytrace=False)
        pytest.skip(why)
    return found

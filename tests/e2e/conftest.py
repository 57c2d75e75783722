from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from .harness import Harness, ObjectStores, Pulp, read_env, read_objstore_env, read_pulp_env

E2E_MODE = os.environ.get("CACHEPORT_E2E", "").strip().lower()


def unavailable(why: str) -> NoReturn:
    """Skip, saying why; with CACHEPORT_E2E=require (CI) a missing server is a failure instead."""
    if E2E_MODE == "require":
        pytest.fail(f"CACHEPORT_E2E=require, but {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def harness() -> Iterator[Harness]:
    """The running e2e servers; skip (or, with CACHEPORT_E2E=require, fail) when they are not there."""
    env, why = read_env()
    if not why:
        h = Harness(env)
        probe = h.docker("version", "--format", "{{.Server.Version}}", check=False)  # info exits 0 without a daemon
        if probe.returncode != 0:
            why = f"dockerd at {env['CACHEPORT_E2E_DOCKER_HOST']} does not answer: {probe.stderr.strip()}"
    if why:
        unavailable(why)
    yield h


@pytest.fixture(scope="session")
def legacy(harness: Harness) -> Harness:
    """The harness pointed at the dockerd *without* the containerd image store; skip (or fail) when absent."""
    host = harness.env.get("CACHEPORT_E2E_LEGACY_DOCKER_HOST", "")
    h = harness.with_docker_host(host)
    why = "" if host else "no CACHEPORT_E2E_LEGACY_DOCKER_HOST (run scripts/e2e-up as root)"
    if not why:
        # `docker info --format` exits 0 even when no daemon answers; `docker version` does not.
        probe = h.docker("version", "--format", "{{.Server.Version}}", check=False)
        status = h.docker("info", "--format", "{{json .DriverStatus}}", check=False).stdout
        if probe.returncode != 0:
            why = f"the legacy dockerd at {host} does not answer: {probe.stderr.strip()}"
        elif "containerd.snapshotter" in status:
            why = f"the dockerd at {host} uses the containerd image store, so it proves nothing about the legacy one"
    if why:
        unavailable(why)
    return h


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def pulp() -> Pulp:
    """The running Pulp (scripts/pulp-up); skip (or, with CACHEPORT_E2E=require, fail) when it is not there."""
    found, why = read_pulp_env()
    if found is None:
        unavailable(why)
    return found


@pytest.fixture(scope="session")
def objstores() -> ObjectStores:
    """moto's S3 and Azurite (scripts/objstore-up); skip (or, with CACHEPORT_E2E=require, fail) without them."""
    found, why = read_objstore_env()
    if found is None:
        unavailable(why)
    return found

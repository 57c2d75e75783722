from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from .harness import (
    BUILDKIT_KEYS,
    BUILDKIT_MISSING,
    GENERATION_KEYS,
    Harness,
    ObjectStores,
    Pulp,
    buildkit_not_provisioned,
    read_env,
    read_objstore_env,
    read_pulp_env,
)

E2E_MODE = os.environ.get("CACHEPORT_E2E", "").strip().lower()

# Which test runs on which BuildKit generation, decided here and nowhere else (docs/development.md):
# the whole suite runs on the current generation, what users run today; the essentials also run on the old
# one, which many runners still have. CACHEPORT_E2E_GENERATIONS=all runs every test on both. A test that
# compares the generations takes `every_generation` instead of `harness`. test_builders.py builds on our own
# BuildKit v0.32.2 (docker-container and remote builders) whichever generation's buildx drives it, so only one of
# its tests also runs on the old buildx (0.13, whose `buildx create` flags differ).
FULL_SUITE = "current"
ESSENTIALS = {
    "old": (
        "test_builders.py::test_registry_backend_on_docker_container",
        "test_builds.py::test_registry_backend",
        "test_builds.py::test_gitlab_backend_with_auth",
        "test_builds.py::test_local_backend_rotates",
        "test_builds.py::test_new_branch_is_warm_from_the_default_branch_and_exports_to_its_own_tag",
        "test_builds.py::test_registry_down_during_the_build_still_builds",
        "test_more_backends.py::test_gha_backend",
        "test_pulp.py::test_pulp_cold_then_warm",
        "test_mounts.py::test_a_restored_mount_saves_the_downloads_on_a_fresh_engine_builder",
    ),
}


def generations_for(nodeid: str) -> list[str]:
    """The generations a test (``path::name``, no parameters) runs on, per the table above."""
    if os.environ.get("CACHEPORT_E2E_GENERATIONS", "").strip().lower() == "all":
        return list(GENERATION_KEYS)
    test = nodeid.rpartition("/")[2].partition("[")[0]
    return [FULL_SUITE, *(name for name, tests in ESSENTIALS.items() if test in tests and name != FULL_SUITE)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "generation" in metafunc.fixturenames:
        metafunc.parametrize("generation", generations_for(metafunc.definition.nodeid), indirect=True,
                             scope="session")


def unavailable(why: str) -> NoReturn:
    """Skip, saying why; with CACHEPORT_E2E=require (CI) a missing server is a failure instead."""
    if E2E_MODE == "require":
        pytest.fail(f"CACHEPORT_E2E=require, but {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def servers() -> Iterator[Harness]:
    """The running e2e servers with the old generation's engine; skip (or, with CACHEPORT_E2E=require, fail)
    when they are not there. Tests take ``harness``, which is on the generation the table above gives."""
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
def generation(request: pytest.FixtureRequest) -> str:
    """The BuildKit generation (a key of harness.GENERATION_KEYS) this test runs on."""
    return str(request.param)


def engine(servers: Harness, generation: str) -> Harness:
    """The servers, building on the ``generation`` engine; skip (or fail) when that engine is not up."""
    try:
        h = servers.on(generation)
    except LookupError as exc:
        unavailable(f"the {generation} BuildKit generation is not provisioned: {exc}")
    probe = h.docker("version", "--format", "{{.Server.Version}}", check=False)
    if probe.returncode != 0:
        unavailable(f"the {generation} generation's dockerd at {h.env['CACHEPORT_E2E_DOCKER_HOST']} does not "
                    f"answer: {probe.stderr.strip()}")
    return h


@pytest.fixture(scope="session")
def harness(servers: Harness, generation: str) -> Harness:
    """The servers, building on the engine of the generation the table above gives this test."""
    return engine(servers, generation)


@pytest.fixture(scope="session")
def default_harness(servers: Harness) -> Harness:
    """The servers on the generation the whole suite runs on, for tests outside this directory (the docs)."""
    return engine(servers, FULL_SUITE)


@pytest.fixture(scope="session")
def every_generation(servers: Harness) -> dict[str, Harness]:
    """The servers on each BuildKit generation's engine, by generation name."""
    return {name: engine(servers, name) for name in GENERATION_KEYS}


@pytest.fixture(scope="session")
def legacy(servers: Harness) -> Harness:
    """The old generation's client pointed at the dockerd *without* the containerd image store; skip (or fail)
    when absent."""
    host = servers.env.get("CACHEPORT_E2E_LEGACY_DOCKER_HOST", "")
    h = servers.with_docker_host(host)
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


NOT_PROVISIONED = pytest.StashKey[str]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
    # Without ../shared/buildkit (a clone outside the project) e2e-up provisions no BuildKit of its own and says
    # why: its tests are not run, and the summary repeats the reason; under CACHEPORT_E2E=require they fail.
    env, _ = read_env()
    why = buildkit_not_provisioned(env, E2E_MODE)
    if why:
        dropped = [item for item in items if "buildkit" in getattr(item, "fixturenames", ())]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if item not in dropped]
            config.stash[NOT_PROVISIONED] = f"{len(dropped)} tests on docker-container/remote builders not run: {why}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if NOT_PROVISIONED in config.stash:
        terminalreporter.write_line(config.stash[NOT_PROVISIONED], yellow=True)


@pytest.fixture(scope="session")
def buildkit(harness: Harness) -> Harness:
    """The servers with our own BuildKit (``harness.builder(driver)`` makes a docker-container or remote builder of
    it); skip (or fail) when scripts/e2e-up did not provision it. Where it could not (no ../shared/buildkit), these
    tests are not collected at all: see pytest_collection_modifyitems."""
    missing = [k for k in BUILDKIT_KEYS if not harness.env.get(k)]
    if missing:
        unavailable(harness.env.get(BUILDKIT_MISSING) or
                    f"no BuildKit of our own (no {', '.join(missing)}; run scripts/e2e-up as root)")
    return harness


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

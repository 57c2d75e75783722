from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import NoReturn

import pytest

from .harness import (
    BUILDKIT_KEYS,
    BUILDKIT_MISSING,
    GENERATION_KEYS,
    PLAN,
    Harness,
    ObjectStores,
    Pulp,
    buildkit_not_provisioned,
    read_env,
    read_objstore_env,
    read_pulp_env,
)

E2E_MODE = os.environ.get("CACHEPORT_E2E", "").strip().lower()

# What runs where, decided here and nowhere else (docs/development.md, "What runs where"). An entry is a file
# (`test_x.py`: every test in it) or one test (`test_x.py::test_name`, without parameters).
#
# 1. Generations. The whole suite runs on the current generation, what users run today; the essentials also run on
# the old one, which many runners still have. CACHEPORT_E2E_GENERATIONS=all runs every test on both. A test that
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
# 2. History records. The harness's builds and commands run with CACHEPORT_HISTORY=off (writing a record costs about
# 6 s on Pulp under load, 0.1 s on distribution), except in these tests, whose subject is a record, the trend a
# build or a report shows, a signed record, or the exports rule that reads the branch's records. Records stay proven on distribution, Pulp and a local directory
# (test_history.py), signed on both registries (test_signed.py), and under gitlab-ci-local and act. The docs'
# runner (test_docs_run.py) runs the docs' commands in an environment of its own, as a reader would: history on.
HISTORY = (
    "test_history.py",
    "test_exports.py",
    "test_signed.py::test_a_record_pushed_by_an_attacker_is_left_out_of_the_history",
    "test_signed.py::test_a_record_pushed_by_an_attacker_is_left_out_of_the_history_on_pulp",
    "test_github_action.py",
    "test_gitlab_pipeline.py",
)

# 3. Once, not again on another server. Each test here repeats on Pulp a scenario whose logic another test proves on
# a registry; what Pulp itself does in it is proven by the tests its entry names. They are not collected (the summary
# lists them); CACHEPORT_E2E_PLAN=all runs them too, and every test on both generations.
ELSEWHERE = {
    "test_signed.py::test_signed_caches_on_pulp": (
        "the attack, the refusal, the pinned digest and the replay: test_signed_caches_on_a_token_auth_registry; "
        "signing into Pulp, verifying from it, importing by digest and pruning stale signatures there: "
        "test_seed_carries_signatures_to_pulp_and_prune_removes_the_stale_ones and "
        "test_seed_carries_a_mounts_signature_to_pulp_where_a_protected_build_restores_them"),
    "test_signed_keyless.py::test_keyless_signed_caches_on_pulp": (
        "the keyless identity rule, the refusal and the missing token: "
        "test_keyless_signed_caches_on_a_token_auth_registry; a signature stored in Pulp and verified from it (the "
        "same artifact, a key pair's envelope in place of a certificate's): "
        "test_seed_carries_signatures_to_pulp_and_prune_removes_the_stale_ones"),
}
WHOLE_PLAN = os.environ.get("CACHEPORT_E2E_PLAN", "").strip().lower() == "all"


def entry(nodeid: str, table: Iterable[str]) -> str | None:
    """The entry of one of the tables above that names a test (a pytest node id), if any."""
    test = nodeid.rpartition("/")[2].partition("[")[0]
    return next((e for e in table if e in (test, test.partition("::")[0])), None)


def listed(nodeid: str, table: Iterable[str]) -> bool:
    return entry(nodeid, table) is not None


def generations_for(nodeid: str) -> list[str]:
    """The generations a test runs on, per the table above."""
    if WHOLE_PLAN or os.environ.get("CACHEPORT_E2E_GENERATIONS", "").strip().lower() == "all":
        return list(GENERATION_KEYS)
    return [FULL_SUITE, *(name for name, tests in ESSENTIALS.items() if listed(nodeid, tests) and name != FULL_SUITE)]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """History records on or off for this test's builds and commands, per HISTORY above; set before any fixture
    (a module's fixture that builds does so for the test that first needs it)."""
    if "/e2e/" in str(item.fspath):
        PLAN.history = listed(item.nodeid, HISTORY)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    PLAN.history = True


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
RUN_ELSEWHERE = pytest.StashKey[list[str]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
    if not WHOLE_PLAN:  # ELSEWHERE above: said in the summary, never dropped silently
        elsewhere = [item for item in items if "/e2e/" in str(item.fspath) and listed(item.nodeid, ELSEWHERE)]
        if elsewhere:
            config.hook.pytest_deselected(items=elsewhere)
            items[:] = [item for item in items if item not in elsewhere]
            config.stash[RUN_ELSEWHERE] = [item.nodeid for item in elsewhere]
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
    for nodeid in config.stash.get(RUN_ELSEWHERE, []):
        terminalreporter.write_line(f"{nodeid} not run (tests/e2e/conftest.py's ELSEWHERE; CACHEPORT_E2E_PLAN=all "
                                    f"runs it), proven by {ELSEWHERE[entry(nodeid, ELSEWHERE) or '']}", yellow=True)
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

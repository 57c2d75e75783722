"""`cacheport doctor`'s machine checks, from what the builder reports."""

from __future__ import annotations

from cacheport_builtins import gha

from cacheport.context import Context
from cacheport.entry import CacheEntry
from cacheport.ops.checks import builder_checks
from cacheport.ops.docker import Builder
from cacheport.plan import Plan

REG = CacheEntry("registry", {"ref": "r/app:main"})
GHA = CacheEntry("gha", {"scope": "s"})


def plan(*entries: CacheEntry) -> Plan:
    return Plan(Context("local", "p"), "x", imports=entries, exports=entries)


def test_docker_driver_without_containerd_store_fails_with_the_fix() -> None:
    checks = builder_checks(plan(REG), Builder("default", "docker", containerd_store=False))
    failed = [c for c in checks if not c.ok]
    assert len(failed) == 1
    assert "cannot export registry cache" in failed[0].detail
    assert "containerd-snapshotter" in failed[0].fix


def test_a_capable_builder_passes() -> None:
    checks = builder_checks(plan(REG, GHA), Builder("default", "docker", containerd_store=True))
    assert all(c.ok for c in checks)
    assert "gha, registry" in checks[-1].detail


def test_gha_environment_is_the_gha_backends_own_check() -> None:
    doctor = gha.BACKEND.doctor
    assert doctor is not None
    missing = list(doctor(None, {"ACTIONS_CACHE_URL": "u"}))  # type: ignore[arg-type]
    assert [c.ok for c in missing] == [False] and "ACTIONS_RUNTIME_TOKEN not set" in missing[0].detail
    present = list(doctor(None, {"ACTIONS_RUNTIME_TOKEN": "t", "ACTIONS_RESULTS_URL": "u"}))  # type: ignore[arg-type]
    assert [c.ok for c in present] == [True]

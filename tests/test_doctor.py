"""`cacheport doctor`'s machine checks, from what the builder reports."""

from __future__ import annotations

from cacheport.build import Builder
from cacheport.context import Context
from cacheport.doctor import builder_checks, gha_checks
from cacheport.entry import CacheEntry
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


def test_gha_environment() -> None:
    assert gha_checks(plan(REG), {}) == []
    missing = gha_checks(plan(GHA), {"ACTIONS_CACHE_URL": "u"})
    assert [c.ok for c in missing] == [False] and "ACTIONS_RUNTIME_TOKEN not set" in missing[0].detail
    assert gha_checks(plan(GHA), {"ACTIONS_RUNTIME_TOKEN": "t", "ACTIONS_RESULTS_URL": "u"})[0].ok

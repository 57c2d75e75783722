"""The helper builds' Dockerfile: each cache mount given as the build gives it, or left out. Their scripts run
(against a stand-in builder) in tests/ops/test_mounts.py, with the restore and save around them."""

from __future__ import annotations

import attrs

from cacheport.mounts import CacheMount
from cacheport.ops.mounts_helper import dockerfile, usable

PIP = CacheMount("pip", "/root/.cache/pip", "locked", 1000, 1000, 0o750, stage="0", line=3)
GO = CacheMount("gomod", "/go/pkg/mod")


def test_a_helper_dockerfile_mounts_each_cache_as_the_build_does_with_the_network_off() -> None:
    text = dockerfile("busybox", [PIP, GO])
    run = next(line for line in text.splitlines() if line.startswith("RUN "))
    assert "--network=none" in run
    assert "--mount=type=cache,id=pip,target=/m/0,sharing=locked,uid=1000,gid=1000,mode=750" in run
    assert run.endswith("--mount=type=cache,id=gomod,target=/m/1,sharing=shared \\")  # none given: none said
    assert "ARG CACHEPORT_NONCE" in text  # its value changes every time: the step always runs
    assert text.startswith("FROM busybox AS helper\n")


def test_uid_gid_and_mode_are_given_exactly_when_the_dockerfile_gives_them() -> None:
    """BuildKit keys a cache mount with uid/gid/mode by the root it makes for them as well: another mount."""
    given = attrs.evolve(GO, owner_given=True)
    assert "uid=0,gid=0,mode=755" in dockerfile("busybox", [given])
    assert "uid=" not in dockerfile("busybox", [GO])
    assert "uid=1000" not in dockerfile("busybox", [attrs.evolve(PIP, owner_given=False)])


def test_an_id_that_cannot_go_into_a_flag_is_left_out() -> None:
    assert usable(PIP) == ""
    assert "id" in usable(attrs.evolve(PIP, id="a b"))
    assert "id" in usable(attrs.evolve(PIP, id="/x,y"))

"""The pure parts of `cacheport build`: reading the log, fitting the cache and the output to the builder, the command;
and, through a stand-in docker, what reaches buildx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cacheport.entry import CacheEntry
from cacheport.ops.build import choose_logins, command, image_output
from cacheport.ops.docker import Builder, fit_to_builder
from cacheport.records import Login
from tests.fakes.docker import stand_in_docker

REGISTRY = CacheEntry("registry", {"ref": "r/app:main"})
S3 = CacheEntry("s3", {"bucket": "b", "region": "eu"})


def test_docker_driver_without_containerd_store_imports_only() -> None:
    imports, exports, notes = fit_to_builder([REGISTRY], [REGISTRY], Builder("default", "docker", False))
    assert (imports, exports) == ([REGISTRY], [])
    assert len(notes) == 1 and "containerd-snapshotter" in notes[0].fix and "imports only" in notes[0].problem


def test_docker_driver_with_containerd_store_keeps_everything() -> None:
    assert fit_to_builder([REGISTRY], [REGISTRY], Builder("default", "docker", True)) == ([REGISTRY], [REGISTRY], [])


def test_s3_never_on_the_engine_but_fine_on_a_container_builder() -> None:
    imports, exports, notes = fit_to_builder([S3], [S3], Builder("default", "docker", True))
    assert (imports, exports) == ([], []) and len(notes) == 2
    assert fit_to_builder([S3], [S3], Builder("ci", "docker-container")) == ([S3], [S3], [])


def test_dual_write_degrades_on_buildkit_before_0_11() -> None:
    old = CacheEntry("registry", {"ref": "old/app:main"})
    _, exports, notes = fit_to_builder([], [REGISTRY, old], Builder("b", "docker-container", buildkit=(0, 10, 6)))
    assert exports == [REGISTRY] and "BuildKit 0.10.6" in notes[0].problem
    assert fit_to_builder([], [REGISTRY, old], Builder("b", "docker-container", buildkit=(0, 13, 1)))[1] == [REGISTRY, old]


def test_command_passes_every_entry_and_quotes_csv() -> None:
    local = CacheEntry("local", {"dest": "/c/a,b", "mode": "max"})
    args = command([REGISTRY, CacheEntry("registry", {"ref": "r/app:dev"})], [REGISTRY, local], "ctx",
                   tags=["app:1"], file="Dockerfile.x", extra=["--push"])
    assert args == [
        "buildx", "build", "--progress=rawjson",
        "--cache-from=type=registry,ref=r/app:main", "--cache-from=type=registry,ref=r/app:dev",
        "--cache-to=type=registry,ref=r/app:main", '--cache-to=type=local,"dest=/c/a,b",mode=max',
        "--tag", "app:1", "--file", "Dockerfile.x", "--push", "ctx",
    ]


def test_first_usable_login_per_registry() -> None:
    logins = [
        Login("reg", "CI_REGISTRY_PASSWORD", username_env="CI_REGISTRY_USER"),
        Login("reg", "CI_JOB_TOKEN", username="gitlab-ci-token"),
    ]
    assert choose_logins(logins, {"CI_JOB_TOKEN": "t"}) == [("reg", "gitlab-ci-token", "t")]
    assert choose_logins(logins, {"CI_REGISTRY_USER": "u", "CI_REGISTRY_PASSWORD": "p", "CI_JOB_TOKEN": "t"}) == [
        ("reg", "u", "p")
    ]
    assert choose_logins(logins, {}) == []


def test_the_builder_named_for_buildx_is_the_one_checked() -> None:
    from cacheport.ops.docker import builder_in, docker_for

    def chosen_builder(extra: list[str], environ: dict[str, str]) -> str | None:
        return docker_for(environ, builder_in(extra)).builder

    assert chosen_builder(["--push", "--builder", "ci"], {"BUILDX_BUILDER": "env"}) == "ci"
    assert chosen_builder(["--builder=ci2"], {}) == "ci2"
    assert chosen_builder(["--push"], {"BUILDX_BUILDER": "env"}) == "env"
    assert chosen_builder([], {"BUILDX_BUILDER": ""}) is None


def test_buildx_inspect_text_of_both_generations() -> None:
    from cacheport.ops.docker import parse_inspect

    old = "Name:          default\nDriver:        docker\n\nNodes:\nName:      default\nEndpoint:  default\n" \
          "BuildKit version: v0.0.0+unknown\n"
    assert parse_inspect(old) == ("default", "docker", "v0.0.0+unknown")
    new = "Name:          ci\nDriver:        docker-container\nLast Activity: 2026-12-01\n\nNodes:\nName:  ci0\n" \
          "Status:   running\nBuildKit version: v0.25.1\n"
    assert parse_inspect(new) == ("ci", "docker-container", "v0.25.1")
    with pytest.raises(ValueError, match="no builder name"):
        parse_inspect("ERROR: something else\n")


@pytest.mark.parametrize("driver", ["docker-container", "remote"])
def test_a_tag_without_an_output_is_loaded_from_a_builder_that_keeps_results_to_itself(driver: str) -> None:
    ci = Builder("ci", driver)
    added, note, said = image_output(ci, ["app:dev"], ["--network=host"])
    assert added == ["--load"]
    assert note == f"builder 'ci' ({driver} driver) keeps what it builds to itself: adding --load, so app:dev is " \
                   "in the engine afterwards"
    assert said.startswith("app:dev loaded into the engine (--load added")
    assert image_output(ci, ["app:dev"], ["--platform", "linux/arm64"])[0] == ["--load"]  # one platform loads


@pytest.mark.parametrize("extra", [["--push"], ["--load"], ["--output", "type=oci,dest=x"], ["--output=type=docker"],
                                   ["-o", "type=local,dest=out"], ["-otype=local,dest=out"], ["--call=check"]])
def test_an_output_given_or_no_tag_or_the_docker_driver_is_left_alone(extra: list[str]) -> None:
    assert image_output(Builder("ci", "docker-container"), ["app:dev"], extra) == ([], "", "")
    assert image_output(Builder("ci", "docker-container"), [], []) == ([], "", "")
    assert image_output(Builder("default", "docker", True), ["app:dev"], []) == ([], "", "")


@pytest.mark.parametrize("platforms", [["--platform", "linux/amd64,linux/arm64"],
                                       ["--platform=linux/amd64", "--platform=linux/arm64"]])
def test_a_multi_platform_tag_without_an_output_says_how_to_get_the_image(platforms: list[str]) -> None:
    added, note, said = image_output(Builder("ci", "docker-container"), ["app:dev"], platforms)
    assert added == []  # only an engine with the containerd image store takes several platforms: nothing is guessed
    assert "a multi-platform image is not loaded for you: app:dev stays in the builder's cache" in note
    assert "-- --push" in note and "--output type=oci,dest=FILE" in note and "containerd image store" in note
    assert said.startswith("app:dev is in the builder's cache only (multi-platform)")


def test_build_on_a_docker_container_builder_passes_load_and_says_so(tmp_path: Path) -> None:
    log = tmp_path / "argv"
    docker = stand_in_docker(tmp_path, log)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CACHEPORT_DOCKER": str(docker),
           "CACHEPORT_BACKEND": "local", "CACHEPORT_LOCAL__SRC": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "cacheport", "build", ".", "-t", "app:dev", "--", "--builder", "ci"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    args = json.loads(log.read_text())
    assert args[-3:] == ["ci", "--load", "."]
    assert "cacheport: note: builder 'ci' (docker-container driver) keeps what it builds to itself: adding --load" \
        in done.stderr
    assert "cacheport: image: app:dev loaded into the engine" in done.stderr

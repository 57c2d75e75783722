"""Builds on builders of our own BuildKit (scripts/e2e-buildkit.sh), the setups users run in CI.

- ``docker-container``, the GitLab component's default: every store backend builds cold on a new builder, then
  warm on another new one (nothing local survives a builder), through ``cacheport build --builder``.
- ``remote``, a standalone buildkitd: the only builder here that can use s3 (moto) and azblob (Azurite).

The proof is test_builds.py's: the warm build runs no RUN step and makes the same random value; for s3 and azblob
also what BuildKit reported (every step cached, the export written) and the very same image layers.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from .harness import Harness, ObjectStores, Pulp, cold_then_warm, gitlab_env, pulp_env, s3_keys


def test_registry_backend_on_docker_container(buildkit: Harness, tmp_path: Path) -> None:
    reg = buildkit.env["CACHEPORT_E2E_REGISTRY"]
    repo = f"e2e/docker-container/{uuid.uuid4().hex[:8]}/cache"
    env = {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{reg}/{repo}", **gitlab_env("x/y", "main")}
    cold, _warm = cold_then_warm(buildkit, buildkit.project(tmp_path, work=1), env=env, driver="docker-container")
    assert cold.cache["export"] == {f"registry {reg}/{repo}:main": "written"}, cold.log
    assert buildkit.tags(reg, repo) == ["main"]


def test_gitlab_backend_with_auth_on_docker_container(buildkit: Harness, tmp_path: Path) -> None:
    reg = buildkit.env["CACHEPORT_E2E_AUTH_REGISTRY"]
    user, password = buildkit.env["CACHEPORT_E2E_AUTH_USER"], buildkit.env["CACHEPORT_E2E_AUTH_PASSWORD"]
    project = f"group/dc-{uuid.uuid4().hex[:8]}"
    env = gitlab_env(f"{reg}/{project}", "main", CI_PROJECT_PATH=project, CI_REGISTRY_USER=user,
                     CI_REGISTRY_PASSWORD=password)
    buildkit.docker("logout", reg, check=False)  # the login cacheport makes is what the builder must use
    cold, warm = cold_then_warm(buildkit, buildkit.project(tmp_path, work=1), env=env, driver="docker-container")
    assert buildkit.tags(reg, f"{project}/cache", auth=(user, password)) == ["main"]
    for result in (cold, warm):
        assert password not in result.log


def test_pulp_backend_on_docker_container(buildkit: Harness, pulp: Pulp, tmp_path: Path) -> None:
    project = f"E2E/DC-{uuid.uuid4().hex[:8]}"
    buildkit.docker("logout", pulp.registry, check=False)
    cold, _warm = cold_then_warm(buildkit, buildkit.project(tmp_path, work=1), env=pulp_env(pulp, project),
                                 driver="docker-container")
    repo = f"{project.lower()}/cache"
    assert cold.cache["export"] == {f"registry {pulp.registry}/{repo}:main": "written"}, cold.log
    assert buildkit.tags(pulp.registry, repo, auth=(pulp.user, pulp.password)) == ["main"]


def test_local_backend_on_docker_container(buildkit: Harness, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"CACHEPORT_BACKEND": "local", "CACHEPORT_LOCAL__SRC": str(cache)}
    cold, _warm = cold_then_warm(buildkit, buildkit.project(tmp_path, work=1), env=env, driver="docker-container")
    assert cold.cache["export"] == {f"local {cache}": "written"}, cold.log
    assert (cache / "index.json").is_file()


def object_store_env(kind: str, stores: ObjectStores, project: str, prefix: str) -> dict[str, str]:
    """A GitLab job on ``main`` whose cache backend is moto's S3 or Azurite, with that store's credentials."""
    job = gitlab_env("unused/x", "main", CI_PROJECT_PATH=project)
    if kind == "s3":
        return {**job, "CACHEPORT_BACKEND": "s3", "CACHEPORT_S3__BUCKET": stores.s3_bucket,
                "CACHEPORT_S3__REGION": stores.s3_region, "CACHEPORT_S3__ENDPOINT_URL": stores.s3_endpoint,
                "CACHEPORT_S3__USE_PATH_STYLE": "true", "CACHEPORT_S3__PREFIX": prefix,
                "AWS_ACCESS_KEY_ID": stores.s3_key_id, "AWS_SECRET_ACCESS_KEY": stores.s3_secret}
    return {**job, "CACHEPORT_BACKEND": "azblob", "CACHEPORT_AZBLOB__ACCOUNT_URL": stores.azure_url,
            "CACHEPORT_AZBLOB__ACCOUNT_NAME": stores.azure_account,
            "CACHEPORT_AZBLOB__CONTAINER": stores.azure_container, "CACHEPORT_AZBLOB__PREFIX": prefix,
            "AZURE_STORAGE_ACCOUNT_KEY": stores.azure_key}


def remote_cold_then_warm(h: Harness, stores: ObjectStores, kind: str, tmp_path: Path) -> str:
    """A cold and a warm build through the object store on new remote builders; the cache's name in the report."""
    run = uuid.uuid4().hex[:8]
    project, prefix = f"group/remote-{run}", f"e2e-{run}/"
    env = object_store_env(kind, stores, project, prefix)
    cold, warm = cold_then_warm(h, h.project(tmp_path, work=1), env=env, driver="remote", oci=True)
    place = stores.s3_bucket if kind == "s3" else stores.azure_container
    where = f"{kind} {place}/{prefix}group-remote-{run}-main"
    assert cold.cache["export"] == {where: "written"}, cold.log
    assert cold.cache["import"] == {where: "unknown"}, cold.log  # BuildKit never says a miss for these types
    assert ": 0/4 steps cached, 4 executed" in cold.log
    assert warm.layers == cold.layers
    for result in (cold, warm):
        secret = stores.s3_secret if kind == "s3" else stores.azure_key
        assert secret not in result.log
    return prefix


def test_s3_backend_on_remote(buildkit: Harness, objstores: ObjectStores, tmp_path: Path) -> None:
    prefix = remote_cold_then_warm(buildkit, objstores, "s3", tmp_path)
    stored = [name for name, deleted in s3_keys(objstores) if name.startswith(prefix) and not deleted]
    assert any(name.startswith(f"{prefix}manifests/") for name in stored), stored
    assert any(name.startswith(f"{prefix}blobs/") for name in stored), stored


def test_azblob_backend_on_remote(buildkit: Harness, objstores: ObjectStores, tmp_path: Path) -> None:
    remote_cold_then_warm(buildkit, objstores, "azblob", tmp_path)


def test_a_tag_without_an_output_is_loaded_into_the_engine(buildkit: Harness, tmp_path: Path) -> None:
    """A docker-container builder keeps what it builds; `cacheport build -t` adds --load, so the image is there."""
    tag = f"cacheport-e2e/loaded:{uuid.uuid4().hex[:8]}"
    env = {"CACHEPORT_BACKEND": "local", "CACHEPORT_LOCAL__SRC": str(tmp_path / "cache")}
    with buildkit.builder("docker-container") as name:
        result = buildkit.build(buildkit.project(tmp_path, work=0), "-t", tag, env={**env, "BUILDX_BUILDER": name},
                                output=False)
    try:
        assert result.code == 0, result.log
        assert f"builder {name!r} (docker-container driver) keeps what it builds to itself: adding --load" in result.log
        assert f"cacheport: image: {tag} loaded into the engine" in result.log
        assert buildkit.docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    finally:
        buildkit.docker("image", "rm", tag, check=False)

"""The ``gitlab`` backend: the registry backend aimed at the project's GitLab Container Registry."""

from __future__ import annotations

from cacheport import EntryRequest, Login, hookimpl
from cacheport.kit import RegistryCache, registry_backend, registry_host, registry_options


def _cache(request: EntryRequest) -> RegistryCache:
    ref = str(request.options["ref"])
    # Every GitLab job has CI_JOB_TOKEN; it logs in to the project's registry when no password is given.
    token = Login(registry_host(ref), "CI_JOB_TOKEN", username="gitlab-ci-token")
    return RegistryCache.from_options(ref, request.options, logins=[token])


BACKEND = registry_backend(
    "gitlab",
    "GitLab Container Registry: cache tags under $CI_REGISTRY_IMAGE/cache.",
    registry_options(
        "${CI_REGISTRY_IMAGE}/cache",
        "The repository for cache tags; defaults to the project's own registry.",
        username_env="CI_REGISTRY_USER",
        password_env="CI_REGISTRY_PASSWORD",
    ),
    _cache,
    docs=(
        "Works with no options inside a GitLab CI job. Imports fall back from the branch to the merge request "
        "target to the default branch; the export goes to the branch's tag. Log in with CI_REGISTRY_USER and "
        "CI_REGISTRY_PASSWORD (or CI_JOB_TOKEN); credentials are never rendered into flags."
    ),
)


@hookimpl
def cacheport_backends() -> list[object]:
    return [BACKEND]

"""The ``gitlab`` backend: the registry backend aimed at the project's GitLab Container Registry."""

from __future__ import annotations

import attrs

from cacheport import Backend, BackendEntries, EntryRequest, Login, hookimpl
from cacheport_builtins.registry import registry_entries, registry_host, registry_options


def _entries(request: EntryRequest) -> BackendEntries:
    result = registry_entries(request)
    # Every GitLab job has CI_JOB_TOKEN; it logs in to the project's registry when no password is given.
    token = Login(registry_host(str(request.options["ref"])), "CI_JOB_TOKEN", username="gitlab-ci-token")
    return attrs.evolve(result, logins=(*result.logins, token))


BACKEND = Backend(
    name="gitlab",
    description="GitLab Container Registry: cache tags under $CI_REGISTRY_IMAGE/cache.",
    options=registry_options(
        "${CI_REGISTRY_IMAGE}/cache",
        "The repository for cache tags; defaults to the project's own registry.",
        username_env="CI_REGISTRY_USER",
        password_env="CI_REGISTRY_PASSWORD",
    ),
    entries=_entries,
    cache_type="registry",
    docs=(
        "Works with no options inside a GitLab CI job. Imports fall back from the branch to the merge request "
        "target to the default branch; the export goes to the branch's tag. Log in with CI_REGISTRY_USER and "
        "CI_REGISTRY_PASSWORD (or CI_JOB_TOKEN); credentials are never rendered into flags."
    ),
)


@hookimpl
def cacheport_backends() -> list[Backend]:
    return [BACKEND]

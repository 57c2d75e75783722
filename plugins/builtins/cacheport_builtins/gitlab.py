"""The ``gitlab`` backend: the registry backend aimed at the project's GitLab Container Registry."""

from __future__ import annotations

from cacheport import Backend, hookimpl
from cacheport_builtins.registry import registry_entries, registry_options

BACKEND = Backend(
    name="gitlab",
    description="GitLab Container Registry: cache tags under $CI_REGISTRY_IMAGE/cache.",
    options=registry_options(
        "${CI_REGISTRY_IMAGE}/cache", "The repository for cache tags; defaults to the project's own registry."
    ),
    entries=registry_entries,
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

"""The ``registry`` backend: cache tags per branch in any OCI registry, built on :mod:`cacheport.kit`."""

from __future__ import annotations

from cacheport import EntryRequest, hookimpl
from cacheport.kit import RegistryCache, registry_backend, registry_options


def _cache(request: EntryRequest) -> RegistryCache:
    return RegistryCache.from_options(str(request.options["ref"]), request.options)


BACKEND = registry_backend(
    "registry",
    "Any OCI registry: one cache tag per branch (and key), with fallback to the default branch.",
    registry_options(None, "The repository for cache tags, e.g. registry.example.com/team/app/cache. "
                     "With a :tag it is one fixed cache for every branch."),
    _cache,
    docs=(
        "Imports try the branch's tag, then the merge/pull request target's, then the default branch's. "
        "The export goes to the branch's tag only, with mode=max and ignore-error=true unless set otherwise."
    ),
)


@hookimpl
def cacheport_backends() -> list[object]:
    return [BACKEND]

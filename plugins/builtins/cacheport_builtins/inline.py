"""The ``inline`` backend: cache metadata inside the pushed image itself; imports read it back from the image."""

from __future__ import annotations

from cacheport import Backend, BackendEntries, CacheEntry, EntryRequest, Option, hookimpl
from cacheport.kit import RegistryCache, registry_entries


def _entries(request: EntryRequest) -> BackendEntries:
    # The images' refs follow the same branch chain as a registry cache's, no-branch rule included.
    planned = registry_entries(RegistryCache.from_options(str(request.options["ref"]), {}), request)
    warnings = list(planned.warnings)
    if request.options["mode"] == "max":
        warnings.append("inline cache is always mode=min (only the final stage's layers); BuildKit ignores mode=max")
    export = [str(e.get("ref")) for e in planned.exports]
    return BackendEntries(
        imports=planned.imports,
        exports=[CacheEntry("inline", {})] if export else [],
        tags=export,
        warnings=warnings,
    )


BACKEND = Backend(
    name="inline",
    description="Cache metadata inside the pushed image: no separate cache storage, min mode only.",
    options=(
        Option("ref", "The image repository, e.g. registry.example.com/team/app; one tag per branch.", required=True),
        Option("mode", "Only min exists for inline cache; asking for max is a warning.", default="min",
               choices=("min", "max")),
    ),
    entries=_entries,
    cache_type="inline",
    docs=(
        "The export is stored only in an image that is pushed: cacheport adds the branch's tag (`--tag`) to the "
        "flags, and `cacheport build` warns when the build does not push. Imports read the cache back from the "
        "branch's, the merge request target's and the default branch's images. Works on every builder, even the "
        "docker driver without the containerd image store. It has no store: the cache is part of images, which "
        "seed, status and prune leave alone."
    ),
)


@hookimpl
def cacheport_backends() -> list[Backend]:
    return [BACKEND]

"""A directory-type third-party backend: caches in a directory every runner on a host shares (an NFS mount)."""

from cacheport import Backend, BackendEntries, CacheEntry, EntryRequest, Option, hookimpl
from cacheport.kit import cache_names
from cacheport.refs import slug


def entries(request: EntryRequest) -> BackendEntries:
    root = f"{request.options['root']}/{slug(request.context.project)}"
    names = cache_names(request.context, request.key)
    imports = [CacheEntry("local", {"src": f"{root}/{name}"}) for name in names.imports]
    exports = [CacheEntry("local", {"dest": f"{root}/{names.export}", "mode": "max"})] if names.export else []
    return BackendEntries(imports=imports, exports=exports, warnings=names.warnings)


@hookimpl
def cacheport_backends():
    return [Backend(name="shared-dir", description="A directory shared by all runners on this host.",
                    options=[Option("root", "The shared directory.", default="/var/cache/buildkit")],
                    entries=entries, cache_type="local")]

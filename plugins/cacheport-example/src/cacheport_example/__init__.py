"""A complete third-party backend: caches in a directory every runner on a host shares (an NFS mount, a volume)."""

from cacheport import Backend, BackendEntries, CacheEntry, EntryRequest, Option, hookimpl
from cacheport.refs import branch_tag, slug


def entries(request: EntryRequest) -> BackendEntries:
    root = f"{request.options['root']}/{slug(request.context.project)}"
    branches = request.context.fallback_branches() or ("default",)
    imports = [CacheEntry("local", {"src": f"{root}/{branch_tag(b, request.key)}"}) for b in branches]
    exports = [CacheEntry("local", {"dest": f"{root}/{branch_tag(b, request.key)}", "mode": "max"})
               for b in branches[:1] if request.context.trusted]
    return BackendEntries(imports=imports, exports=exports)


@hookimpl
def cacheport_backends():
    return [Backend(name="shared-dir", description="A directory shared by all runners on this host.",
                    options=[Option("root", "The shared directory.", default="/var/cache/buildkit")],
                    entries=entries, cache_type="local")]

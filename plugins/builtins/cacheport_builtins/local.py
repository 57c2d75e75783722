"""The ``local`` backend: a cache directory on this machine, kept small by exporting fresh and swapping."""

from __future__ import annotations

from pathlib import Path

from cacheport import Backend, BackendEntries, CacheEntry, EntryRequest, Option, Swap, hookimpl
from cacheport.refs import slug
from cacheport_builtins.registry import COMPRESSIONS, MODES


def _entries(request: EntryRequest) -> BackendEntries:
    opts = request.options
    project_dir = Path(request.cache_dir) / slug(request.context.project)
    default = project_dir / (slug(request.key) if request.key else "default")
    src = str(opts["src"] or default)
    dest = str(opts["dest"] or opts["src"] or default)
    # BuildKit's local exporter only ever adds blobs, so a reused dest grows without bound; writing to a fresh
    # sibling and swapping it in after the build keeps exactly one build's cache.
    target = f"{dest}.new" if opts["rotate"] else dest
    export: dict[str, str] = {"dest": target, "mode": str(opts["mode"])}
    if opts["ignore-error"] is not None:
        export["ignore-error"] = str(opts["ignore-error"]).lower()
    if opts["compression"]:
        export["compression"] = str(opts["compression"])
    return BackendEntries(
        imports=[CacheEntry("local", {"src": src})],
        exports=[CacheEntry("local", export)],
        swaps=[Swap(new=target, current=dest)] if opts["rotate"] else [],
    )


BACKEND = Backend(
    name="local",
    description="A directory on this machine (the default outside CI).",
    options=(
        Option("src", "Directory to import from; default $XDG_CACHE_HOME/cacheport/<project>/<key or 'default'>."),
        Option("dest", "Directory to export to; default: the same as src."),
        Option("mode", "max caches every stage's layers; min only the final image's.", default="max", choices=MODES),
        Option("rotate", "Export to <dest>.new and swap it into <dest> after a successful build.", type=bool,
               default=True),
        Option("ignore-error", "Don't fail the build when exporting the cache fails.", type=bool, default=True),
        Option("compression", "Layer compression for exported cache.", choices=COMPRESSIONS),
    ),
    entries=_entries,
    cache_type="local",
    docs=(
        "BuildKit only ever adds to a local cache directory. With rotate (the default) the build exports to "
        "<dest>.new; `cacheport build` swaps it in after a successful build, and `cacheport args` and "
        "`cacheport rotate` swap in a completed one left by an earlier build."
    ),
)


@hookimpl
def cacheport_backends() -> list[Backend]:
    return [BACKEND]

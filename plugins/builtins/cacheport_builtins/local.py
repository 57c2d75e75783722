"""The ``local`` backend: a cache directory on this machine, kept small by exporting fresh and swapping."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cacheport import Backend, BackendEntries, CacheEntry, CacheStore, EntryRequest, Option, Swap, hookimpl
from cacheport.kit import COMPRESSIONS, layout_store, mode_attrs, mode_options
from cacheport.refs import slug


def _default(request: EntryRequest) -> tuple[Path, Path | None]:
    """The default directory, and where earlier versions of cacheport kept it (None when that is the same place).

    The project's name is kept for people to read, beside a short hash of where the project lives (its remote,
    else its directory), so two checkouts called ``app`` no longer share a cache.
    """
    ctx = request.context
    name, leaf = slug(ctx.project), slug(request.key) if request.key else "default"
    identity = ctx.remote or ctx.root
    if not identity:
        return Path(request.cache_dir) / name / leaf, None
    digest = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return Path(request.cache_dir) / f"{name}-{digest}" / leaf, Path(request.cache_dir) / name / leaf


def _directories(request: EntryRequest) -> tuple[str, str]:
    """Where imports come from, and where the cache lives after a build (the export's final place)."""
    opts = request.options
    src = str(opts["src"] or _default(request)[0])
    return src, str(opts["dest"] or src)


def _entries(request: EntryRequest) -> BackendEntries:
    opts = request.options
    src, dest = _directories(request)
    default, older = _default(request)
    # A cache kept under the project's name alone moves to its new place once, before a build reads it.
    moves = [Swap(new=str(older), current=src, replace=False)] if older and src == str(default) else []
    # BuildKit's local exporter only ever adds blobs, so a reused dest grows without bound; writing to a fresh
    # sibling and swapping it in after the build keeps exactly one build's cache.
    target = f"{dest}.new" if opts["rotate"] else dest
    tag = {"tag": str(opts["tag"])} if opts["tag"] else {}
    export: dict[str, str] = {"dest": target, **tag, **mode_attrs(opts)}
    for name in ("image-manifest", "oci-mediatypes", "compression", "compression-level",
                 "force-compression", "reset"):
        if opts[name] is not None and opts[name] != "":
            export[name] = str(opts[name]).lower() if isinstance(opts[name], bool) else str(opts[name])
    return BackendEntries(
        imports=[CacheEntry("local", {"src": src, **tag})],
        exports=[CacheEntry("local", export)],
        swaps=[*moves, *([Swap(new=target, current=dest)] if opts["rotate"] else [])],
    )


def _store(request: EntryRequest) -> CacheStore:
    # The cache builds import from: the swapped-in directory (or src, when it is not rotated into dest).
    opts = request.options
    src, dest = _directories(request)
    return layout_store(dest if opts["rotate"] else src, name=str(opts["tag"] or "latest"),
                        format="image-manifest" if opts["image-manifest"] else "index",
                        oci_mediatypes=opts["oci-mediatypes"] is not False)


BACKEND = Backend(
    name="local",
    description="A directory on this machine (the default outside CI).",
    options=(
        Option("src", "Directory to import from; default $XDG_CACHE_HOME/cacheport/<project>-<hash>/<key or "
               "'default'>, the hash (8 hex digits) of the project's origin remote, else of its directory."),
        Option("dest", "Directory to export to; default: the same as src."),
        *mode_options(),
        Option("rotate", "Export to <dest>.new and swap it into <dest> after a successful build.", type=bool,
               default=True),
        Option("tag", "The name of the cache in the directory's index.json (BuildKit's default: latest), for "
               "imports and the export alike. Several tags share one directory only with rotate = false: a "
               "rotated directory holds one build."),
        Option("image-manifest", "Store the cache as an OCI image manifest instead of an index.", type=bool),
        Option("oci-mediatypes", "Use OCI media types in the cache manifest.", type=bool),
        Option("compression", "Layer compression for exported cache.", choices=COMPRESSIONS),
        Option("compression-level", "Compression level for exported cache.", type=int),
        Option("force-compression", "Recompress layers that use another compression.", type=bool),
        Option("reset", "After the export, delete every blob index.json no longer references: BuildKit's own cure "
               "for a growing directory. Honoured by buildx 0.35 and later (its BuildKit client, 0.31, does the "
               "deleting); older ones ignore it without a word, so rotate stays on by default.", type=bool),
    ),
    entries=_entries,
    store=_store,
    cache_type="local",
    docs=(
        "BuildKit only ever adds to a local cache directory. With rotate (the default) the build exports to "
        "<dest>.new; `cacheport build` swaps it in after a successful build, and `cacheport args` and "
        "`cacheport rotate` swap in a completed one left by an earlier build. The directory is an OCI layout, "
        "so `cacheport status`, `prune` and `seed` (to and from a registry) work on it. A cache in the place "
        "cacheport kept it before (<project>/<key or 'default'>, shared by every checkout of that name) moves "
        "to the new place once: the first `cacheport args`, `build` or `rotate` moves it, while the new place "
        "holds no cache."
    ),
)


@hookimpl
def cacheport_backends() -> list[Backend]:
    return [BACKEND]

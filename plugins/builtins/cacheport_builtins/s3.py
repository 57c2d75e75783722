"""The ``s3`` backend: an S3 bucket (or compatible store); one cache name per branch."""

from __future__ import annotations

from cacheport import Backend, BackendEntries, CacheEntry, EntryRequest, Option, hookimpl
from cacheport.refs import branch_tag
from cacheport_builtins.registry import MODES

ENGINE_CAVEAT = (
    "Docker Engine's builder (the docker driver) cannot use {type} cache: use a docker-container or remote "
    "builder (`docker buildx create --use --driver docker-container`)."
)


def names_for(request: EntryRequest) -> tuple[tuple[str, ...], str | None]:
    """Cache names in fallback order and the export's name: the branch tags, or one fixed name."""
    opts, ctx = request.options, request.context
    if opts["name"]:
        return (str(opts["name"]),), (str(opts["name"]) if ctx.trusted else None)
    branches = ctx.fallback_branches() or ("latest",)
    names = tuple(dict.fromkeys(branch_tag(b, request.key, ctx) for b in branches))
    own = ctx.branch or (None if ctx.fallback_branches() else "latest")  # a tag build only reads
    return names, (branch_tag(own, request.key, ctx) if own and ctx.trusted else None)


def _entries(request: EntryRequest) -> BackendEntries:
    opts = request.options
    names, export = names_for(request)
    common = {"bucket": str(opts["bucket"]), "region": str(opts["region"])}
    for name in ("prefix", "endpoint_url"):
        if opts[name]:
            common[name] = str(opts[name])
    if opts["use_path_style"] is not None:
        common["use_path_style"] = str(opts["use_path_style"]).lower()
    export_attrs = {"mode": str(opts["mode"]), "ignore-error": str(opts["ignore-error"]).lower()}
    for name in ("upload_parallelism", "touch_refresh"):
        if opts[name] is not None:
            export_attrs[name] = str(opts[name])
    return BackendEntries(
        imports=[CacheEntry("s3", {**common, "name": n}) for n in names],
        exports=[CacheEntry("s3", {**common, "name": export, **export_attrs})] if export else [],
    )


BACKEND = Backend(
    name="s3",
    description="An S3 bucket or S3-compatible store (MinIO, Ceph, R2): one cache name per branch.",
    options=(
        Option("bucket", "The bucket.", required=True),
        Option("region", "The bucket's region.", required=True),
        Option("prefix", "A prefix for every object the cache writes."),
        Option("name", "Cache manifest name; default: one per branch (and key), with fallback. "
               "A fixed name is one cache for every branch."),
        Option("endpoint_url", "Endpoint of an S3-compatible store."),
        Option("use_path_style", "Path-style URLs (bucket in the path), as most S3-compatible stores need.",
               type=bool),
        Option("upload_parallelism", "Parallel layer uploads (BuildKit's default: 4).", type=int),
        Option("touch_refresh", "How often to refresh objects' timestamps, as a Go duration (default 24h).",
               ),
        Option("mode", "max caches every stage's layers; min only the final image's.", default="max", choices=MODES),
        Option("ignore-error", "Don't fail the build when exporting the cache fails.", type=bool, default=True),
    ),
    entries=_entries,
    cache_type="s3",
    docs=(
        "Credentials come from the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, "
        "profiles), which buildx forwards to BuildKit itself; cacheport never renders them. "
        + ENGINE_CAVEAT.format(type="s3")
    ),
)


@hookimpl
def cacheport_backends() -> list[Backend]:
    return [BACKEND]

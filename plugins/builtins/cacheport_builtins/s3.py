"""The ``s3`` backend: an S3 bucket (or compatible store); one cache name per project and branch."""

from __future__ import annotations

from collections.abc import Mapping

from cacheport import Backend, BackendEntries, CacheEntry, Check, EntryRequest, Option, hookimpl
from cacheport.kit import cache_names, mode_attrs, mode_options
from cacheport.refs import slug

ENGINE_CAVEAT = (
    "Docker Engine's builder (the docker driver) cannot use {type} cache: use a docker-container or remote "
    "builder (`docker buildx create --use --driver docker-container`)."
)
#: The environment variables that name AWS credentials for buildx's SDK (the shared files aside).
AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
           "AWS_CONTAINER_CREDENTIALS_FULL_URI")
#: Attributes BuildKit reads on import and export alike, besides bucket, region and name.
COMMON = ("prefix", "manifests_prefix", "blobs_prefix", "endpoint_url", "use_path_style", "disable_accept_encoding",
          "retry_mode", "retry_max_attempts")


def names_for(request: EntryRequest) -> tuple[tuple[str, ...], str | None, tuple[str, ...]]:
    """Cache names in fallback order, the export's name and warnings: ``<project>-<branch name>`` with the
    branch names of :func:`cacheport.kit.cache_names`, or one fixed name."""
    opts, ctx = request.options, request.context
    if opts["name"]:
        return (str(opts["name"]),), (str(opts["name"]) if request.trust.writes_shared else None), ()
    names = cache_names(ctx, request.key)
    # Several projects often share one bucket or container: the project keeps their manifests apart.
    project = slug(ctx.project)
    return (tuple(f"{project}-{n}" for n in names.imports), f"{project}-{names.export}" if names.export else None,
            names.warnings)


def _flag(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _credentials_warning(environ: Mapping[str, str]) -> list[str]:
    # Only the request's environment: entries never read the host, so ~/.aws is `cacheport doctor`'s to check.
    if any(environ.get(name) for name in AWS_ENV):
        return []
    return ["s3: no AWS credentials are visible in the environment (checked AWS_ACCESS_KEY_ID, AWS_PROFILE, "
            "AWS_WEB_IDENTITY_TOKEN_FILE, AWS_CONTAINER_CREDENTIALS_*): unless ~/.aws holds a default profile "
            "(which buildx forwards) or BuildKit has its own (an EC2 instance role, or keys in buildkitd's "
            "environment), every s3 import and export fails, and ignore-error hides it. `cacheport doctor` checks"]


def _entries(request: EntryRequest) -> BackendEntries:
    opts = request.options
    names, export, warnings = names_for(request)
    common = {"bucket": str(opts["bucket"]), "region": str(opts["region"])}
    for name in COMMON:
        if opts[name] is not None and opts[name] != "":
            common[name] = _flag(opts[name])
    export_attrs = mode_attrs(opts)
    for name in ("upload_parallelism", "touch_refresh"):
        if opts[name] is not None:
            export_attrs[name] = str(opts[name])
    return BackendEntries(
        imports=[CacheEntry("s3", {**common, "name": n}) for n in names],
        exports=[CacheEntry("s3", {**common, "name": export, **export_attrs})] if export else [],
        warnings=[*warnings, *_credentials_warning(request.environ)],
    )


def _doctor(request: EntryRequest, environ: Mapping[str, str]) -> list[Check]:
    from cacheport_builtins.objstore import s3_checks

    return s3_checks(request, environ)


BACKEND = Backend(
    name="s3",
    description="An S3 bucket or S3-compatible store (MinIO, Ceph, R2): one cache name per project and branch.",
    options=(
        Option("bucket", "The bucket.", required=True),
        Option("region", "The bucket's region.", required=True),
        Option("prefix", "A prefix for every object the cache writes."),
        Option("name", "Cache manifest name; default <project>-<key->-<branch>, one per branch with fallback, so "
               "projects sharing a bucket never overwrite each other. A fixed name is one cache for every branch."),
        Option("manifests_prefix", "Where manifests go under prefix (BuildKit's default: manifests/)."),
        Option("blobs_prefix", "Where layers go under prefix (BuildKit's default: blobs/)."),
        Option("endpoint_url", "Endpoint of an S3-compatible store."),
        Option("use_path_style", "Path-style URLs (bucket in the path), as most S3-compatible stores need.",
               type=bool),
        Option("disable_accept_encoding", "Drop the SDK's Accept-Encoding handling, for stores behind proxies "
               "that rewrite it after signing (GCS: SignatureDoesNotMatch).", type=bool),
        Option("retry_mode", "The AWS SDK's retry mode (BuildKit's default: standard).",
               choices=("standard", "adaptive")),
        Option("retry_max_attempts", "Attempts per S3 request, the first included (BuildKit's default: 3).",
               type=int),
        Option("upload_parallelism", "Parallel layer uploads (BuildKit's default: 4).", type=int),
        Option("touch_refresh", "How often to refresh objects' timestamps, as a Go duration (default 24h).",
               ),
        *mode_options(),
    ),
    entries=_entries,
    cache_type="s3",
    doctor=_doctor,
    docs=(
        "Credentials come from the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, "
        "profiles), which buildx forwards to BuildKit itself; cacheport never renders them, and warns when the "
        "environment names none. `cacheport doctor` reaches the bucket, signs a request with those credentials "
        "(the environment's or ~/.aws's), and writes, reads and deletes "
        "one object (<prefix>cacheport-doctor). " + ENGINE_CAVEAT.format(type="s3")
    ),
)


@hookimpl
def cacheport_backends() -> list[Backend]:
    return [BACKEND]

"""The ``registry`` backend: cache tags per branch in any OCI registry. ``gitlab`` reuses it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from cacheport import Backend, BackendEntries, CacheEntry, EntryRequest, Login, Option, hookimpl
from cacheport.errors import ConfigError
from cacheport.refs import branch_refs

MODES = ("min", "max")
COMPRESSIONS = ("uncompressed", "gzip", "estargz", "zstd")


def registry_options(
    ref_default: str | None, ref_help: str, username_env: str | None = None, password_env: str | None = None
) -> tuple[Option, ...]:
    """The options every registry-type backend shares."""
    return (
        Option("ref", ref_help, default=ref_default, required=ref_default is None),
        Option("username", "User name for `cacheport build` to log in with (when username-env is unset)."),
        Option("username-env", "Environment variable holding the user name to log in with.", default=username_env),
        Option("password-env", "Environment variable holding the password or token to log in with; "
               "the value itself never appears in config, flags or output.", default=password_env),
        Option("mode", "max caches every stage's layers; min only the final image's.", default="max", choices=MODES),
        Option(
            "ignore-error",
            "Don't fail the build when exporting the cache fails (a cache outage must not fail a build).",
            type=bool,
            default=True,
        ),
        Option("image-manifest", "Store the cache as an OCI image manifest instead of an index; default: true, "
               "or false when oci-mediatypes is false (as BuildKit >= 0.21 decides, stated so that BuildKit 0.12 "
               "to 0.20 write the same).", type=bool),
        Option("oci-mediatypes", "Use OCI media types in the cache manifest.", type=bool, default=True),
        Option("compression", "Layer compression for exported cache.", choices=COMPRESSIONS),
        Option("compression-level", "Compression level for exported cache.", type=int),
        Option("force-compression", "Recompress layers that use another compression.", type=bool),
        Option("insecure", "Talk plain HTTP / accept self-signed TLS (registry.insecure).", type=bool),
    )


def _flag(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def registry_entries(request: EntryRequest) -> BackendEntries:
    """Imports along the branch fallback chain; the export to the branch's own tag."""
    opts = request.options
    ref = str(opts["ref"])
    warnings: list[str] = []
    last = ref.rsplit("/", 1)[-1]
    if ":" in last or "@" in last:
        # A ref with its own tag is one fixed cache, as hand-written pipelines use: no branch scoping.
        imports: tuple[str, ...] = (ref,)
        export: str | None = ref if request.context.trusted else None
    else:
        imports, export = branch_refs(ref, request.context, request.key)
        if not imports:
            warnings.append("no branch is known here; using the tag 'latest'")
            imports, export = branch_refs(ref, attrs.evolve(request.context, branch="latest"), request.key)
    common = {"registry.insecure": _flag(opts["insecure"])} if opts.get("insecure") is not None else {}
    export_attrs: dict[str, str] = {"mode": str(opts["mode"])}
    # The format is always stated, so that a cache's format never depends on which BuildKit wrote it.
    stated = {**opts, "image-manifest": export_format(opts)}
    for name in ("ignore-error", "image-manifest", "oci-mediatypes", "compression", "compression-level",
                 "force-compression"):
        if stated.get(name) is not None:
            export_attrs[name] = _flag(stated[name])
    logins = []
    if opts.get("password-env"):
        logins.append(Login(registry_host(ref), str(opts["password-env"]), str(opts.get("username-env") or ""),
                            str(opts.get("username") or "")))
    return BackendEntries(
        imports=[CacheEntry("registry", {"ref": r, **common}) for r in imports],
        exports=[CacheEntry("registry", {"ref": export, **export_attrs, **common})] if export else [],
        warnings=warnings,
        logins=logins,
    )


def export_format(opts: Mapping[str, Any]) -> bool:
    """Whether the export is an image manifest: as set, else true unless oci-mediatypes is false."""
    oci = opts.get("oci-mediatypes") is not False
    manifest = opts.get("image-manifest")
    if manifest is None:
        return oci
    if manifest and not oci:
        # BuildKit fails that export ("invalid configuration for remote cache"), which ignore-error hides.
        raise ConfigError("image-manifest = true needs oci-mediatypes = true (BuildKit refuses an image-manifest "
                          "cache with Docker media types); set oci-mediatypes = true or image-manifest = false")
    return bool(manifest)


def registry_host(ref: str) -> str:
    """The registry part of an image reference, as docker login wants it."""
    first, sep, _rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


BACKEND = Backend(
    name="registry",
    description="Any OCI registry: one cache tag per branch (and key), with fallback to the default branch.",
    options=registry_options(None, "The repository for cache tags, e.g. registry.example.com/team/app/cache. "
                             "With a :tag it is one fixed cache for every branch."),
    entries=registry_entries,
    cache_type="registry",
    docs=(
        "Imports try the branch's tag, then the merge/pull request target's, then the default branch's. "
        "The export goes to the branch's tag only, with mode=max, ignore-error=true, image-manifest=true and "
        "oci-mediatypes=true unless set otherwise."
    ),
)


@hookimpl
def cacheport_backends() -> list[Backend]:
    return [BACKEND]

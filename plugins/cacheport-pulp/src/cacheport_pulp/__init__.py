"""The ``pulp`` backend: BuildKit cache in Pulp's container registry, always in the one format Pulp accepts.

A third-party plugin like any other: it uses only cacheport's public API (``cacheport``, ``cacheport.kit``,
``cacheport.refs``, ``cacheport.errors``), and is a registry-type backend built on the kit, so ``seed``,
``status`` and ``prune`` reach its caches through the kit's registry store. Nothing heavy is imported here;
``cacheport doctor`` loads pulp-glue and requests from
:mod:`cacheport_pulp.checks` when it runs, so ``cacheport args`` stays fast.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from cacheport import Backend, Check, EntryRequest, Login, Option, hookimpl
from cacheport.errors import ConfigError
from cacheport.kit import COMPRESSIONS, RegistryCache, mode_options, registry_backend
from cacheport.refs import repository, slug

__version__ = "0.1.0"
#: The cacheport plugin API this plugin is written against (`cacheport plugins` shows it).
cacheport_api = "0.2"

# Pulp (pulp-container 2.30) answers BuildKit's default cache index with 400 MANIFEST_INVALID, and rejects
# oci-mediatypes=false as well; an OCI image manifest with OCI media types is what it stores.
FORMAT = ("image-manifest", "oci-mediatypes")
# One path component of an OCI repository name (distribution's reference grammar).
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")

OPTIONS = (
    Option("url", "The Pulp registry host as it appears in image refs: pulp.example.com[:port]. "
           "An http:// prefix means plain HTTP (insecure).", required=True),
    Option("repository", "The repository path for cache tags; default: the project path, lower-cased, "
           "plus /cache (group/app/cache)."),
    Option("username", "User name for `cacheport build` and `cacheport doctor` (when username-env is unset)."),
    Option("username-env", "Environment variable holding the Pulp user name.", default="PULP_USERNAME"),
    Option("password-env", "Environment variable holding the Pulp password; the value itself never appears in "
           "config, flags or output.", default="PULP_PASSWORD"),
    *mode_options(),
    Option("image-manifest", "Store the cache as an OCI image manifest; Pulp accepts nothing else, so false is "
           "an error unless force is set.", type=bool, default=True),
    Option("oci-mediatypes", "Use OCI media types; Pulp accepts nothing else, so false is an error unless force "
           "is set.", type=bool, default=True),
    Option("force", "Export image-manifest/oci-mediatypes = false anyway (with a warning), e.g. for a Pulp "
           "that has learned to accept them.", type=bool, default=False),
    Option("compression", "Layer compression for exported cache.", choices=COMPRESSIONS),
    Option("compression-level", "Compression level for exported cache.", type=int),
    Option("force-compression", "Recompress layers that use another compression.", type=bool),
    Option("insecure", "Talk plain HTTP / accept self-signed TLS (registry.insecure); default: true when url "
           "starts with http://.", type=bool),
    Option("api-url", "Pulp's REST API for `cacheport doctor`: https://host[:port], plus the API root when it "
           "is not /pulp/; default: the registry host, over http when insecure, else https."),
)


def split_url(url: str) -> tuple[str, str | None]:
    """``(host[:port], scheme)`` from ``url`` as users write it; scheme is None when none was given."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "", url.strip()
    rest = rest.rstrip("/")
    if scheme and scheme.lower() not in ("http", "https"):
        raise ConfigError(f"pulp: url {url!r} must be a registry host (pulp.example.com[:port]), optionally with "
                          "http:// or https://")
    if not rest or "/" in rest:
        raise ConfigError(f"pulp: url {url!r} must be a registry host (pulp.example.com[:port]) without a path; "
                          "put the path in the repository option")
    return rest.lower(), scheme.lower() or None


def is_insecure(options: Mapping[str, Any]) -> bool | None:
    """``insecure`` as set, else true for an ``http://`` url, else unknown (BuildKit's own default)."""
    if options.get("insecure") is not None:
        return bool(options["insecure"])
    return True if split_url(str(options["url"]))[1] == "http" else None


def registry_url(options: Mapping[str, Any]) -> str:
    """The registry's base URL (its /v2/ API), on the scheme BuildKit will use."""
    host, scheme = split_url(str(options["url"]))
    return f"{scheme or ('http' if is_insecure(options) else 'https')}://{host}"


def api_url(options: Mapping[str, Any]) -> str:
    """Where Pulp's REST API lives: the api-url option, else the registry's own URL (Pulp serves both)."""
    return str(options.get("api-url") or registry_url(options)).rstrip("/")


def cache_ref(options: Mapping[str, Any], project: str) -> str:
    """``host/path`` of the cache repository, lower-cased: the repository option, else ``<project>/cache``.

    The path is Pulp's distribution ``base_path``.
    """
    host, _scheme = split_url(str(options["url"]))
    given = str(options.get("repository") or "").strip().strip("/")
    if not given:
        parts = [part.lower() for part in project.split("/") if part.strip()]
        # A project named after a directory ("My App") is no valid path component; its slug is.
        given = "/".join([*(p if _COMPONENT.match(p) else slug(p) for p in parts), "cache"])
    ref = repository(f"{host}/{given}")
    bad = [part for part in ref.partition("/")[2].split("/") if not _COMPONENT.match(part)]
    if bad:
        raise ConfigError(f"pulp: repository {given!r} is not a valid repository path (at {bad[0]!r}: use "
                          "lower-case letters and digits, with . _ - inside and / between parts)")
    return ref


def format_warnings(options: Mapping[str, Any]) -> list[str]:
    """Refuse the export format Pulp rejects; with ``force``, allow it with a warning."""
    wrong = [name for name in FORMAT if options.get(name) is False]
    if not wrong:
        return []
    what = " and ".join(f"{name} = false" for name in wrong)
    if not options.get("force"):
        raise ConfigError(
            f"pulp: {what} cannot work: Pulp rejects that cache format (HTTP 400 MANIFEST_INVALID), and with "
            "ignore-error a build then exits 0 and silently stores nothing; remove it (cacheport always exports "
            "image-manifest=true,oci-mediatypes=true to Pulp), or set force = true to send it anyway"
        )
    silently = " and, with ignore-error, nothing is stored while the build still succeeds" if (
        options.get("ignore-error")) else " and the build fails"
    return [f"{what} is forced: Pulp rejects that cache format, so the cache export will fail{silently}"]


def cache(request: EntryRequest) -> RegistryCache:
    """The cache repository on Pulp, exported as an OCI image manifest (the only format Pulp stores)."""
    opts = request.options
    host, _scheme = split_url(str(opts["url"]))
    warnings = format_warnings(opts)
    logins = []
    if opts.get("password-env"):
        logins.append(Login(host, str(opts["password-env"]), str(opts.get("username-env") or ""),
                            str(opts.get("username") or "")))
    # The format options are always rendered, so the format never depends on which BuildKit writes it.
    # The login is the one above: the kit is given no credential options (a user name alone would be a warning).
    export = {**{name: opts[name] for name in FORMAT}, "insecure": is_insecure(opts),
              **dict.fromkeys(("password-env", "username-env", "username"))}
    return RegistryCache.from_options(cache_ref(opts, request.context.project), {**opts, **export},
                                      logins=logins, warnings=warnings, forced=bool(opts.get("force")))


def doctor(request: EntryRequest, environ: Mapping[str, str]) -> Iterable[Check]:
    """Pulp's status, the credentials, the repository, and which distributions hold cache."""
    from cacheport_pulp import checks  # pulp-glue and requests: only when doctor runs

    return checks.run(request, environ)


BACKEND = registry_backend(
    "pulp",
    "Pulp's container registry: one cache tag per branch, in the format Pulp accepts.",
    OPTIONS,
    cache,
    docs=(
        "Cache tags live under <url>/<repository> (default: the project path plus /cache), with the branch "
        "fallback chain of the registry backend. Exports are always image-manifest=true,oci-mediatypes=true: "
        "Pulp rejects BuildKit's default cache index, and with ignore-error=true such a build would succeed "
        "and store nothing, so setting either to false is an error unless force = true. `cacheport build` "
        "logs in with $PULP_USERNAME/$PULP_PASSWORD (see username-env/password-env); `cacheport doctor` "
        "checks Pulp's status, the credentials, the repository and lists the distributions holding cache."
    ),
    doctor=doctor,
)


@hookimpl
def cacheport_backends() -> list[Backend]:
    return [BACKEND]

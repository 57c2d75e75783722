"""The kit for backend authors: what every registry-type backend (``registry``, ``gitlab``, ``pulp``, ``inline``,
a plugin's) and every backend with per-branch cache names (``s3``, ``gha``) shares.

- :func:`cache_names`: the branch fallback chain, with the one rule for a job that knows no branch. Like every
  name a backend writes, it follows the plan's trust decision, which the request carries
  (:attr:`cacheport.EntryRequest.trust`; ``request.trust.writes_shared`` for a cache every branch shares): a
  backend never decides who may write.
- :func:`registry_options`, :class:`RegistryCache`, :func:`registry_entries`, :func:`registry_store` and
  :func:`registry_backend`: a whole registry-type backend (schema, entries, store) from one function that says
  where its cache repository is.
- :func:`layout_store`: the store of a backend that keeps a cache in an OCI layout directory.
- :func:`parse_realm`, :func:`withheld` and :func:`insecure_hosts`: where a registry's credentials may go (the
  token-realm rule of :mod:`cacheport.oci.realm`); :func:`secret_forms`, :func:`mask` and :func:`printable`:
  what a person may see of a server's words.

Light to import: plugins import this when they load, on every ``cacheport args``. The registry client is
imported only when a store is opened.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from cacheport.entry import CacheEntry
from cacheport.errors import ConfigError

# Where a registry's credentials may go, and what a person may see of a server's words: the rules every
# registry-type backend's own HTTP code follows too (the pulp plugin's doctor does).
from cacheport.masking import mask as mask
from cacheport.masking import printable as printable
from cacheport.masking import secret_forms as secret_forms
from cacheport.records import (
    Backend,
    BackendEntries,
    CacheStore,
    Check,
    Context,
    EntryRequest,
    Login,
    Option,
    StoreSession,
)
from cacheport.refs import branch_names, branch_tag, key_prefix, reference_problem, repository, split_host
from cacheport.trust import decided, marked

if TYPE_CHECKING:
    from cacheport.oci.auth import Credentials
    from cacheport.oci.realm import INSECURE_VARIABLE as INSECURE_VARIABLE
    from cacheport.oci.realm import insecure_hosts as insecure_hosts
    from cacheport.oci.realm import parse_realm as parse_realm
    from cacheport.oci.realm import withheld as withheld
    from cacheport.oci.registry import Registry

#: the token-realm rules, loaded from :mod:`cacheport.oci.realm` when first asked for (not on ``cacheport args``).
_REALM_RULES = ("INSECURE_VARIABLE", "insecure_hosts", "parse_realm", "withheld")


def __getattr__(name: str) -> Any:
    if name in _REALM_RULES:
        from cacheport.oci import realm

        return getattr(realm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


MODES = ("min", "max")
COMPRESSIONS = ("uncompressed", "gzip", "estargz", "zstd")
#: The cache name of a job that knows no branch at all (no CI branch, no MR target, no default branch).
NO_BRANCH = "latest"
NO_BRANCH_WARNING = (f"no branch is known here (no CI branch, git branch or default branch), so the cache is "
                     f"named {NO_BRANCH!r}")
#: Export attributes every registry-type backend passes through from its options, in this order.
EXPORT_OPTIONS = ("mode", "ignore-error", "image-manifest", "oci-mediatypes", "compression", "compression-level",
                  "force-compression")


@attrs.frozen
class CacheNames:
    """A job's cache names.

    Attributes:
        imports: names to import from, most specific first.
        export: the name to export to, or None (an untrusted job, a tag pipeline, a colliding branch name).
        warnings: one-line messages for the user (the no-branch rule says when it applied).
    """

    imports: tuple[str, ...]
    export: str | None
    warnings: tuple[str, ...] = ()


def cache_names(context: Context, key: str | None = None) -> CacheNames:
    """The branch fallback chain as cache names (tags), and the export's name.

    The one rule for "no branch known": a job that knows no branch, no MR target and no default branch reads
    and writes the name ``latest`` (with ``key``: ``<key>-latest``), and says so in a warning. A job that knows
    only the default branch (a tag pipeline) imports from it and exports nothing. Which branches a job reads
    and whether it writes are the plan's trust decision, which ``request.context`` carries (``context.trust``,
    see :mod:`cacheport.trust`).
    """
    imports, export = branch_names(context, key)
    if imports:
        return CacheNames(imports, export)
    name = branch_tag(NO_BRANCH, key)
    trust = decided(context)
    if trust.mode == "protected" and not trust.protected:
        name = marked(name)
    return CacheNames((name,), name if trust.writes else None, (NO_BRANCH_WARNING,))


def may_write_shared(context: Context) -> bool:
    """Deprecated since 0.2: read ``request.trust.writes_shared`` (:attr:`cacheport.records.Trust.writes_shared`)."""
    import warnings

    warnings.warn("cacheport.kit.may_write_shared is deprecated since 0.2: read request.trust.writes_shared",
                  DeprecationWarning, stacklevel=2)
    return decided(context).writes_shared


def _flag(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# --- registry-type backends -----------------------------------------------------------------------------------


def registry_options(
    ref_default: str | None, ref_help: str, username_env: str | None = None, password_env: str | None = None
) -> tuple[Option, ...]:
    """The options every registry-type backend shares; ``ref`` first (required when it has no default)."""
    return (
        Option("ref", ref_help, default=ref_default, required=ref_default is None),
        Option("username", "User name to log in with (when username-env is unset)."),
        Option("username-env", "Environment variable holding the user name to log in with.", default=username_env),
        Option("password-env", "Environment variable holding the password or token to log in with; "
               "the value itself never appears in config, flags or output.", default=password_env),
        *export_options(),
        Option("insecure", "Talk plain HTTP / accept self-signed TLS (registry.insecure).", type=bool),
    )


def mode_options() -> tuple[Option, Option]:
    """``mode`` (default max) and ``ignore-error`` (default true): the export options every backend shares."""
    return (
        Option("mode", "max caches every stage's layers; min only the final image's.", default="max", choices=MODES),
        Option("ignore-error", "Don't fail the build when exporting the cache fails (a cache outage must not fail "
               "a build).", type=bool, default=True),
    )


def mode_attrs(options: Mapping[str, Any]) -> dict[str, str]:
    """The export attributes of :func:`mode_options`, as BuildKit reads them."""
    return {"mode": str(options["mode"]), "ignore-error": _flag(options["ignore-error"])}


def export_options() -> tuple[Option, ...]:
    """The cache-export options (mode, ignore-error, format, compression) of a registry-type backend."""
    return (
        *mode_options(),
        Option("image-manifest", "Store the cache as an OCI image manifest instead of an index; default: true, "
               "or false when oci-mediatypes is false (as BuildKit >= 0.21 decides, stated so that BuildKit 0.12 "
               "to 0.20 write the same).", type=bool),
        Option("oci-mediatypes", "Use OCI media types in the cache manifest.", type=bool, default=True),
        Option("compression", "Layer compression for exported cache.", choices=COMPRESSIONS),
        Option("compression-level", "Compression level for exported cache.", type=int),
        Option("force-compression", "Recompress layers that use another compression.", type=bool),
    )


def registry_host(ref: str) -> str:
    """The registry part of an image reference, as ``docker login`` wants it (``docker.io`` when none)."""
    host, _path = split_host(ref)
    return host.lower() or "docker.io"


@attrs.frozen
class RegistryCache:
    """Where a registry-type backend keeps its cache, and how it exports: all :func:`registry_entries` and
    :func:`registry_store` need. Build one with :meth:`from_options`.

    Attributes:
        repository: ``host/path`` of the cache repository, lower-cased.
        fixed: a whole ref with its own ``:tag`` (or ``@digest``): one cache for every branch, as hand-written
            pipelines use; None for one tag per branch.
        insecure: ``registry.insecure`` (plain HTTP or unverified TLS), or None for BuildKit's default.
        export_attrs: the export's attributes besides ``ref``, in order.
        logins: how to log in, in order (variable names, never values).
        warnings: one-line messages for the user.
    """

    repository: str
    fixed: str | None = None
    insecure: bool | None = None
    export_attrs: tuple[tuple[str, str], ...] = ()
    logins: tuple[Login, ...] = ()
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, ref: str, options: Mapping[str, Any], *, logins: Iterable[Login] = (),
                     warnings: Iterable[str] = (), forced: bool = False) -> RegistryCache:
        """From a ref and the options of :func:`registry_options` (any of them may be missing).

        ``forced``: export the format options exactly as set, even a combination BuildKit refuses.
        """
        ref = ref.strip()
        if not ref or any(c.isspace() for c in ref) or ref.startswith("/"):
            raise ConfigError(f"ref = {ref!r} is not an image repository (host/path, e.g. "
                              "registry.example.com/team/app/cache)")
        last = ref.rsplit("/", 1)[-1]
        fixed = ref if (":" in last or "@" in last) else None
        repo = ref[: len(ref) - len(last)] + re.split(r"[:@]", last, maxsplit=1)[0] if fixed else ref
        problem = reference_problem(repository(repo) + (ref[len(repo):] if fixed else ""))
        if problem:
            from cacheport.masking import shown_value

            raise ConfigError(f"ref = {shown_value(ref)} is not an image repository: {problem}")
        # The format is always stated, so that a cache's format never depends on which BuildKit wrote it.
        stated = options
        if "oci-mediatypes" in options and not forced:
            stated = {**options, "image-manifest": export_format(options)}
        attrs_ = tuple((name, _flag(stated[name])) for name in EXPORT_OPTIONS if stated.get(name) is not None)
        own: list[Login] = []
        user = options.get("username") or options.get("username-env")
        if user and not options.get("password-env"):
            key = "username" if options.get("username") else "username-env"
            warnings = [*warnings, f"{key} = {str(user)!r} is set but password-env is not, so no login is made: set "
                        "password-env to the name of the variable that holds the password (password-env = "
                        "\"CACHE_PASSWORD\"), never the password itself"]
        if options.get("password-env"):
            own.append(Login(registry_host(ref), str(options["password-env"]),
                             str(options.get("username-env") or ""), str(options.get("username") or "")))
        insecure = options.get("insecure")
        return cls(repository(repo), fixed, None if insecure is None else bool(insecure), attrs_,
                   (*own, *logins), tuple(warnings))

    @property
    def format(self) -> str:
        return "image-manifest" if dict(self.export_attrs).get("image-manifest") == "true" else "index"

    @property
    def fixed_tag(self) -> str | None:
        if self.fixed is None:
            return None
        last = self.fixed.rsplit("/", 1)[-1].split("@", 1)[0]
        return last.partition(":")[2] or NO_BRANCH


def export_format(options: Mapping[str, Any]) -> bool:
    """Whether the export is an image manifest: as set, else true unless oci-mediatypes is false."""
    oci = options.get("oci-mediatypes") is not False
    manifest = options.get("image-manifest")
    if manifest is None:
        return oci
    if manifest and not oci:
        # BuildKit fails that export ("invalid configuration for remote cache"), which ignore-error hides.
        raise ConfigError("image-manifest = true needs oci-mediatypes = true (BuildKit refuses an image-manifest "
                          "cache with Docker media types); set oci-mediatypes = true or image-manifest = false")
    return bool(manifest)


def registry_entries(cache: RegistryCache, request: EntryRequest) -> BackendEntries:
    """Imports along the branch fallback chain; the export to the branch's own tag (or the fixed ref)."""
    warnings = list(cache.warnings)
    if cache.fixed is not None:
        imports: tuple[str, ...] = (cache.fixed,)
        export = cache.fixed if request.trust.writes_shared else None
    else:
        names = cache_names(request.context, request.key)
        imports = tuple(f"{cache.repository}:{n}" for n in names.imports)
        export = f"{cache.repository}:{names.export}" if names.export else None
        warnings += names.warnings
    common = {"registry.insecure": _flag(cache.insecure)} if cache.insecure is not None else {}
    return BackendEntries(
        imports=[CacheEntry("registry", {"ref": r, **common}) for r in imports],
        exports=[CacheEntry("registry", {"ref": export, **dict(cache.export_attrs), **common})] if export else [],
        warnings=warnings,
        logins=cache.logins,
    )


def registry_store(cache: RegistryCache, request: EntryRequest) -> CacheStore:
    """The cache repository as a store: tags are names, one per branch (or the fixed tag)."""
    key = request.key
    fixed = cache.fixed_tag
    prefix = key_prefix(key)

    def name_for(branch: str) -> str:
        return fixed or branch_tag(branch, key, request.context)

    def branch_of(name: str) -> str | None:
        from cacheport.mounts.artifact import is_mounts_name
        from cacheport.signing import is_signature_tag

        # A branch's cache mounts (<tag>.mounts) are beside its cache, and a signature (trust = "signed") is
        # beside the cache it signs: neither is a branch of its own.
        if fixed is not None or not name.startswith(prefix) or is_mounts_name(name) or is_signature_tag(name):
            return None
        return name[len(prefix):] or None

    def open_() -> StoreSession:
        from cacheport.mounts.artifact import mounts_name
        from cacheport.oci.credentials import docker_credentials
        from cacheport.oci.realm import insecure_hosts
        from cacheport.oci.reference import parse_reference
        from cacheport.oci.registry import Registry
        from cacheport.oci.repository import RegistryRepository
        from cacheport.oci.upload import UploadJournal

        ref = parse_reference(cache.repository)
        credentials = (login_credentials(cache.logins, ref.host, request.environ)
                       or docker_credentials(ref.host, request.environ))
        # Open blob uploads are remembered beside the user's caches, so a stopped seed resumes mid-blob.
        uploads = UploadJournal(os.path.join(request.cache_dir, ".uploads") if request.cache_dir else None)
        registry = Registry(ref.host, credentials, insecure=bool(cache.insecure),
                            insecure_hosts=insecure_hosts(request.environ), uploads=uploads)
        return RegistryRepository(registry, ref.repository,
                                  only=None if fixed is None else (fixed, mounts_name(fixed)))

    return CacheStore(location=cache.repository, format=cache.format, name_for=name_for, branch_of=branch_of,
                      open=open_, oci_mediatypes=dict(cache.export_attrs).get("oci-mediatypes") != "false",
                      fixed=fixed is not None)


def login_credentials(logins: Iterable[Login], host: str, environ: Mapping[str, str]) -> Credentials | None:
    """The first login for ``host`` whose variables are set, as credentials (Docker Hub under either name)."""
    from cacheport.oci.auth import Credentials

    for login in logins:
        if login.registry.lower() not in (host, "docker.io" if host == "registry-1.docker.io" else host):
            continue
        password = environ.get(login.password_env, "")
        user = (environ.get(login.username_env, "") if login.username_env else "") or login.username
        if password and user:
            return Credentials(user, password)
    return None


def registry_client(host: str, username: str = "", password: str = "", *, insecure: bool = False,
                    insecure_hosts: Iterable[str] = (), timeout: float = 60.0, scheme: str | None = None) -> Registry:
    """cacheport's own client for one registry host's API, for a plugin's doctor checks: retries, answers read
    within bounds, docker's token flow, and credentials only where the realm rules allow. Use it as a context
    manager; ``list_tags(repository)`` ([] when the repository does not exist) and ``get_manifest(repository,
    reference)`` (a manifest with ``.json``, or None); every failure is a one-line
    :class:`cacheport.errors.RegistryError` whose ``status`` is the HTTP status, when there was one.

    ``host`` is ``host[:port]``: a loopback host is spoken to over plain HTTP, others over verified HTTPS, or
    with ``insecure`` HTTPS without verification, else plain HTTP; ``scheme`` (``http`` or ``https``, from a URL
    the user gave) overrides that choice.
    """
    from cacheport.oci.auth import Credentials
    from cacheport.oci.registry import Registry

    credentials = Credentials(username, password) if username and password else None
    return Registry(host, credentials, insecure=insecure, insecure_hosts=insecure_hosts, timeout=timeout,
                    scheme=scheme)


def registry_backend(
    name: str,
    description: str,
    options: Iterable[Option],
    cache: Callable[[EntryRequest], RegistryCache],
    *,
    docs: str = "",
    doctor: Callable[[EntryRequest, Mapping[str, str]], Iterable[Check]] | None = None,
) -> Backend:
    """A whole registry-type backend: ``cache(request)`` says where its repository is and how it exports."""
    return Backend(
        name=name,
        description=description,
        options=options,
        entries=lambda request: registry_entries(cache(request), request),
        store=lambda request: registry_store(cache(request), request),
        cache_type="registry",
        docs=docs,
        doctor=doctor,
    )


# --- directories ----------------------------------------------------------------------------------------------


def layout_store(directory: str, *, format: str = "index", oci_mediatypes: bool = True,
                 name: str = "latest") -> CacheStore:
    """An OCI layout directory (BuildKit's ``type=local`` cache) as a store: one cache, called ``name``."""

    def open_() -> StoreSession:
        from cacheport.oci.layout import Layout

        return Layout(directory)

    return CacheStore(location=directory, format=format, name_for=lambda _branch: name, branch_of=lambda _n: None,
                      open=open_, oci_mediatypes=oci_mediatypes, fixed=True)

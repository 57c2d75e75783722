"""The ``azblob`` backend: Azure Blob Storage; one cache name per project and branch."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

from cacheport import Backend, BackendEntries, CacheEntry, Check, EntryRequest, Option, hookimpl
from cacheport.errors import ConfigError
from cacheport.kit import mode_attrs, mode_options
from cacheport_builtins.s3 import ENGINE_CAVEAT, names_for

SECRET = "secret_access_key"


def _needs_account_name(account_url: str) -> bool:
    """BuildKit takes the account name from the URL's first host label, which is wrong for IPs and own domains."""
    try:
        host = urlsplit(account_url if "://" in account_url else f"https://{account_url}").hostname or ""
    except ValueError:
        raise ConfigError(f"azblob: account_url = {account_url!r} is not a URL") from None
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return not host.endswith(".blob.core.windows.net")


def _entries(request: EntryRequest) -> BackendEntries:
    opts = request.options
    url = str(opts["account_url"])
    if _needs_account_name(url) and not opts["account_name"]:
        raise ConfigError(
            f"azblob: account_url = {url!r} is an IP address or a custom domain, so BuildKit cannot derive the "
            "account name from it; set account_name"
        )
    common = {"account_url": url}
    for name in ("account_name", "container", "prefix", "manifests_prefix", "blobs_prefix"):
        if opts[name]:
            common[name] = str(opts[name])
    secret_env = str(opts["secret-access-key-env"] or "")
    secret = request.environ.get(secret_env, "") if secret_env else ""
    names, export, name_warnings = names_for(request)
    warnings = list(name_warnings)
    if secret:
        # BuildKit reads no client-side environment for this key, so it has to travel inside the entry.
        common[SECRET] = secret
    elif secret_env:
        warnings.append(f"azblob: {secret_env} is not set; BuildKit will try its default Azure credentials")
    export_attrs = mode_attrs(opts)
    return BackendEntries(
        imports=[CacheEntry("azblob", {**common, "name": n}) for n in names],
        exports=[CacheEntry("azblob", {**common, "name": export, **export_attrs})] if export else [],
        warnings=warnings,
        secret_attrs={SECRET},
    )


def _doctor(request: EntryRequest, environ: Mapping[str, str]) -> list[Check]:
    from cacheport_builtins.objstore import azblob_checks

    return azblob_checks(request, environ)


BACKEND = Backend(
    name="azblob",
    description="Azure Blob Storage: one cache name per project and branch.",
    options=(
        Option("account_url", "The storage account's blob URL, e.g. https://acct.blob.core.windows.net.",
               required=True),
        Option("account_name", "The account name; required when account_url is an IP address or a custom domain."),
        Option("container", "The blob container (BuildKit's default: buildkit-cache)."),
        Option("prefix", "A prefix for every blob the cache writes."),
        Option("name", "Cache manifest name; default <project>-<key->-<branch>, one per branch with fallback, so "
               "projects sharing a container never overwrite each other."),
        Option("manifests_prefix", "Where manifests go under prefix (BuildKit's default: manifests)."),
        Option("blobs_prefix", "Where layers go under prefix (BuildKit's default: blobs)."),
        Option("secret-access-key-env", "Environment variable holding the account key. BuildKit needs the key "
               "inside the cache entry, so it is redacted wherever a person reads it and files holding it are "
               "written mode 0600; but `docker buildx build` gets it on its command line, where other users of "
               "the machine can read it (ps), and BuildKit's build history keeps the imports' copy (see "
               "backends.md#secrets).", default="AZURE_STORAGE_ACCOUNT_KEY"),
        *mode_options(),
    ),
    entries=_entries,
    cache_type="azblob",
    doctor=_doctor,
    docs=(
        "Without a key, BuildKit falls back to its default Azure credentials (managed identity, environment). "
        "`cacheport doctor` reaches the container, signs a request with the key, and writes, reads and deletes "
        "one blob (<prefix>/cacheport-doctor). "
        + ENGINE_CAVEAT.format(type="azblob")
    ),
)


@hookimpl
def cacheport_backends() -> list[Backend]:
    return [BACKEND]

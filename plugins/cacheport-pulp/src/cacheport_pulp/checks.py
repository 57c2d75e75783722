"""``cacheport doctor`` for Pulp: the server, the credentials, the repository, and the caches Pulp holds.

Imported only when doctor runs. pulp-glue talks to Pulp's REST API: it works from the server's own API spec
(operations, filters, paging, which auth each call needs), and its dry-run mode refuses any call that would
change something. The registry's /v2/ API, which pulp-glue does not cover, goes through cacheport's own OCI client
(:func:`cacheport.kit.registry_client`).
"""

from __future__ import annotations

import concurrent.futures
import re
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import requests
from pulp_glue.common.authentication import GlueAuthProvider
from pulp_glue.common.context import PulpContext
from pulp_glue.common.exceptions import PulpAuthenticationFailed, PulpEntityNotFound, PulpException
from pulp_glue.container.context import PulpContainerDistributionContext

from cacheport import Check, EntryRequest
from cacheport.errors import CacheportError, RegistryError
from cacheport.kit import insecure_hosts, mask, printable, registry_client, secret_forms
from cacheport_pulp import FORMAT, api_url, cache_ref, is_insecure, registry_url

CACHE_CONFIG = "application/vnd.buildkit.cacheconfig.v0"
TIMEOUT = 15
# A Pulp with thousands of repositories must not turn doctor into a crawl: look at this much, then say so.
MAX_DISTRIBUTIONS = 100
MAX_MANIFESTS = 300
SHOWN = 10


def run(request: EntryRequest, environ: Mapping[str, str]) -> list[Check]:
    """Every check, in order; a check that makes the later ones meaningless ends the list.

    What a server said is shown as one printable line, with the password (and its base64) masked.
    """
    _username, password, _names = _credentials(request.options, environ)
    forms = secret_forms([password] if password else [])
    return [Check(c.name, c.ok, printable(mask(c.detail, forms), 1000), printable(mask(c.fix, forms), 1000))
            for c in _checks(request, environ)]


def _checks(request: EntryRequest, environ: Mapping[str, str]) -> Iterator[Check]:
    opts = request.options
    ref = cache_ref(opts, request.context.project)
    base_path = ref.partition("/")[2]
    api = api_url(opts)
    forced = [name for name in FORMAT if opts.get(name) is False]
    if forced:
        yield Check("pulp export format", False, f"{', '.join(n + '=false' for n in forced)} is forced: Pulp "
                    "rejects that format, so builds store no cache", "remove force and the format options")
    else:
        yield Check("pulp export format", True, "image-manifest=true,oci-mediatypes=true (the format Pulp accepts)")

    username, password, names = _credentials(opts, environ)
    split = urllib.parse.urlsplit(api)
    verify = not is_insecure(opts)
    pulp = PulpContext(
        api_root=split.path.rstrip("/") + "/" if split.path.strip("/") else "/pulp/",
        api_kwargs={
            "base_url": f"{split.scheme}://{split.netloc}",
            "auth_provider": GlueAuthProvider(username=username, password=password) if password else None,
            "dry_run": True,  # doctor looks; pulp-glue refuses anything that would change the server
        },
        verify_ssl=verify,
    )

    try:
        # pulp-glue sets no timeout, so a host that swallows packets would hang doctor: a bounded probe first.
        requests.get(f"{split.scheme}://{split.netloc}/", timeout=TIMEOUT, verify=verify, allow_redirects=False,
                     stream=True).close()
        status = pulp.call("status_read")
    except (requests.RequestException, PulpException) as exc:
        yield Check("pulp server", False, f"no Pulp API at {api}: {_reason(exc)}",
                    f"check that Pulp runs and that api-url (now {api}) is its address")
        return
    if not isinstance(status, dict) or not isinstance(status.get("versions") or [], list):
        yield Check("pulp server", False, f"{api} answered the status request, but not as Pulp does",
                    f"check that api-url (now {api}) is Pulp's API")
        return
    versions = {v.get("component"): v.get("version") for v in status.get("versions") or [] if isinstance(v, dict)}
    connected = (status.get("database_connection") or {}).get("connected", True)
    if "container" not in versions:
        yield Check("pulp server", False, f"Pulp at {api} has no container plugin (versions: "
                    f"{', '.join(f'{k} {v}' for k, v in versions.items())})", "install pulp-container on the server")
        return
    if not connected:
        yield Check("pulp server", False, f"Pulp at {api} cannot reach its database", "ask the Pulp admins")
        return
    workers = len(status.get("online_workers") or [])
    yield Check("pulp server", True, f"{api}: pulpcore {versions.get('core', '?')}, pulp-container "
                f"{versions['container']}, {workers} worker(s) online")

    if not password or not username:
        missing = " and ".join(f"${n}" for n, value in names if not value) or "a user name"
        yield Check("pulp credentials", False, f"{missing} not set, so builds cannot log in and push",
                    f"export {' and '.join(n for n, _ in names) or 'the variables'} with a Pulp user's name and "
                    "password (or point username-env/password-env at yours)")
        return
    try:
        me = pulp.call("login_read")
    except PulpAuthenticationFailed:
        yield Check("pulp credentials", False, f"Pulp rejected user {username!r} with the password from "
                    f"${opts['password-env']}", f"check ${opts['password-env']} (and the user name)")
        return
    except PulpException as exc:
        yield Check("pulp credentials", False, f"could not log in as {username!r}: {_reason(exc)}",
                    "check the credentials and that the Pulp API answers")
        return
    yield Check("pulp credentials", True, f"logged in as {me.get('username', username)!r} "
                f"(from {' and '.join('$' + n for n, _ in names) or 'the username option'})")

    distributions = PulpContainerDistributionContext(pulp)
    found = None
    try:
        found = distributions.find(base_path=base_path)
    except PulpEntityNotFound:
        namespace = base_path.split("/")[0]
        yield Check("pulp repository", True, f"{ref} does not exist yet: the first push creates it (which needs "
                    f"permission to add repositories in namespace {namespace!r})")
    except PulpException as exc:
        yield Check("pulp repository", False, f"could not look up {ref}: {_reason(exc)}", "check the credentials")
        return
    else:
        yield Check("pulp repository", True, f"{ref} exists (distribution {found.get('name', base_path)!r})")

    registry = Registry(registry_url(opts), (username, password), verify, insecure=insecure_hosts(environ))
    try:
        listed = distributions.list(limit=MAX_DISTRIBUTIONS, offset=0, parameters={})
        others = sorted(d["base_path"] for d in listed if d.get("repository") and d["base_path"] != base_path)
        # Ours first, so that neither the limits nor a long list can hide it.
        paths = ([base_path] if found is not None else []) + others
        holding, denied = registry.caches(paths)
    except (PulpException, requests.RequestException, RegistryError) as exc:
        registry.close()
        yield Check("pulp caches", False, f"could not list the cache tags: {_reason(exc)}",
                    f"check that {registry.base}/v2/ answers with these credentials")
        return
    registry.close()
    if denied and len(denied) == len(paths):
        yield Check("pulp caches", False, f"{registry.base}/v2/ refused to show tags of all {len(paths)} "
                    f"distribution(s) (e.g. {denied[0]})", "check the credentials and the registry's token service")
        return
    own = holding.pop(base_path, [])
    parts = [f"{base_path} holds {', '.join(own)}" if own else f"{base_path} holds no cache yet"]
    if holding:
        shown = "; ".join(f"{path} ({', '.join(tags)})" for path, tags in list(holding.items())[:SHOWN])
        more = f" and {len(holding) - SHOWN} more" if len(holding) > SHOWN else ""
        parts.append(f"{len(holding)} other distribution(s) hold cache: {shown}{more}")
    if denied:
        parts.append(f"{len(denied)} distribution(s) not readable with these credentials")
    if len(listed) >= MAX_DISTRIBUTIONS:
        parts.append(f"looked at the first {MAX_DISTRIBUTIONS} distributions")
    if registry.fetched >= MAX_MANIFESTS:
        parts.append(f"stopped after {MAX_MANIFESTS} manifests")
    yield Check("pulp caches", True, "; ".join(parts))


def _credentials(opts: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[str, str, list[tuple[str, str]]]:
    """The user name and password as ``cacheport build`` would log in, and the variables they come from."""
    user_var, pass_var = str(opts.get("username-env") or ""), str(opts.get("password-env") or "")
    username = (environ.get(user_var, "") if user_var else "") or str(opts.get("username") or "")
    password = environ.get(pass_var, "") if pass_var else ""
    names = ([(user_var, username)] if user_var and not opts.get("username") else []) + (
        [(pass_var, password)] if pass_var else [])
    return username, password, names


def _reason(exc: BaseException) -> str:
    """One short line for an exception, e.g. ``Connection refused``, never a URL with credentials."""
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno:
        return errno.group(1).strip()
    if "SSLError" in text or "[SSL" in text:
        code = re.search(r"\[SSL: ([A-Z_]+)\]", text)
        what = code.group(1).lower().replace("_", " ") if code else "handshake failed"
        return (f"TLS failed ({what}); for a Pulp on plain HTTP write url = \"http://...\" or set insecure = true, "
                "for a self-signed certificate set insecure = true")
    if isinstance(exc, requests.Timeout) or "timed out" in text.lower():
        return f"no answer within {TIMEOUT} s"
    line = (text.strip().splitlines() or [type(exc).__name__])[0]
    return line if len(line) <= 200 else line[:197] + "..."


class Registry:
    """The OCI distribution API of Pulp, for finding the tags that hold cache: cacheport's own client (Basic or
    Bearer-token auth, tokens per repository), a few requests at a time.

    With Basic auth Pulp checks the password hash on every request (about 0.2 s each on a small server), and a
    listing takes one request per distribution and per tag.
    """

    def __init__(self, base: str, auth: tuple[str, str], verify: bool, workers: int = 8,
                 insecure: tuple[str, ...] = ()) -> None:
        self.base, self.workers = base.rstrip("/"), workers
        split = urllib.parse.urlsplit(self.base)
        self.client = registry_client(split.netloc.lower(), auth[0], auth[1], insecure=not verify or
                                      split.scheme == "http", insecure_hosts=insecure, timeout=TIMEOUT,
                                      scheme=split.scheme)
        self.fetched = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def tags(self, path: str) -> list[str] | None:
        """The repository's tags; None when these credentials may not read it."""
        try:
            return sorted(self.client.list_tags(path))
        except RegistryError as exc:
            if exc.status in (401, 403):
                return None
            raise

    def is_cache(self, path: str, tag: str) -> bool:
        """A tag is BuildKit cache when its manifest's config is a BuildKit cache config."""
        try:
            manifest = self.client.get_manifest(path, tag)
            doc = manifest.json if manifest is not None else None
        except CacheportError:
            return False
        config = doc.get("config") if isinstance(doc, dict) else None
        return isinstance(config, dict) and config.get("mediaType") == CACHE_CONFIG

    def _budget(self, first: bool) -> bool:
        """Take one manifest from the MAX_MANIFESTS budget; the first path (ours) is always looked at whole."""
        with self._lock:
            if not first and self.fetched >= MAX_MANIFESTS:
                return False
            self.fetched += 1
            return True

    def _scan(self, path: str, first: bool) -> list[str] | None:
        tags = self.tags(path)
        if tags is None:
            return None
        return [tag for tag in tags if self._budget(first) and self.is_cache(path, tag)]

    def caches(self, paths: list[str]) -> tuple[dict[str, list[str]], list[str]]:
        """The paths that hold cache with their cache tags, in the given order, and the paths we may not read.

        Looks at no more than MAX_MANIFESTS manifests, except on the first path.
        """
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.workers) as pool:
            scans = list(pool.map(self._scan, paths, [i == 0 for i in range(len(paths))]))
        found = {path: tags for path, tags in zip(paths, scans, strict=True) if tags}
        return found, [path for path, tags in zip(paths, scans, strict=True) if tags is None]

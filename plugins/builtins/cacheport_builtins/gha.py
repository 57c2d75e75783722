"""The ``gha`` backend: the GitHub Actions cache service, one scope per branch (and key)."""

from __future__ import annotations

from collections.abc import Mapping

from cacheport import Backend, BackendEntries, CacheEntry, Check, EntryRequest, Option, hookimpl
from cacheport.kit import cache_names, mode_attrs, mode_options
from cacheport.refs import slug

# buildx fills these in from the environment and silently drops a gha entry without them.
TOKEN_ENV = "ACTIONS_RUNTIME_TOKEN"
URL_ENVS = ("ACTIONS_CACHE_URL", "ACTIONS_RESULTS_URL")


def _entries(request: EntryRequest) -> BackendEntries:
    opts, ctx = request.options, request.context
    warnings: list[str] = []
    if opts["scope"]:
        scopes: tuple[str, ...] = (str(opts["scope"]),)
        export = scopes[0] if request.trust.writes_shared else None
    else:
        names = cache_names(ctx, request.key)
        project = slug(ctx.project)
        scopes = tuple(f"{project}-{n}" for n in names.imports)
        export = f"{project}-{names.export}" if names.export else None
        warnings += names.warnings
    common = {name: str(opts[name]) for name in ("version", "timeout", "repository") if opts[name] is not None}
    env = request.environ
    token_env = str(opts["ghtoken-env"] or "")
    if token_env and env.get(token_env):
        # BuildKit lists the repository's caches with it, so layers it already holds aren't uploaded again.
        common["ghtoken"] = env[token_env]
        if "repository" not in common and ctx.provider == "github":
            common["repository"] = ctx.project
    elif token_env:
        warnings.append(f"gha: {token_env} is not set, so BuildKit can't list the caches it already has")
    if not env.get(TOKEN_ENV) or not any(env.get(u) for u in URL_ENVS):
        warnings.append(
            f"gha cache needs {TOKEN_ENV} and {' or '.join(URL_ENVS)} in the build's environment (GitHub Actions "
            "sets them for actions, not for run steps: use crazy-max/ghaction-github-runtime); without them "
            "buildx silently drops the cache"
        )
    export_attrs = mode_attrs(opts)
    return BackendEntries(
        imports=[CacheEntry("gha", {"scope": s, **common}) for s in scopes],
        exports=[CacheEntry("gha", {"scope": export, **export_attrs, **common})] if export else [],
        warnings=warnings,
        secret_attrs={"ghtoken"},
    )


def _doctor(request: EntryRequest, environ: Mapping[str, str]) -> list[Check]:
    missing = [TOKEN_ENV] if not environ.get(TOKEN_ENV) else []
    if not any(environ.get(u) for u in URL_ENVS):
        missing.append(" or ".join(URL_ENVS))
    if missing:
        return [Check("gha environment", False, f"{', '.join(missing)} not set: buildx would silently drop the cache",
                      "in GitHub Actions, expose them with crazy-max/ghaction-github-runtime (run steps don't get "
                      "them); elsewhere gha cache cannot work")]
    return [Check("gha environment", True, f"{TOKEN_ENV} and a cache URL are set")]


BACKEND = Backend(
    name="gha",
    description="The GitHub Actions cache service: one scope per branch (and key).",
    options=(
        Option("scope", "Cache scope; default <project>-<key->-<branch>, one per branch with fallback. "
               "A fixed scope is one cache for every branch."),
        Option("version", "Cache service API version (buildx picks one from the environment when unset).",
               choices=("1", "2")),
        Option("timeout", "How long to wait for the cache service, as a Go duration (BuildKit's default: 10m)."),
        *mode_options(),
        Option("repository", "owner/repo, for cache service API v2's cache listing; default: this repository "
               "when ghtoken-env is set."),
        Option("ghtoken-env", "Environment variable holding a GitHub token (e.g. GITHUB_TOKEN) that BuildKit uses "
               "to list the repository's caches, so layers already cached aren't uploaded again. The token travels "
               "in the cache entry: it is redacted wherever a person reads it, and files holding it are mode 0600."),
    ),
    entries=_entries,
    cache_type="gha",
    doctor=_doctor,
    docs=(
        "The runtime token and cache URLs come only from the environment (ACTIONS_RUNTIME_TOKEN, ACTIONS_CACHE_URL, "
        "ACTIONS_RESULTS_URL, ACTIONS_CACHE_SERVICE_V2): buildx reads them itself, and cacheport never renders "
        "them. Without them buildx silently drops a gha entry, so cacheport warns loudly instead. GitHub lets a "
        "branch read its own caches and its base and default branch's, which is the fallback chain cacheport uses."
    ),
)


@hookimpl
def cacheport_backends() -> list[Backend]:
    return [BACKEND]

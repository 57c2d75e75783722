"""The hook specifications: the whole plugin API. Every hook is prefixed ``cacheport_``.

A plugin module implements any of these with ``@cacheport.hookimpl`` and is registered through the
``cacheport`` entry-point group, exactly like the built-in backends.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from cacheport.records import Backend, ContextProvider, Renderer

hookspec = pluggy.HookspecMarker("cacheport")


@hookspec
def cacheport_backends() -> Iterable[Backend]:
    """Return the cache backends this plugin provides.

    Backends are looked up by name, never by hook order; two plugins providing one name is an error.
    The ``entries`` function must be pure: compute entries from its request, change nothing. Who may write is
    the plan's decision, carried in ``request.trust``; the kit's ``cache_names`` follows it. A backend that
    stores caches somewhere reachable also gives a ``store`` (see :class:`cacheport.CacheStore`), so that
    ``seed``, ``status``, ``prune`` and ``doctor`` reach its caches; :mod:`cacheport.kit` builds the whole of a
    registry-type backend, store included, from one function (the example's second backend).

    Returns:
        An iterable of :class:`cacheport.Backend` records.

    Example::

        from cacheport import Backend, BackendEntries, CacheEntry, Option, hookimpl
        from cacheport.kit import RegistryCache, registry_backend, registry_options

        def _cache(request):
            return RegistryCache.from_options(f"{request.options['ref']}/{request.context.project}",
                                              request.options)

        def _entries(request):
            path = f"{request.options['root']}/{request.key or 'default'}"
            return BackendEntries(
                imports=[CacheEntry("local", {"src": path})],
                exports=[CacheEntry("local", {"dest": path, "mode": "max"})],
            )

        @hookimpl
        def cacheport_backends():
            return [Backend(name="nfs", description="A shared NFS directory",
                            options=[Option("root", "Mount point", default="/mnt/cache")],
                            entries=_entries, cache_type="local"),
                    # A registry-type backend: entries and store from the kit.
                    registry_backend("harbor", "Our Harbor", registry_options("harbor.example.com/cache",
                                                                             "Where caches live"), _cache)]
    """
    raise NotImplementedError


@hookspec
def cacheport_context_providers() -> Iterable[ContextProvider]:
    """Return CI-context providers: each recognises one CI system from the environment.

    Providers are tried by descending ``priority``; the first whose ``detect`` returns a Context wins.
    ``detect`` may read files (an event payload, ``.git/HEAD``) but must not change anything.

    Returns:
        An iterable of :class:`cacheport.ContextProvider` records.

    Example::

        from cacheport import Context, ContextProvider, hookimpl

        def _detect(env, cwd):
            if "BUILDKITE" not in env:
                return None
            return Context(provider="buildkite", project=env["BUILDKITE_PIPELINE_SLUG"],
                           branch=env.get("BUILDKITE_BRANCH"),
                           default_branch=env.get("BUILDKITE_PIPELINE_DEFAULT_BRANCH"),
                           target_branch=env.get("BUILDKITE_PULL_REQUEST_BASE_BRANCH") or None,
                           trusted=env.get("BUILDKITE_PULL_REQUEST_REPO", "") in ("", env.get("BUILDKITE_REPO")))

        @hookimpl
        def cacheport_context_providers():
            return [ContextProvider(name="buildkite", priority=50, detect=_detect)]
    """
    raise NotImplementedError


@hookspec
def cacheport_renderers() -> Iterable[Renderer]:
    r"""Return output formats for ``cacheport args --format NAME``.

    Renderers are looked up by name; two plugins providing one name is an error. ``render`` is pure: it turns
    a :class:`cacheport.plan.Plan` into text and touches nothing. Set ``secrets=False`` only when the output
    never carries a secret value (redact with ``plan.secret_attrs``); otherwise cacheport redacts the plan
    itself when the output goes to a terminal.

    Returns:
        An iterable of :class:`cacheport.Renderer` records.

    Example::

        from cacheport import Renderer, hookimpl

        def _properties(plan, options):
            cache_from = " ".join(e.format() for e in plan.imports)
            cache_to = " ".join(e.format() for e in plan.exports)
            return f"CACHE_FROM={cache_from}\nCACHE_TO={cache_to}\n"

        @hookimpl
        def cacheport_renderers():
            return [Renderer(name="jenkins", description="A Jenkins properties file", render=_properties)]
    """
    raise NotImplementedError

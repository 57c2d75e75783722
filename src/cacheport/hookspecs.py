"""The hook specifications: the whole plugin API. Every hook is prefixed ``cacheport_``.

A plugin module implements any of these with ``@cacheport.hookimpl`` and is registered through the
``cacheport`` entry-point group, exactly like the built-in backends.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from cacheport.backend import Backend
from cacheport.context import ContextProvider

hookspec = pluggy.HookspecMarker("cacheport")


@hookspec
def cacheport_backends() -> Iterable[Backend]:
    """Return the cache backends this plugin provides.

    Backends are looked up by name, never by hook order; two plugins providing one name is an error.
    The ``entries`` function must be pure: compute entries from its request, change nothing.

    Returns:
        An iterable of :class:`cacheport.Backend` records.

    Example::

        from cacheport import Backend, BackendEntries, CacheEntry, Option, hookimpl

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
                            entries=_entries, cache_type="local")]
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

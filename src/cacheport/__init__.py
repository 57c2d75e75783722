"""cacheport: portable BuildKit cache configuration.

The public API for plugin authors lives here (the records and ``hookimpl``), in :mod:`cacheport.kit`
(helpers registry-type backends share) and :mod:`cacheport.refs`; see docs/plugins.md.
"""

from __future__ import annotations

import pluggy

from cacheport.context import Context
from cacheport.entry import CacheEntry
from cacheport.records import (
    Backend,
    BackendEntries,
    CacheStore,
    Check,
    ContextProvider,
    EntryRequest,
    Login,
    Option,
    Renderer,
    RenderOptions,
    StoreSession,
    Swap,
)

__version__ = "0.1.0"

#: The version of the plugin API (the hooks, the records, :mod:`cacheport.kit` and :mod:`cacheport.refs`) this
#: cacheport implements. A plugin may say which one it was written against with a module attribute
#: ``cacheport_api = "0.2"``; ``cacheport plugins`` shows it. See docs/plugins.md#api-version.
API_VERSION = "0.2"

#: Decorate plugin functions with this to implement a cacheport hook.
hookimpl = pluggy.HookimplMarker("cacheport")

__all__ = [
    "API_VERSION",
    "Backend",
    "BackendEntries",
    "CacheEntry",
    "CacheStore",
    "Check",
    "Context",
    "ContextProvider",
    "EntryRequest",
    "Login",
    "Option",
    "RenderOptions",
    "Renderer",
    "StoreSession",
    "Swap",
    "__version__",
    "hookimpl",
]

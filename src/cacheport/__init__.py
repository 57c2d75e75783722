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

#: Decorate plugin functions with this to implement a cacheport hook.
hookimpl = pluggy.HookimplMarker("cacheport")

__all__ = [
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

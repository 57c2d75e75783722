"""cacheport: portable BuildKit cache configuration.

The public API for plugin authors lives here; see docs/plugins.md.
"""

from __future__ import annotations

import pluggy

from cacheport.backend import Backend, BackendEntries, Check, EntryRequest, Login, Option, Swap
from cacheport.context import Context, ContextProvider
from cacheport.entry import CacheEntry

__version__ = "0.1.0"

#: Decorate plugin functions with this to implement a cacheport hook.
hookimpl = pluggy.HookimplMarker("cacheport")

__all__ = [
    "Backend",
    "BackendEntries",
    "CacheEntry",
    "Check",
    "Context",
    "ContextProvider",
    "EntryRequest",
    "Login",
    "Option",
    "Swap",
    "__version__",
    "hookimpl",
]

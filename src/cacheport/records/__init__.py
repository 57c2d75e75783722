"""Every record of the plugin API: what a plugin hands the core (backends with their schema, entries, store and
doctor; context providers; renderers; a doctor's checks) and what the core hands a plugin (the CI context and
the trust decision in an entry request, the plan a renderer renders, the settings it shows). The plugin API is
these records plus the hooks in hookspecs.py.

Import them from here; the modules of this package only sort them by subject: ``job`` (settings, context,
trust), ``entries`` (what a backend is asked and answers), ``store`` (where caches are kept, and the OCI
content a store session moves), ``plan`` (what a renderer renders) and ``hooks`` (what the hooks yield).

Records only, and every annotation resolves at runtime (``typing.get_type_hints``): nothing here imports a
module that imports this package. The core's logic lives in context.py, trust.py, plan.py and render.py.
"""

from __future__ import annotations

from cacheport.records.entries import (
    OPTION_TYPES,
    BackendEntries,
    Check,
    EntryRequest,
    Login,
    Option,
    Swap,
    normalize_key,
)
from cacheport.records.hooks import Backend, ContextProvider, Renderer, RenderOptions
from cacheport.records.job import Context, Setting, Source, Trust
from cacheport.records.plan import Migration, Plan, ShownSetting
from cacheport.records.store import BlobSource, CacheStore, Descriptor, Manifest, StoreSession

__all__ = [
    "OPTION_TYPES",
    "Backend",
    "BackendEntries",
    "BlobSource",
    "CacheStore",
    "Check",
    "Context",
    "ContextProvider",
    "Descriptor",
    "EntryRequest",
    "Login",
    "Manifest",
    "Migration",
    "Option",
    "Plan",
    "RenderOptions",
    "Renderer",
    "Setting",
    "ShownSetting",
    "Source",
    "StoreSession",
    "Swap",
    "Trust",
    "normalize_key",
]

"""Finding and loading plugins: the pluggy manager, entry points, and looking backends and renderers up by name.

Each third-party plugin loads inside its own try/except: a broken plugin is a warning, never a dead CLI; a
backend function that raises later is one error line naming its plugin (:meth:`Plugins.guarded`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any, TypeVar

import attrs
import pluggy

from cacheport import hookspecs
from cacheport.errors import CacheportError, PluginError, UnknownBackendError, did_you_mean
from cacheport.records import Backend, ContextProvider, Renderer

T = TypeVar("T")

ENTRY_POINT_GROUP = "cacheport"
BUILTIN_DISTRIBUTION = "cacheport"


@attrs.frozen
class PluginInfo:
    """One plugin as ``cacheport plugins`` shows it.

    Attributes:
        name: the entry-point name (or the name it was registered under).
        distribution: the installed distribution that provides it.
        version: that distribution's version.
        source: ``built-in``, ``entry point`` or ``registered`` (by code, as tests do).
        module: the module that implements the hooks.
        error: why it failed to load, or None.
        traceback: the full traceback of that failure, shown with ``-v``.
        api: the plugin API version it says it was written against (its module's ``cacheport_api``; a
            built-in's is :data:`cacheport.API_VERSION`), or None when it says none (written against 0.1).
    """

    name: str
    distribution: str
    version: str
    source: str
    module: str
    error: str | None = None
    traceback: str | None = attrs.field(default=None, repr=False)
    api: str | None = None


def declared_api(module: object, info: PluginInfo) -> str | None:
    """The plugin API version a plugin says it targets (``cacheport_api``); built-ins target this one."""
    from cacheport import API_VERSION

    if info.source == "built-in":
        return API_VERSION
    declared = getattr(module, "cacheport_api", None)
    return str(declared) if declared is not None else None


def no_store(backend: Backend, command: str) -> str:
    """One line: ``command`` can't reach this backend's caches, and, for a registry-type backend written without
    a store (as the 0.1 docs showed), which kit function gives it one."""
    line = (f"backend {backend.name!r} keeps its cache where cacheport can't reach it "
            f"({backend.cache_type} storage offers no store), so {command} can't work on it")
    if backend.cache_type == "registry":
        line += ("; its author can add one: store=lambda request: cacheport.kit.registry_store(cache, request), "
                 "or build the whole backend with cacheport.kit.registry_backend")
    return line


def new_manager() -> pluggy.PluginManager:
    """A plugin manager with cacheport's hook specs and no plugins."""
    pm = pluggy.PluginManager("cacheport")
    pm.add_hookspecs(hookspecs)
    return pm


class Plugins:
    """The loaded plugins and what they provide. Build one with :func:`load` or :meth:`from_modules`."""

    def __init__(self, pm: pluggy.PluginManager, strict: bool = False) -> None:
        self.pm = pm
        self.strict = strict
        self.infos: list[PluginInfo] = []
        self._by_plugin: dict[str, PluginInfo] = {}

    @classmethod
    def from_modules(cls, modules: Iterable[ModuleType | object], *, strict: bool = True) -> Plugins:
        """Plugins from objects in hand (tests, embedding), with no entry-point discovery."""
        plugins = cls(new_manager(), strict=strict)
        for module in modules:
            name = getattr(module, "__name__", repr(module))
            plugins.register(module, PluginInfo(name, "(in process)", "", "registered", name))
        return plugins

    @property
    def failures(self) -> list[PluginInfo]:
        return [info for info in self.infos if info.error]

    def register(self, module: object, info: PluginInfo) -> None:
        """Register one plugin; a plugin with a misspelled hook is rejected like one that fails to import."""
        try:
            self.pm.register(module, name=info.name)
            try:
                self.pm.check_pending()
            except pluggy.PluginValidationError:
                self.pm.unregister(module)
                raise
        except Exception as exc:
            self._failed(info, exc)
            return
        info = attrs.evolve(info, api=declared_api(module, info))
        self.infos.append(info)
        self._by_plugin[info.name] = info

    def _failed(self, info: PluginInfo, exc: BaseException) -> None:
        import traceback

        if self.strict:
            raise exc
        self.infos.append(
            attrs.evolve(info, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        )

    def _collect(self, hook_name: str, kind: type) -> list[tuple[PluginInfo, Any]]:
        """Call one hook on each plugin separately, so one plugin's bug can't hide the others' answers."""
        found: list[tuple[PluginInfo, Any]] = []
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            info = self._by_plugin.get(impl.plugin_name) or PluginInfo(impl.plugin_name, "?", "", "registered", "?")
            try:
                items = list(impl.function() or ())
                for item in items:
                    if not isinstance(item, kind):
                        raise TypeError(f"{hook_name} returned {type(item).__name__}, expected {kind.__name__}")
            except Exception as exc:
                import traceback

                if self.strict:
                    raise PluginError(f"plugin {info.name!r} ({info.distribution}): {hook_name} failed: {exc}") from exc
                broken = attrs.evolve(
                    info, error=f"{hook_name} failed: {type(exc).__name__}: {exc}", traceback=traceback.format_exc()
                )
                self.infos = [broken if i is info else i for i in self.infos]
                continue
            found.extend((info, item) for item in items)
        return found

    @functools.cached_property
    def _backends(self) -> list[tuple[PluginInfo, Backend]]:
        return self._collect("cacheport_backends", Backend)

    @functools.cached_property
    def _renderers(self) -> list[tuple[PluginInfo, Renderer]]:
        return self._collect("cacheport_renderers", Renderer)

    @staticmethod
    def _by_name(found: list[tuple[PluginInfo, T]], what: str) -> dict[str, T]:
        owners: dict[str, PluginInfo] = {}
        out: dict[str, T] = {}
        for info, item in found:
            name = str(getattr(item, "name", ""))
            if name in out:
                raise PluginError(
                    f"{what} {name!r} is provided twice: by {_describe(owners[name])} and by {_describe(info)}; "
                    "uninstall one, or leave one out of CACHEPORT_LOAD_PLUGINS"
                )
            owners[name] = info
            out[name] = item
        return dict(sorted(out.items()))

    def backends(self) -> dict[str, Backend]:
        """All backends by name; two plugins providing one name is an error that names both."""
        return self._by_name(self._backends, "backend")

    def backend_owners(self) -> dict[str, PluginInfo]:
        """Which plugin provides each backend (first one, when duplicated)."""
        owners: dict[str, PluginInfo] = {}
        for info, backend in self._backends:
            owners.setdefault(backend.name, info)
        return owners

    def renderer_owners(self) -> dict[str, PluginInfo]:
        """Which plugin provides each output format (first one, when duplicated)."""
        owners: dict[str, PluginInfo] = {}
        for info, renderer in self._renderers:
            owners.setdefault(renderer.name, info)
        return owners

    def backend(self, name: str) -> Backend:
        """The backend called ``name`` (case-insensitive), or an error listing those that exist."""
        return _lookup(self.backends(), name, "backend")

    def renderers(self) -> dict[str, Renderer]:
        """All output formats by name; two plugins providing one name is an error that names both."""
        return self._by_name(self._renderers, "output format")

    def renderer(self, name: str) -> Renderer:
        """The output format called ``name``, or an error listing those that exist."""
        return _lookup(self.renderers(), name, "output format")

    def guarded(self, item: Backend | Renderer, what: str, call: Callable[[], T]) -> T:
        """Run one of a backend's (or renderer's) functions; a bug in it becomes one error line naming the plugin.

        Our own errors (a plugin's ConfigError about its options) pass as they are. With
        ``CACHEPORT_STRICT_PLUGINS=1`` the original exception is raised instead.
        """
        try:
            return call()
        except CacheportError:
            raise
        except Exception as exc:
            if self.strict:
                raise
            found = self._backends if isinstance(item, Backend) else self._renderers
            info = next((i for i, x in found if x is item), None)
            source = _describe(info) if info else "an unknown plugin"
            kind = "backend" if isinstance(item, Backend) else "output format"
            text = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            raise PluginError(f"{kind} {item.name!r} ({source}) failed in {what}: {text} "
                              "(-v shows the traceback; report it to the plugin's authors)") from exc

    def context_providers(self) -> list[ContextProvider]:
        return [provider for _info, provider in self._collect("cacheport_context_providers", ContextProvider)]


#: Backends the docs describe that come in their own distribution: what to install when one is missing.
KNOWN_PLUGINS = {"pulp": "cacheport-pulp"}


def _lookup(found: Mapping[str, T], name: str, what: str) -> T:
    wanted = name.strip().lower()
    if wanted not in found:
        if what == "backend" and wanted in KNOWN_PLUGINS:
            dist = KNOWN_PLUGINS[wanted]
            hint = (f" (it comes from the {dist} plugin, which is not installed or not loaded: install {dist}, "
                    f"from a checkout of cacheport `pip install ./plugins/{dist}`)")
        else:
            hint = did_you_mean(wanted, found)
        raise UnknownBackendError(
            f"unknown {what} {name!r}{hint}; available: {', '.join(found) or '(none: no plugins loaded)'}"
        )
    return found[wanted]


def _describe(info: PluginInfo) -> str:
    version = f" {info.version}" if info.version else ""
    return f"plugin {info.name!r} from {info.distribution}{version}"


def _allowlist(environ: Mapping[str, str]) -> set[str] | None:
    raw = environ.get("CACHEPORT_LOAD_PLUGINS")
    if raw is None:
        return None
    return {part.strip().lower() for part in raw.split(",") if part.strip()}


def load(
    environ: Mapping[str, str] | None = None,
    entry_points: Callable[[], Iterable[Any]] | None = None,
) -> Plugins:
    """Load the built-in plugins and every allowed third-party plugin from the ``cacheport`` entry points.

    ``CACHEPORT_LOAD_PLUGINS`` (comma-separated entry-point or distribution names; empty means none) limits
    third-party plugins; built-ins always load. ``CACHEPORT_STRICT_PLUGINS=1`` turns load failures into errors.
    """
    environ = os.environ if environ is None else environ
    strict = environ.get("CACHEPORT_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes", "on")
    plugins = Plugins(new_manager(), strict=strict)
    allow = _allowlist(environ)
    if entry_points is None:
        from importlib.metadata import entry_points as _eps

        def entry_points() -> Iterable[Any]:
            return _eps(group=ENTRY_POINT_GROUP)

    for ep in sorted(entry_points(), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        dist_name = dist.name if dist is not None else "?"
        builtin = dist_name.lower() == BUILTIN_DISTRIBUTION
        if not builtin and allow is not None and not ({ep.name.lower(), dist_name.lower()} & allow):
            continue
        info = PluginInfo(
            name=ep.name,
            distribution=dist_name,
            version=dist.version if dist is not None else "",
            source="built-in" if builtin else "entry point",
            module=ep.value,
        )
        try:
            module = ep.load()
        except Exception as exc:
            plugins._failed(info, exc)
            continue
        plugins.register(module, info)
    return plugins


@functools.cache
def default_plugins() -> Plugins:
    """The process-wide plugins, loaded on first use (never at import time)."""
    return load()

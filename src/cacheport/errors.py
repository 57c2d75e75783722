"""cacheport's exception classes. Every error a user can cause is one of these; the CLI prints it as one line."""

from __future__ import annotations


class CacheportError(Exception):
    """Base class: a problem the user can fix; printed as one line, exit status 2."""

    exit_code = 2


class EntryError(CacheportError, ValueError):
    """A cache entry string does not follow buildx's CSV rules."""


class ConfigError(CacheportError):
    """A setting in a file, the environment or a flag has a wrong name, type or value."""


class PluginError(CacheportError):
    """A plugin is broken, duplicated or not installed."""


class UnknownBackendError(PluginError):
    """A backend name matches no registered backend."""


class ContextError(CacheportError):
    """The CI environment is incomplete or contradictory."""


class RenderError(CacheportError):
    """A plan cannot be expressed in the requested output format."""

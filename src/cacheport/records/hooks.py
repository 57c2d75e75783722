"""What the hooks yield: a backend, a context provider, a renderer (with what it may be told)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import attrs

from cacheport.records.entries import BackendEntries, Check, EntryRequest, Option, _strings, normalize_key
from cacheport.records.job import Context
from cacheport.records.plan import Plan
from cacheport.records.store import CacheStore

_BACKEND_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")


def _lower_name(value: str) -> str:
    value = str(value).lower()
    if value == "migration":
        raise ValueError("'migration' is reserved for the [migration] table and cannot name a backend")
    if not _BACKEND_NAME.match(value):
        raise ValueError(f"backend name {value!r} must be a lower-case word (letters, digits, '-')")
    return value


def _options(values: Iterable[Option]) -> tuple[Option, ...]:
    return tuple(values)




@attrs.frozen
class Backend:
    """A cache backend, as a plugin registers it.

    Attributes:
        name: what users type in ``backend = "..."``; lower-case.
        description: one line for listings.
        options: the option schema.
        entries: computes the imports and exports for a request; must not touch the host.
        cache_type: the BuildKit cache type it renders (``registry``, ``local``, ...).
        docs: a longer explanation for ``cacheport backends NAME`` and the docs.
        doctor: optional checks against the real server for ``cacheport doctor``:
            ``(request, environ) -> iterable of Check``. It may use the network; it must not change anything
            it did not create, and must never put a secret in a Check.
        store: optional ``request -> CacheStore``: where the caches are, for ``seed``, ``status``, ``prune``
            and doctor's format probe. Without one those commands say, in one line, that they can't reach it.
            Computing the store must not touch the network; opening it may.
    """

    name: str = attrs.field(converter=_lower_name)
    description: str
    options: tuple[Option, ...] = attrs.field(converter=_options)
    entries: Callable[[EntryRequest], BackendEntries]
    cache_type: str = "registry"
    docs: str = ""
    doctor: Callable[[EntryRequest, Mapping[str, str]], Iterable[Check]] | None = None
    store: Callable[[EntryRequest], CacheStore] | None = None

    def option(self, key: str) -> Option | None:
        """The option matching a user-typed key, or None."""
        wanted = normalize_key(key)
        return next((o for o in self.options if o.key == wanted), None)


@attrs.frozen
class ContextProvider:
    """A plugin's detector for one CI system.

    Attributes:
        name: the provider's name, shown by ``cacheport explain``.
        detect: ``(environ, cwd) -> Context | None``; None means "not this CI".
        priority: higher is tried first; the built-in local provider is 0 and always matches.
    """

    name: str
    detect: Callable[[Mapping[str, str], Path], Context | None]
    priority: int = 100


@attrs.frozen
class RenderOptions:
    """What a renderer may be told besides the plan.

    Attributes:
        targets: bake targets to configure (``--target``); renderers that know no targets ignore them.
    """

    targets: tuple[str, ...] = attrs.field(default=("default",), converter=_strings)


@attrs.frozen
class Renderer:
    """An output format for ``cacheport args --format NAME``.

    Attributes:
        name: what users type after ``--format``; lower-case.
        description: one line for ``--help`` and the docs.
        render: ``(plan, options) -> text``; pure: no I/O, no environment.
        secrets: the output carries secret values as they are (a build reads it). On a terminal cacheport
            then renders a redacted plan instead, and files it writes are mode 0600. False means the renderer
            redacts secrets itself (for people: json, explain).
        append_to: an environment variable naming a file the output is appended to when no ``-o`` is given
            (``GITHUB_OUTPUT``); empty for stdout.
    """

    name: str = attrs.field(converter=_lower_name)
    description: str
    render: Callable[[Plan, RenderOptions], str]
    secrets: bool = True
    append_to: str = ""



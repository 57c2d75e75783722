"""The frozen records a backend plugin hands to the core: its option schema and the entries it produces.

Records only; the core's logic for choosing and combining backends lives in plan.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from cacheport.context import Context
from cacheport.entry import CacheEntry

_BACKEND_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")
OPTION_TYPES: dict[type, str] = {str: "string", bool: "boolean", int: "integer"}


def _lower_name(value: str) -> str:
    value = str(value).lower()
    if value == "migration":
        raise ValueError("'migration' is reserved for the [migration] table and cannot name a backend")
    if not _BACKEND_NAME.match(value):
        raise ValueError(f"backend name {value!r} must be a lower-case word (letters, digits, '-')")
    return value


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def _check_option_type(_inst: object, _attr: object, value: type[Any]) -> None:
    if value not in OPTION_TYPES:
        raise ValueError(f"option type must be str, bool or int, not {value!r}")


@attrs.frozen
class Option:
    """One setting a backend accepts, in ``[tool.cacheport.<backend>]`` or the environment.

    Attributes:
        name: the key users write; ``-`` and ``_`` are interchangeable when matching.
        help: one sentence for ``cacheport backends`` and the docs.
        type: ``str``, ``bool`` or ``int``.
        default: the value when nobody sets it; strings may use ``${VAR}``; None means "computed" (see help).
        choices: the allowed values, when there is a fixed set.
        secret: the value never reaches human-readable output (``***``).
        required: there is no usable default; an unset value is an error.
    """

    name: str
    help: str
    type: type[Any] = attrs.field(default=str, validator=_check_option_type)
    default: Any = None
    choices: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    secret: bool = False
    required: bool = False

    @property
    def key(self) -> str:
        """The name as matched against user input."""
        return normalize_key(self.name)


def normalize_key(name: str) -> str:
    """Fold a user-typed key so that ``image_manifest`` and ``Image-Manifest`` match ``image-manifest``."""
    return name.strip().lower().replace("_", "-")


@attrs.frozen
class EntryRequest:
    """What a backend gets to compute its entries.

    Attributes:
        options: the backend's validated options, by schema name, with defaults applied.
        context: where we run (branch, default branch, MR target, trust).
        key: the scope for refs (a target, platform or matrix axis), or None.
        cache_dir: a directory this user's caches may live in (``$XDG_CACHE_HOME/cacheport``).
        environ: the environment, read-only, for backends whose entries depend on it (gha's token, a secret
            named by an option). Never shown.
    """

    options: Mapping[str, Any]
    context: Context
    key: str | None = None
    cache_dir: str = ""
    environ: Mapping[str, str] = attrs.field(factory=dict, repr=False)



@attrs.frozen
class Swap:
    """After a successful build, the directory ``new`` replaces ``current`` (keeps local caches small).

    Attributes:
        new: where the build exported to.
        current: where the next build imports from.
    """

    new: str
    current: str


@attrs.frozen
class Login:
    """How to log in to a registry before building: names of environment variables, never their values.

    Attributes:
        registry: the registry host (``host[:port]``).
        password_env: the variable holding the password or token.
        username_env: the variable holding the user name; used when set.
        username: the user name when ``username_env`` is empty or unset.
    """

    registry: str
    password_env: str
    username_env: str = ""
    username: str = ""


@attrs.frozen
class BackendEntries:
    """A backend's answer: the cache imports, in fallback order, and the exports.

    Attributes:
        imports: ``--cache-from`` entries, most specific first.
        exports: ``--cache-to`` entries.
        swaps: directory swaps to make after a successful build.
        warnings: one-line messages for the user.
        secret_attrs: attribute names whose values must be redacted wherever a person reads them.
        logins: registry logins to try before a build, in order; the first whose variables are set is used.
        tags: image tags the build must push for the cache to be stored (the ``inline`` backend).
    """

    imports: tuple[CacheEntry, ...] = attrs.field(default=(), converter=tuple)
    exports: tuple[CacheEntry, ...] = attrs.field(default=(), converter=tuple)
    swaps: tuple[Swap, ...] = attrs.field(default=(), converter=tuple)
    warnings: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    secret_attrs: frozenset[str] = attrs.field(default=frozenset(), converter=frozenset)
    logins: tuple[Login, ...] = attrs.field(default=(), converter=tuple)
    tags: tuple[str, ...] = attrs.field(default=(), converter=tuple)


@attrs.frozen
class Check:
    """One diagnosis by ``cacheport doctor``.

    Attributes:
        name: what was checked, e.g. ``credentials``.
        ok: whether it passed.
        detail: what was found, in one line; never a secret.
        fix: what to do about a failure.
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""


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
    """

    name: str = attrs.field(converter=_lower_name)
    description: str
    options: tuple[Option, ...] = attrs.field(converter=tuple)
    entries: Callable[[EntryRequest], BackendEntries]
    cache_type: str = "registry"
    docs: str = ""
    doctor: Callable[[EntryRequest, Mapping[str, str]], Iterable[Check]] | None = None

    def option(self, key: str) -> Option | None:
        """The option matching a user-typed key, or None."""
        wanted = normalize_key(key)
        return next((o for o in self.options if o.key == wanted), None)

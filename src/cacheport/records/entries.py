"""What a backend is asked (its option schema, the entry request) and what it answers: entries, swaps, logins,
and a doctor's checks."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from cacheport.entry import CacheEntry
from cacheport.records.job import Context, Trust

OPTION_TYPES: dict[type, str] = {str: "string", bool: "boolean", int: "integer"}


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


# One converter per element type: attrs' mypy plugin types __init__ from the converter's argument.
def _entries(values: Iterable[CacheEntry]) -> tuple[CacheEntry, ...]:
    return tuple(values)


def _swaps(values: Iterable[Swap]) -> tuple[Swap, ...]:
    return tuple(values)


def _logins(values: Iterable[Login]) -> tuple[Login, ...]:
    return tuple(values)


def _names(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


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
    # builtins.type: inside the class, ``type`` is this field, so get_type_hints would resolve it to that.
    type: builtins.type[Any] = attrs.field(default=str, validator=_check_option_type)
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
        context: where we run (branch, default branch, MR target), with the plan's trust decision in it
            (read it as :attr:`trust`).
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

    @property
    def trust(self) -> Trust:
        """The plan's trust decision for this job (the ``trust`` and ``trust-events`` settings applied): which
        branches to read, which one to write, and whether to write at all (:attr:`Trust.writes`,
        :attr:`Trust.writes_shared`). A backend follows it and never decides again."""
        if self.context.trust is None:
            raise ValueError("this request's context carries no trust decision: requests come from the plan "
                             "(cacheport.plan.build_plan); a hand-made one needs "
                             "attrs.evolve(context, trust=cacheport.trust.decide(context, mode, events))")
        return self.context.trust


@attrs.frozen
class Swap:
    """After a successful build, the directory ``new`` replaces ``current`` (keeps local caches small).

    Attributes:
        new: where the build exported to.
        current: where the next build imports from.
        replace: False for a cache moving in from an older place instead: it moves before the build reads
            ``current``, and only while ``current`` holds nothing (``cacheport args``, ``build`` and ``rotate``).
    """

    new: str
    current: str
    replace: bool = True


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

    imports: tuple[CacheEntry, ...] = attrs.field(default=(), converter=_entries)
    exports: tuple[CacheEntry, ...] = attrs.field(default=(), converter=_entries)
    swaps: tuple[Swap, ...] = attrs.field(default=(), converter=_swaps)
    warnings: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    secret_attrs: frozenset[str] = attrs.field(default=frozenset(), converter=_names)
    logins: tuple[Login, ...] = attrs.field(default=(), converter=_logins)
    tags: tuple[str, ...] = attrs.field(default=(), converter=_strings)


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


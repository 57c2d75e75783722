"""The plan a renderer renders, with the settings that shaped it and the migration in force."""

from __future__ import annotations

import attrs

from cacheport.entry import CacheEntry
from cacheport.records.entries import EntryRequest, Login, Swap
from cacheport.records.job import Context, Setting


@attrs.frozen
class ShownSetting:
    """A setting as ``explain`` shows it.

    Attributes:
        name: ``backend``, ``key``, ``read-only`` or ``<backend>.<option>``.
        setting: the value and where it came from.
        secret: show the value as ``***``.
    """

    name: str
    setting: Setting
    secret: bool = False


@attrs.frozen
class Migration:
    """A migration that is being read (dual-read) or written (dual-write) while the plan is in force.

    Attributes:
        old: the backend the cache is moving away from.
        phase: ``dual-read`` or ``dual-write``.
        request: what the old backend was asked (its options, the same context and key).
    """

    old: str
    phase: str
    request: EntryRequest


@attrs.frozen
class Plan:
    """The cache plan for one build.

    Attributes:
        context: where we run, with the trust decision (``context.trust``) every backend was asked under.
        backend: the selected backend's name.
        imports: ``--cache-from`` entries, tried in this order.
        exports: ``--cache-to`` entries.
        swaps: directory swaps to make after a successful build.
        warnings: one-line messages for the user.
        settings: every setting that shaped the plan, with its source.
        secret_attrs: entry attributes to redact wherever a person reads them.
        logins: registry logins to try before a build (variable names, not values).
        tags: image tags the build must push for the cache to be stored (inline cache).
        read_only: exports were withheld: the trust decision lets this job write nothing, or ``read-only`` is
            set. What the plan did, not a decision to make again.
        request: what the backend was asked, for follow-up questions (its store, ``cacheport doctor``).
        migration: the migration being read or written, or None (none, or in cutover).
    """

    context: Context
    backend: str
    imports: tuple[CacheEntry, ...]
    exports: tuple[CacheEntry, ...]
    swaps: tuple[Swap, ...] = ()
    warnings: tuple[str, ...] = ()
    settings: tuple[ShownSetting, ...] = ()
    secret_attrs: frozenset[str] = frozenset()
    logins: tuple[Login, ...] = ()
    tags: tuple[str, ...] = ()
    read_only: bool = False
    request: EntryRequest | None = None
    migration: Migration | None = None


"""Every record of the plugin API: what a plugin hands the core (backends with their schema, entries, store and
doctor; context providers; renderers; a doctor's checks) and what the core hands a plugin (the CI context and
the trust decision in an entry request, the plan a renderer renders, the settings it shows). The plugin API is
these records plus the hooks in hookspecs.py.

Records only, and every annotation resolves at runtime (``typing.get_type_hints``): nothing here imports a
module that imports this one. The core's logic lives in context.py, trust.py, plan.py and render.py.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from cacheport.entry import CacheEntry

if TYPE_CHECKING:
    # Only StoreSession's methods name these; importing oci.format here would slow every `cacheport args`.
    from cacheport.oci.format import Descriptor, Manifest

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


# One converter per element type: attrs' mypy plugin types __init__ from the converter's argument.
def _entries(values: Iterable[CacheEntry]) -> tuple[CacheEntry, ...]:
    return tuple(values)


def _swaps(values: Iterable[Swap]) -> tuple[Swap, ...]:
    return tuple(values)


def _logins(values: Iterable[Login]) -> tuple[Login, ...]:
    return tuple(values)


def _options(values: Iterable[Option]) -> tuple[Option, ...]:
    return tuple(values)


def _names(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


def _check_option_type(_inst: object, _attr: object, value: type[Any]) -> None:
    if value not in OPTION_TYPES:
        raise ValueError(f"option type must be str, bool or int, not {value!r}")


# --- what the core hands a plugin: settings, the CI context and the trust decision -----------------------


@attrs.frozen
class Source:
    """Where a value came from.

    Attributes:
        level: ``default``, ``file``, ``env`` or ``cli`` (in rising precedence).
        detail: for a person: ``pyproject.toml [tool.cacheport.registry] ref``, ``CACHEPORT_KEY``, ...
        key: the key as the user wrote it.
    """

    level: str
    detail: str
    key: str = ""

    def __str__(self) -> str:
        return self.detail


@attrs.frozen
class Setting:
    """A value and its source.

    Attributes:
        value: the typed value (str, bool, int) or None when unset.
        source: where it came from.
    """

    value: Any
    source: Source


@attrs.frozen
class Trust:
    """What the trust rules (:mod:`cacheport.trust`, one table) decided for one job: the one answer to "may this
    job write, and what?". The plan decides it once, with the ``trust`` and ``trust-events`` settings, and a
    backend reads it as :attr:`EntryRequest.trust`.

    Attributes:
        rule: the id of the rule that decided, e.g. ``github:issue_comment``.
        reason: one line for people: what the job is, and what it may write.
        mode: the ``trust`` setting in force for this job: ``branch`` or ``protected``.
        imports: branches to import from, most specific first.
        export: the branch whose cache this job writes, or None.
        writes: the job may write at all (a fixed name every branch shares, or ``latest`` when no branch is
            known); False for forks, tags and read-only events.
        protected: the job writes as a protected pipeline (its ref is protected and the code built is that
            ref's). Under mode ``protected`` only such jobs write the names protected jobs read.
        signed: ``trust = "signed"``: the names are mode ``protected``'s, and a protected pipeline also signs
            what it exports and imports only caches signed by an allowed key (``docs/signed-caches.md``).
    """

    rule: str
    reason: str
    mode: str = "branch"
    imports: tuple[str, ...] = ()
    export: str | None = None
    writes: bool = True
    protected: bool = False
    signed: bool = False

    @property
    def writes_shared(self) -> bool:
        """Whether the job may write a cache every branch shares (a fixed ``ref:tag``, ``name`` or ``scope``):
        any job that writes at all, but under ``trust = "protected"`` only a protected pipeline, since protected
        builds read that one cache too."""
        return self.writes and (self.mode != "protected" or self.protected)


@attrs.frozen
class Context:
    """The facts about the current job that decide cache refs.

    Attributes:
        provider: which CI system was detected (``gitlab``, ``github``, ``local``, ...).
        project: the project path or name, for example ``group/app``.
        branch: the branch being built, or None (detached, tag, no git).
        default_branch: the project's default branch, when known.
        target_branch: the merge/pull request's target branch, when building one.
        trusted: False for merge/pull requests from forks: a fact the provider reports, which the trust rules
            take into account (a fork's job never writes). Read the decision, never this: ``trust``.
        job: the CI job name, for messages.
        default_backend: the backend to use when no setting names one (``gitlab`` inside GitLab CI).
        branch_slugs: ``(branch, slug)`` pairs the CI computed itself (GitLab's ``CI_COMMIT_REF_SLUG``); a
            branch's cache tag uses its slug from here, so the tag is the CI's even where its rule differs.
        event: what started the job, in the CI's own words: GitHub's event name (``push``, ``pull_request``,
            ``issue_comment``, ...), GitLab's pipeline source (``push``, ``schedule``, ``merge_request_event``,
            ``merge_train``, ...); None when the provider reports none.
        protected: whether the ref being built is protected (``CI_COMMIT_REF_PROTECTED``,
            ``GITHUB_REF_PROTECTED``); None when unknown.
        tag: the tag being built (a tag pipeline, a release), or None.
        trust: what the trust rules decided for this job (:mod:`cacheport.trust`). Providers leave it None;
            the plan fills it in before asking backends (:attr:`EntryRequest.trust`), so they never decide it
            themselves.
        root: the project's top directory on this machine (a git checkout's top, where ``cacheport init``
            writes), when known.
        remote: where the project's repository lives, as ``host/path`` (git's ``origin`` remote without its
            scheme, user or ``.git``), when known. With ``root``, it tells apart two checkouts that share a
            ``project`` name; None in CI, where ``project`` is unique already.
    """

    provider: str
    project: str
    branch: str | None = None
    default_branch: str | None = None
    target_branch: str | None = None
    trusted: bool = True
    job: str | None = None
    default_backend: str = "local"
    branch_slugs: tuple[tuple[str, str], ...] = ()
    event: str | None = None
    protected: bool | None = None
    tag: str | None = None
    trust: Trust | None = None
    root: str | None = None
    remote: str | None = None

    def fallback_branches(self) -> tuple[str, ...]:
        """Branches to import from, most specific first: this branch, the MR target, the default branch."""
        seen: dict[str, None] = {}
        for name in (self.branch, self.target_branch, self.default_branch):
            if name:
                seen.setdefault(name, None)
        return tuple(seen)


# --- backends --------------------------------------------------------------------------------------------------


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


def _never() -> bool:
    return False


@attrs.frozen
class BlobSource:
    """A blob's bytes as :meth:`StoreSession.put_blob` may receive them: iterable like any chunks, and readable
    again from any offset, so a writer that can resume an interrupted upload (a registry's) continues mid-blob.

    Attributes:
        open: ``offset -> context manager of chunks``: the blob's bytes from ``offset`` on.
        stopping: true once the copy is being interrupted. A resumable writer stops at its next checkpoint;
            iterating stops at the next chunk. Either way with :class:`cacheport.errors.Interrupted`.
    """

    open: Callable[[int], AbstractContextManager[Iterator[bytes]]]
    stopping: Callable[[], bool] = _never

    def __iter__(self) -> Iterator[bytes]:
        from cacheport.errors import Interrupted

        with self.open(0) as chunks:
            for chunk in chunks:
                if self.stopping():
                    raise Interrupted("interrupted in the middle of a blob")
                yield chunk


class StoreSession(Protocol):
    """An open connection to where a backend keeps caches: a registry repository, a directory.

    Names are what the backend's exports are called there (registry tags, OCI layout ref names); references
    are names or digests. Every failure is a one-line :class:`cacheport.errors.RegistryError`.
    """

    #: Where it is, for messages and to tell whether two sessions can mount from each other.
    host: str

    def __enter__(self) -> StoreSession: ...
    def __exit__(self, *exc: object) -> None: ...
    def check(self) -> None:
        """Reach the store and prove the credentials (a registry's ``/v2/``), without changing anything."""
    def names(self) -> list[str]:
        """Every name held, sorted."""
    def get_manifest(self, reference: str) -> Manifest | None:
        """The manifest or index a name or digest points at, exactly as stored; None when there is none."""
    def manifest_digest(self, name: str) -> str | None:
        """The digest a name points at, or None."""
    def blob_size(self, digest: str) -> int | None:
        """A blob's size, or None when it is not there."""
    def open_blob(self, digest: str, offset: int = 0) -> AbstractContextManager[Iterator[bytes]]:
        """A blob's bytes from ``offset`` on, as a stream of chunks."""
    def mount_from(self, source: StoreSession, digest: str) -> bool:
        """Make a blob present without moving bytes (a registry's cross-repository mount); False when it can't."""
    def put_blob(self, descriptor: Descriptor, chunks: Iterable[bytes],
                 progress: Callable[[int], None] | None = None) -> None:
        """Write a blob; ``progress(n)`` as bytes go out. ``chunks`` may be a :class:`BlobSource`: a store that
        can resume uploads then continues an interrupted one from where it stopped. Safe to call from several
        threads at once, for different blobs."""
    def put_manifest(self, reference: str, manifest: Manifest) -> None:
        """Write a manifest under a name (or its digest). Callers write every blob it needs first."""
    def delete(self, name: str, digest: str | None = None) -> bool:
        """Delete what a name points at; False when the name is not there.

        With ``digest`` (the manifest the caller read under that name), that manifest is what goes, without a
        lookup first; a name that has since moved on to another manifest keeps it."""


def _check_format(_inst: object, _attr: object, value: str) -> None:
    if value not in ("index", "image-manifest"):
        raise ValueError(f"a store's format is 'index' or 'image-manifest', not {value!r}")


@attrs.frozen
class CacheStore:
    """Where a backend keeps its caches, so that seed, status, prune and doctor's format probe can reach them.

    Attributes:
        location: where, for people: ``host/repository`` or a directory.
        format: the format the backend exports: ``index`` (BuildKit's cache index) or ``image-manifest``.
        oci_mediatypes: whether those exports use OCI media types.
        name_for: ``branch -> name``: what the backend's export for a push to that branch is called here.
            A backend with one fixed cache gives the same name for every branch.
        branch_of: ``name -> branch slug``, or None when the name belongs to no branch of this backend's.
        open: connects; use the result as a context manager (``with store.open() as session:``).
        fixed: the backend keeps one cache for every branch (``name_for`` ignores the branch).
    """

    location: str
    format: str = attrs.field(validator=_check_format)
    name_for: Callable[[str], str]
    branch_of: Callable[[str], str | None]
    open: Callable[[], StoreSession]
    oci_mediatypes: bool = True
    fixed: bool = False


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


# --- the plan a renderer renders -----------------------------------------------------------------------------


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


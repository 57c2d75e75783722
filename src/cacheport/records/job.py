"""What the core knows about the job a plugin is asked for: settings with their sources, the CI context and the
trust decision made for it (the core's logic for them is in config.py, context.py and trust.py)."""

from __future__ import annotations

from typing import Any

import attrs


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


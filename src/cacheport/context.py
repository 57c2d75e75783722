"""Where we run: the CI context record, and choosing a provider to detect it.

The providers themselves (GitLab, GitHub Actions, local git) are plugins; none is imported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from cacheport.errors import ContextError

if TYPE_CHECKING:
    from cacheport.records import ContextProvider


@attrs.frozen
class Trust:
    """What the trust rules (:mod:`cacheport.trust`, one table) decided for one job.

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
    """

    rule: str
    reason: str
    mode: str = "branch"
    imports: tuple[str, ...] = ()
    export: str | None = None
    writes: bool = True
    protected: bool = False


@attrs.frozen
class Context:
    """The facts about the current job that decide cache refs.

    Attributes:
        provider: which CI system was detected (``gitlab``, ``github``, ``local``, ...).
        project: the project path or name, for example ``group/app``.
        branch: the branch being built, or None (detached, tag, no git).
        default_branch: the project's default branch, when known.
        target_branch: the merge/pull request's target branch, when building one.
        trusted: False for merge/pull requests from forks: such jobs never export.
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
        trust: what the trust rules decided for this job (:mod:`cacheport.trust`); the plan fills it in
            before asking backends, so they never decide it themselves.
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


def detect_context(
    providers: Iterable[ContextProvider], environ: Mapping[str, str], cwd: Path
) -> Context:
    """The first matching provider's context, by descending priority, then by name for stable order."""
    ordered = sorted(providers, key=lambda p: (-p.priority, p.name))
    for provider in ordered:
        found = provider.detect(environ, cwd)
        if isinstance(found, Context):
            return found
        if found is not None:
            raise ContextError(f"context provider {provider.name!r} returned {type(found).__name__}, "
                               "expected a Context or None")
    raise ContextError("no CI context provider matched (is the built-in 'contexts' plugin disabled?)")

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

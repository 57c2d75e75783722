"""Where we run: choosing a provider to detect the CI context. The records (:class:`Context`, :class:`Trust`) are
in :mod:`cacheport.records`, and stay importable from here.

The providers themselves (GitLab, GitHub Actions, local git) are plugins; none is imported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from cacheport.errors import ContextError
from cacheport.records import Context as Context
from cacheport.records import ContextProvider
from cacheport.records import Trust as Trust


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

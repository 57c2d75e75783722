"""The build report's records: what BuildKit did with each planned cache entry, and the words shared by every
source that reads it. Pure data.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from cacheport.entry import CacheEntry
from cacheport.mounts import MountOutcome

HIT, MISSED, FAILED, UNKNOWN = "hit", "missed", "failed", "unknown"
WRITTEN, SKIPPED = "written", "skipped"
SUCCEEDED = "succeeded"
SOURCES = ("rawjson", "history", "metadata")  # most detailed first: merge prefers them in this order

# Types whose importer reports a missing cache as an error; gha, s3 and azblob import nothing without one.
SAYS_MISSING = ("registry", "local")
LOCAL_DROPPED = "not found (no cache at src: buildx dropped it before the build)"
NOT_PASSED = "BuildKit never tried it: buildx did not pass it on"
_REASON_MAX = 240


def one_line(text: str) -> str:
    """A message squeezed onto one line of reasonable length."""
    line = " ".join(text.split())
    return line if len(line) <= _REASON_MAX else line[: _REASON_MAX - 1] + "…"


@attrs.frozen
class Steps:
    """How much of the build came from cache.

    Attributes:
        total: steps seen.
        cached: steps BuildKit did not run (cached locally or satisfied from an imported cache).
        executed: steps that ran. After a failed step, the rest may not have run at all: total - cached - executed.
        counts: ``steps`` (the Dockerfile's ``[n/m]`` steps, from a progress stream) or ``vertices`` (BuildKit's
            own count in build history, which includes its internal steps: loading the definition and the
            context, importing and exporting cache).
    """

    total: int
    cached: int
    executed: int
    counts: str = "steps"


@attrs.frozen
class ImportReport:
    """What became of one ``--cache-from`` entry.

    Attributes:
        entry: the plan's entry.
        status: ``hit`` (the cache was found and read), ``missed`` (there is no cache there), ``failed`` (it could
            not be read, e.g. the registry is down or refused the credentials) or ``unknown`` (the source does not
            say; gha, s3 and azblob never report a miss).
        reason: BuildKit's or buildx's own words, in one line; empty for a hit.
        seconds: how long BuildKit spent on it, when the source says.
    """

    entry: CacheEntry
    status: str
    reason: str = ""
    seconds: float | None = None


@attrs.frozen
class ExportReport:
    """What became of one ``--cache-to`` entry.

    Attributes:
        entry: the plan's entry.
        status: ``written``, ``failed`` (even when ``ignore-error`` let the build pass), ``skipped`` (the build
            failed before exporting) or ``unknown``.
        reason: BuildKit's or buildx's own words, in one line; empty when written.
        seconds: how long the export took, when BuildKit reported it.
        size: bytes written, when BuildKit reported them (BuildKit 0.13 to 0.25 report none for cache exports).
        layers: how many layer blobs it wrote (or found already there), when reported.
        format: ``image-manifest`` or ``index``, when reported.
        digest: the cache manifest's digest, when reported.
    """

    entry: CacheEntry
    status: str
    reason: str = ""
    seconds: float | None = None
    size: int | None = None
    layers: int | None = None
    format: str = ""
    digest: str = ""


def _import_tuple(values: Iterable[ImportReport]) -> tuple[ImportReport, ...]:
    return tuple(values)


def _export_tuple(values: Iterable[ExportReport]) -> tuple[ExportReport, ...]:
    return tuple(values)


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _mount_tuple(values: Iterable[MountOutcome]) -> tuple[MountOutcome, ...]:
    return tuple(values)


@attrs.frozen
class BuildReport:
    """One build's cache, as BuildKit recorded it.

    Attributes:
        status: ``succeeded``, ``failed`` or ``unknown``.
        error: why the build failed, in one line; empty otherwise.
        steps: step counts, when the source has them.
        imports: one report per planned import, in the plan's order.
        exports: one report per planned export, in the plan's order.
        wall_seconds: the build's duration in BuildKit, when known.
        ref: the build's record in ``docker buildx history`` (the last part of ``buildx.build.ref``), when known.
        sources: which sources this was read from (see SOURCES).
        mounts: what became of each cache mount, in order (a restore and a save are two outcomes); empty for a
            build whose mounts cacheport did not handle, and then no report shows a mounts section.
        first_run: the first step BuildKit executed rather than took from the cache, when the source says.
    """

    status: str
    error: str = ""
    steps: Steps | None = None
    imports: tuple[ImportReport, ...] = attrs.field(default=(), converter=_import_tuple)
    exports: tuple[ExportReport, ...] = attrs.field(default=(), converter=_export_tuple)
    wall_seconds: float | None = None
    ref: str = ""
    sources: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    mounts: tuple[MountOutcome, ...] = attrs.field(default=(), converter=_mount_tuple)
    first_run: str = ""

"""What BuildKit itself says a build did with its cache, read from buildx's own records; never from the plan.

- :mod:`.model`: the records (``BuildReport``, ``ImportReport``, ``ExportReport``, ``Steps``) and their words;
- three sources, each a pure parser that answers for the plan's import and export entries:
  :mod:`.rawjson` (the ``--progress=rawjson`` stream, with the decoder the live progress shares),
  :mod:`.history` (``docker buildx history``) and :mod:`.metadata` (``--metadata-file``);
- :mod:`.merge` combines reports of one build from several sources; :mod:`.render` shows one.

Nothing here runs buildx, reads a file or the environment: callers hand over text or parsed JSON.
"""

from __future__ import annotations

from cacheport.report.history import history_refs, parse_history
from cacheport.report.merge import merge
from cacheport.report.metadata import history_builder, history_ref, parse_metadata
from cacheport.report.model import (
    FAILED,
    HIT,
    MISSED,
    SKIPPED,
    SOURCES,
    SUCCEEDED,
    UNKNOWN,
    WRITTEN,
    BuildReport,
    ExportReport,
    ImportReport,
    Steps,
    one_line,
)
from cacheport.report.rawjson import normalize_ref, parse_rawjson
from cacheport.report.render import as_dict, as_markdown, as_text, describe

__all__ = [
    "FAILED",
    "HIT",
    "MISSED",
    "SKIPPED",
    "SOURCES",
    "SUCCEEDED",
    "UNKNOWN",
    "WRITTEN",
    "BuildReport",
    "ExportReport",
    "ImportReport",
    "Steps",
    "as_dict",
    "as_markdown",
    "as_text",
    "describe",
    "history_builder",
    "history_ref",
    "history_refs",
    "merge",
    "normalize_ref",
    "one_line",
    "parse_history",
    "parse_metadata",
    "parse_rawjson",
]

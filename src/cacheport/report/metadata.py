"""buildx's ``--metadata-file``: the build's ref (where its history is), and the cache manifest an export wrote.
Pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cacheport.entry import CacheEntry
from cacheport.errors import ReportError
from cacheport.report import model
from cacheport.report.model import BuildReport, ExportReport, ImportReport

_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def history_ref(doc: Mapping[str, Any]) -> str:
    """The ref ``docker buildx history inspect`` takes: the last part of ``buildx.build.ref`` (builder/node/ref)."""
    return str(doc.get("buildx.build.ref") or "").rpartition("/")[2]


def history_builder(doc: Mapping[str, Any]) -> str:
    """The builder the build ran on: the first part of ``buildx.build.ref`` (builder/node/ref), when it has one."""
    parts = str(doc.get("buildx.build.ref") or "").split("/")
    return parts[0] if len(parts) == 3 else ""


def parse_metadata(doc: Mapping[str, Any], imports: Sequence[CacheEntry] = (),
                   exports: Sequence[CacheEntry] = ()) -> BuildReport:
    """Read buildx's ``--metadata-file``. buildx writes it only for a build that succeeded (0.13 and 0.29 alike)."""
    if not isinstance(doc, Mapping):
        raise ReportError("not a buildx --metadata-file document (a JSON object)")
    manifest: Mapping[str, Any] = {}
    if doc.get("cache.manifest"):
        try:
            found = json.loads(str(doc["cache.manifest"]))
        except ValueError as exc:
            raise ReportError(f"the metadata's cache.manifest is not JSON: {exc}") from None
        manifest = found if isinstance(found, Mapping) else {}
    # registry and local exports end with a cache manifest; BuildKit returns the last one's descriptor.
    content = [e for e in exports if e.type in model.SAYS_MISSING]
    reports = []
    for entry in exports:
        if entry.type not in model.SAYS_MISSING:
            reports.append(ExportReport(entry, model.UNKNOWN,
                                        f"the metadata file says nothing about {entry.type} exports"))
        elif len(content) > 1:
            reports.append(ExportReport(entry, model.UNKNOWN,
                                        "the metadata file names one cache manifest for several exports"))
        elif manifest:
            fmt = "image-manifest" if manifest.get("mediaType") == _OCI_MANIFEST else "index"
            reports.append(ExportReport(entry, model.WRITTEN, format=fmt, digest=str(manifest.get("digest") or "")))
        else:
            reports.append(ExportReport(entry, model.FAILED,
                                        "BuildKit returned no cache manifest (with ignore-error the build passes "
                                        "anyway)"))
    return BuildReport(
        status=model.SUCCEEDED,
        imports=[ImportReport(e, model.UNKNOWN, "the metadata file says nothing about imports") for e in imports],
        exports=reports,
        ref=history_ref(doc),
        sources=("metadata",),
    )

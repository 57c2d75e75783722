"""An OCI layout's ``index.json`` as BuildKit's local cache importer reads it: the index, its entries' names, the
entry the importer takes for a tag, and where a blob lives.

Read-only and light (json, no hashing, no store): ``cacheport args`` asks it before every build
(:mod:`cacheport.ops.preflight`); :mod:`.layout` builds the store on it. Every problem is a one-line
:class:`~cacheport.errors.RegistryError` naming the file or directory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cacheport.errors import RegistryError
from cacheport.records.store import OCI_INDEX

REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
#: The name BuildKit's local cache exporter gives its entry when no ``tag`` is set.
DEFAULT_NAME = "latest"
SHA256 = re.compile(r"sha256:([0-9a-f]{64})\Z")
# index.json is tiny in practice; a larger one is not a cache BuildKit wrote.
MAX_INDEX = 16 << 20


def read_index(directory: Path) -> dict[str, Any]:
    """``directory``'s ``index.json``; an empty index when there is none."""
    path = directory / "index.json"
    try:
        if path.stat().st_size > MAX_INDEX:
            raise RegistryError(f"{path}: larger than {MAX_INDEX >> 20} MiB; not a cache index")
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror}") from None
    except (ValueError, RecursionError):
        raise RegistryError(f"{path}: not a JSON OCI index") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests", []), list):
        raise RegistryError(f"{path}: not an OCI index")
    return doc


def index_entries(directory: Path) -> list[dict[str, Any]]:
    """The entries of ``directory``'s ``index.json`` (what is not an object is passed over)."""
    return [e for e in read_index(directory).get("manifests") or [] if isinstance(e, dict)]


def entry_name(entry: dict[str, Any]) -> str:
    """The name an entry goes by: its ``org.opencontainers.image.ref.name``, else ``latest``."""
    annotations = entry.get("annotations") if isinstance(entry.get("annotations"), dict) else {}
    return str((annotations or {}).get(REF_NAME) or DEFAULT_NAME)


def buildkit_entry(entries: list[dict[str, Any]], tag: str) -> dict[str, Any] | None:
    """The entry BuildKit's local cache importer takes for ``tag``, or None (the build then fails). Its rule: the
    first entry whose ``io.containerd.image.name``, else the first whose ``org.opencontainers.image.ref.name``,
    is ``tag``; an entry without a name is never taken."""
    for key in (IMAGE_NAME, REF_NAME):
        for entry in entries:
            annotations = entry.get("annotations")
            if isinstance(annotations, dict) and annotations.get(key) == tag:
                return entry
    return None


def blob_path(directory: Path, digest: str) -> Path:
    """Where the blob ``digest`` lives in the layout ``directory``."""
    match = SHA256.match(digest)
    if not match:
        raise RegistryError(f"{directory}: {digest[:80]!r} is not a sha256 digest")
    return directory / "blobs" / "sha256" / match.group(1)

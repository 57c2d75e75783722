"""The OCI artifact that holds a build's cache mounts, and the name it is stored under. Pure: no I/O.

One image manifest per name (``artifactType`` :data:`ARTIFACT_TYPE`, the empty config), one layer per mount
(media type :data:`LAYER_TYPE`, a gzip-compressed tar), each layer's annotations carrying the mount's id, target,
sharing, uid, gid and mode. The name sits beside the layer cache's: ``<name>.mounts``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cacheport.errors import MountError, RegistryError
from cacheport.masking import printable
from cacheport.mounts import CacheMount, MountArchive
from cacheport.oci.artifact import EMPTY
from cacheport.oci.artifact import EMPTY_DATA as EMPTY_DATA
from cacheport.oci.format import OCI_MANIFEST, Descriptor, Manifest
from cacheport.timestamps import go_time

#: The artifact's type; a later format gets ``v2`` and this cacheport refuses it.
ARTIFACT_TYPE = "application/vnd.cacheport.mounts.v1"
#: One mount's archive: a gzip-compressed tar of the mount's contents.
LAYER_TYPE = "application/vnd.cacheport.mount.v1.tar+gzip"
#: The OCI empty descriptor: artifacts with no config of their own point at ``{}``.
EMPTY_CONFIG = EMPTY
#: What a mounts name ends with, after the layer cache's name.
SUFFIX = ".mounts"
#: The longest tag a registry takes (the distribution spec's 128 characters).
NAME_MAX = 128
CREATED = "org.opencontainers.image.created"
NAME = "io.cacheport.mounts.name"
_KEY = "io.cacheport.mount."
_FIELDS = ("id", "target", "sharing", "uid", "gid", "mode")
_NEWER = re.compile(r"application/vnd\.cacheport\.mounts?\.v(\d+)")
_DIGEST_TAIL = re.compile(r"-[0-9a-f]{12}\Z")
_SHARING = ("shared", "private", "locked")


def mounts_name(name: str) -> str:
    """The name of the mounts artifact beside the layer cache called ``name``: ``<name>.mounts``.

    A name too long for that keeps its start, then ``-`` and 12 hex digits of its SHA-256, so the result is
    still a valid tag (at most 128 characters) and still one per layer cache name.
    """
    if not name:
        raise ValueError("a layer cache's name is needed to name its mounts")
    if is_mounts_name(name):
        raise ValueError(f"{name!r} is a mounts name already")
    if len(name) + len(SUFFIX) <= NAME_MAX:
        return name + SUFFIX
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    head = name[: NAME_MAX - len(SUFFIX) - len(digest) - 1]
    return f"{head}-{digest}{SUFFIX}"


def is_mounts_name(name: str) -> bool:
    """Whether ``name`` is where some layer cache's mounts are kept (never a branch's layer cache)."""
    return name.endswith(SUFFIX) and len(name) > len(SUFFIX)


def layer_name_of(name: str) -> str | None:
    """The layer cache's name that ``name`` is the mounts of; None when ``name`` is no mounts name, or a
    shortened one (which keeps only the start of the layer cache's name: compare ``mounts_name`` of candidates).
    """
    if not is_mounts_name(name):
        return None
    base = name[: -len(SUFFIX)]
    if len(name) == NAME_MAX and _DIGEST_TAIL.search(base):
        return None
    return base


def manifest_for(archives: Sequence[MountArchive], created: datetime | None = None, name: str = "") -> Manifest:
    """The artifact's manifest for these archives, one layer each, in the order given.

    ``name``, the name it is written under, makes two names' manifests differ even when their archives are the
    same: a registry deletes a manifest, with every tag pointing at it, so pruning one must not take the other.
    """
    layers = [Descriptor(LAYER_TYPE, a.digest, a.size, _annotations(a.mount)).as_json() for a in archives]
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
                           "config": EMPTY_CONFIG.as_json(), "layers": layers}
    annotations = {CREATED: created.strftime("%Y-%m-%dT%H:%M:%SZ")} if created is not None else {}
    if name:
        annotations[NAME] = name
    if annotations:
        doc["annotations"] = annotations
    return Manifest.from_json(doc)


def _annotations(mount: CacheMount) -> dict[str, str]:
    return {_KEY + "id": mount.id, _KEY + "target": mount.target, _KEY + "sharing": mount.sharing,
            _KEY + "uid": str(mount.uid), _KEY + "gid": str(mount.gid), _KEY + "mode": f"{mount.mode:o}"}


def created(manifest: Manifest) -> datetime | None:
    """When the artifact was written (its ``org.opencontainers.image.created``), when it says."""
    try:
        annotations = manifest.json.get("annotations")
    except RegistryError:
        return None
    return go_time(annotations.get(CREATED)) if isinstance(annotations, dict) else None


def is_mounts(manifest: Manifest) -> bool:
    """Whether a manifest is a mounts artifact of any version (one this cacheport reads or not)."""
    try:
        doc = manifest.json
    except RegistryError:
        return False
    kind = doc.get("artifactType")
    return isinstance(kind, str) and _NEWER.match(kind) is not None


def layers_of(manifest: Manifest, where: str = "") -> list[tuple[CacheMount, Descriptor]]:
    """Each mount the artifact holds, with its layer. Anything else (another artifact type, a newer format, a
    layer whose annotations don't describe a mount) is a one-line :class:`MountError` naming ``where``."""
    at = f"{where}: " if where else ""
    try:
        doc = manifest.json
        descriptors = manifest.descriptors()
    except RegistryError as exc:
        raise MountError(f"{at}not a cache mounts artifact: {exc}") from None
    kind = doc.get("artifactType")
    newer = _NEWER.match(kind) if isinstance(kind, str) else None
    if newer and int(newer.group(1)) > 1:
        raise MountError(f"{at}the cache mounts were written by a newer cacheport ({printable(kind, 80)}); "
                         "this one reads v1: upgrade cacheport to restore them")
    if kind != ARTIFACT_TYPE or manifest.is_index:
        shown = printable(kind, 80) if isinstance(kind, str) else (manifest.media_type or "no artifactType")
        raise MountError(f"{at}not a cache mounts artifact ({shown}); expected {ARTIFACT_TYPE}")
    out: list[tuple[CacheMount, Descriptor]] = []
    for layer in descriptors[1:]:
        if layer.media_type != LAYER_TYPE:
            raise MountError(f"{at}a layer of media type {printable(layer.media_type, 80)}; this cacheport reads "
                             f"{LAYER_TYPE} (written by a newer cacheport?)")
        out.append((_mount(layer, at), layer))
    ids = [m.id for m, _ in out]
    if len(set(ids)) != len(ids):
        raise MountError(f"{at}two layers for the same mount id")
    return out


def _mount(layer: Descriptor, at: str) -> CacheMount:
    values = {f: layer.annotations.get(_KEY + f, "") for f in _FIELDS}
    try:
        uid, gid, mode = int(values["uid"]), int(values["gid"]), int(values["mode"], 8)
    except ValueError:
        uid = gid = mode = -1
    if not values["id"] or not values["target"].startswith("/") or values["sharing"] not in _SHARING \
            or min(uid, gid, mode) < 0 or mode > 0o7777:
        raise MountError(f"{at}layer {layer.digest}: its annotations don't describe a cache mount (id, an "
                         "absolute target, sharing shared/private/locked, uid, gid and mode as numbers)")
    return CacheMount(values["id"], values["target"], values["sharing"], uid, gid, mode)

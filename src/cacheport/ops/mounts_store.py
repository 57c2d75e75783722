"""Moving cache mount archives to and from a backend's store session: the storage half of cache mounts.

:func:`fetch` downloads the first mounts artifact found along a fallback chain of names, streaming each
archive to a file, checking its digest and its safety; :func:`publish` uploads only the archives whose digest
differs from what the name holds, then the artifact's manifest. Neither ever raises for the store's or the
archive's sake: every problem is a :class:`~cacheport.mounts.MountOutcome` and the build goes on. Stores are
reached only through :class:`~cacheport.StoreSession` (a registry's uploads resume from where they stopped).
Which mounts a build has, trust, and the helper builds are the caller's (:mod:`cacheport.ops.mounts`).

Under ``trust = "signed"`` a protected job passes its :class:`~cacheport.ops.signatures.StoreSigning`: fetch then
takes an artifact only by a digest whose signature holds for the name it is stored under (and reads the manifest
by that digest, so a tag moved after the check changes nothing), and publish signs the digest of the manifest it
wrote, computed from the bytes it sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from cacheport.errors import CacheportError, MountError, MountTooLarge, SignatureError
from cacheport.mounts import CacheMount, MountArchive, MountLimits, MountOutcome
from cacheport.mounts import archive as archives_
from cacheport.mounts.artifact import EMPTY_CONFIG, EMPTY_DATA, LAYER_TYPE, layers_of, manifest_for, mounts_name
from cacheport.oci.format import Descriptor
from cacheport.ops.inventory import each
from cacheport.ops.signatures import verified
from cacheport.records import BlobSource, StoreSession

if TYPE_CHECKING:
    from cacheport.ops.signatures import StoreSigning

#: Archives moved at once: each is one stream, and a build has a handful of mounts.
JOBS = 4
CHUNK = 1 << 20
#: How often a download that broke off is continued from where it stopped.
RESUMES = 3


def chain(names: Iterable[str]) -> list[str]:
    """The mounts names beside these layer cache names (``store.name_for`` of the fallback branches), in order,
    each once: a backend with one fixed cache gives one."""
    return list(dict.fromkeys(mounts_name(n) for n in names))


# --- fetch -----------------------------------------------------------------------------------------------------


def fetch(session: StoreSession, names: Sequence[str], dest_dir: Path, *, limits: MountLimits,
          wanted: Sequence[CacheMount] | None = None, signing: StoreSigning | None = None,
          ) -> tuple[list[MountArchive], list[MountOutcome]]:
    """Download the mounts stored beside ``names`` (layer cache names, most specific first), each from the first
    name that has it, into files in ``dest_dir``.

    Returns the archives (digest and safety checked), and one outcome per mount: ``restored`` for each archive
    fetched (downloaded and checked; the caller makes it ``failed`` if the builder then can't take it),
    ``missed``, ``refused`` (hostile), ``too-large`` or ``failed``. With ``wanted`` (the build's mounts), only
    those are fetched (matched by id, and returned with the wanted mount's settings), and each has an outcome;
    without, every mount the first readable artifact holds, and a missing or unreadable artifact is one outcome
    with an empty id. With ``signing``, an artifact whose signature does not hold is ``refused`` for each mount
    not found yet (one line saying why), and the chain goes on to the next name: those outcomes come first, and a
    mount refused and then found nowhere has no other.
    """
    began = time.monotonic()
    ids = [m.id for m in wanted] if wanted is not None else None
    current = {m.id: m for m in wanted or ()}
    found, problems, refusals = _artifacts(session, chain(names), ids, signing)
    refused = [MountOutcome(i, "refused", where, detail=why) for where, why, i in refusals]
    if not found and (problems or ids is None):  # else each wanted mount is missed, below
        if refusals and not problems:
            return [], refused
        detail = "; ".join(problems) or f"no cache mounts under {', '.join(chain(names)) or 'any name'}"
        action = "failed" if problems else "missed"
        return [], refused + [MountOutcome(i, action, detail=detail, seconds=time.monotonic() - began)
                              for i in (ids if ids is not None else [""])]
    outcomes: dict[str, MountOutcome] = {}
    todo: list[tuple[str, CacheMount, Descriptor]] = []
    total = 0
    for mount_id in ids if ids is not None else list(found):
        if mount_id not in found:
            if any(o.id == mount_id for o in refused):  # the refusal says it
                continue
            outcomes[mount_id] = MountOutcome(mount_id, "missed",
                                              detail=f"no mount {mount_id!r} under {', '.join(chain(names))}")
            continue
        name, stored, layer = found[mount_id]
        mount = current.get(mount_id, stored)  # restored with the Dockerfile's settings as they are now
        total += layer.size
        if layer.size > limits.per_mount or total > limits.total:
            total -= layer.size
            which, limit = (("one mount's", limits.per_mount) if layer.size > limits.per_mount
                            else ("all mounts'", limits.total))
            outcomes[mount_id] = MountOutcome(mount_id, "too-large", name, layer.size,
                                              detail=f"{layer.size} bytes is over {which} size limit ({limit} bytes); "
                                                     "not restored")
            continue
        todo.append((name, mount, layer))
    dest_dir.mkdir(parents=True, exist_ok=True)
    got: list[MountArchive] = []
    for mount, outcome, archive in each(lambda item: _download(session, item, dest_dir, limits),
                                        list(enumerate(todo)), JOBS):
        outcomes[mount.id] = outcome
        if archive is not None:
            got.append(archive)
    order = ids if ids is not None else list(found)
    return got, refused + [outcomes[i] for i in order if i in outcomes]


def _artifacts(session: StoreSession, names: Sequence[str], ids: Sequence[str] | None,
               signing: StoreSigning | None,
               ) -> tuple[dict[str, tuple[str, CacheMount, Descriptor]], list[str], list[tuple[str, str, str]]]:
    """Each mount id -> the first name along ``names`` whose artifact holds it (with ``signing``: a signed one),
    with its stored mount and layer (with ``ids``, until each is found; without, every mount of the first readable
    artifact); what was wrong with the names passed over (an unreadable or foreign artifact is passed over for the
    next name); and ``(name, why, id)`` for each mount not found yet when a name was refused for its signature."""
    found: dict[str, tuple[str, CacheMount, Descriptor]] = {}
    problems: list[str] = []
    refusals: list[tuple[str, str, str]] = []
    for name in names:
        try:
            manifest = session.get_manifest(name) if signing is None else verified(session, name, signing)
            if manifest is None:
                continue
            layers = layers_of(manifest, f"{session.host}:{name}")
        except SignatureError as exc:
            refusals += [(name, str(exc), i) for i in (ids if ids is not None else [""]) if i not in found]
            continue
        except CacheportError as exc:
            problems.append(str(exc))
            continue
        for mount, layer in layers:
            if (ids is None or mount.id in ids) and mount.id not in found:
                found[mount.id] = (name, mount, layer)
        if ids is None or all(i in found for i in ids):
            break
    return found, problems, refusals


def _download(session: StoreSession, item: tuple[int, tuple[str, CacheMount, Descriptor]], dest_dir: Path,
              limits: MountLimits) -> tuple[CacheMount, MountOutcome, MountArchive | None]:
    index, (name, mount, layer) = item
    began = time.monotonic()
    # Two mounts may hold the same bytes (two empty caches): each its own file.
    path = dest_dir / f"{index}-{layer.digest.removeprefix('sha256:')[:16]}.tar.gz"
    try:
        _stream_to(session, layer, path)
        archives_.check(path, limit=limits.per_mount, name=mount.id)
    except MountError as exc:
        path.unlink(missing_ok=True)
        action = "too-large" if isinstance(exc, MountTooLarge) else "refused"
        return mount, MountOutcome(mount.id, action, name, layer.size, time.monotonic() - began, str(exc)), None
    except (CacheportError, OSError) as exc:
        path.unlink(missing_ok=True)
        return mount, MountOutcome(mount.id, "failed", name, layer.size, time.monotonic() - began,
                                   f"{session.host}:{name}: {exc}"), None
    return (mount, MountOutcome(mount.id, "restored", name, layer.size, time.monotonic() - began),
            MountArchive(mount, path, layer.digest, layer.size))


def _stream_to(session: StoreSession, layer: Descriptor, path: Path) -> None:
    """The blob into ``path``, checked against its digest and size while it comes. A stream that breaks is
    continued from where it stopped (a registry's range request), :data:`RESUMES` times at the most."""
    digest, size = hashlib.sha256(), 0
    with open(path, "wb") as fh:
        for attempt in range(RESUMES + 1):
            try:
                with session.open_blob(layer.digest, size) as chunks:
                    for chunk in chunks:
                        size += len(chunk)
                        if size > layer.size:
                            raise MountError(f"layer {layer.digest} is longer than the {layer.size} bytes its "
                                             "manifest gives")
                        digest.update(chunk)
                        fh.write(chunk)
                break
            except MountError:
                raise
            except CacheportError:
                if attempt == RESUMES or size >= layer.size:
                    raise
    got = "sha256:" + digest.hexdigest()
    if got != layer.digest or size != layer.size:
        raise MountError(f"layer {layer.digest}: received {size} bytes with digest {got}")


# --- publish ---------------------------------------------------------------------------------------------------


def publish(session: StoreSession, name: str, archives: Sequence[MountArchive], *,
            limits: MountLimits,
            signing: StoreSigning | None = None) -> list[MountOutcome]:
    """Store these archives as the mounts beside the layer cache ``name``, and say what happened to each.

    Archives over a limit are left out (``too-large``), hostile ones too (``refused``). Layers the stored
    artifact already holds, with the same digest, are ``unchanged`` and not sent; when every one is, nothing is
    written at all. Otherwise the changed ones are uploaded (``saved``) and the manifest written last. A blob
    the store has already (a mount whose contents are as restored from another name) is not sent again: for
    such a mount the caller may pass the archive :func:`fetch` returned even after its file is gone.
    A store error makes the archives it concerns ``failed``; a mount whose upload failed keeps
    what was stored for it before. With ``signing``, only a stored artifact whose signature holds counts as what
    is stored, and the manifest written is signed by the digest of its bytes as sent; a signature that can't be
    written makes the mounts ``failed`` (protected builds would refuse them).
    """
    target = mounts_name(name)
    stored = _stored(session, target, signing)
    outcomes: dict[str, MountOutcome] = {}
    kept: list[MountArchive] = []
    total = 0
    # An archive equal to the stored one is not sent, so it needs no reading through (a big one takes seconds).
    for archive, problem in each(lambda a: (a, _refusal(a, limits, _digest(stored.get(_key(a.mount))))),
                                 archives, JOBS):
        total += archive.size
        if problem is None and total > limits.total:
            problem = MountOutcome(archive.mount.id, "too-large", target, archive.size,
                                   detail=f"{archive.size} bytes would take all mounts over their size limit "
                                          f"({limits.total} bytes); not saved")
        if problem is not None:
            total -= archive.size
            outcomes[archive.mount.id] = problem
        else:
            kept.append(archive)
    same = [a for a in kept if _digest(stored.get(_key(a.mount))) == a.digest]
    for a in same:
        outcomes[a.mount.id] = MountOutcome(a.mount.id, "unchanged", target, a.size,
                                            detail="equal to the stored archive; nothing uploaded")
    if not kept or len(same) == len(kept) == len(stored):
        return [outcomes[a.mount.id] for a in archives]
    changed = [a for a in kept if a not in same]
    try:
        if session.blob_size(EMPTY_CONFIG.digest) is None:
            session.put_blob(EMPTY_CONFIG, [EMPTY_DATA])
    except CacheportError as exc:
        return [outcomes.get(a.mount.id) or _failed(a, target, exc) for a in archives]
    # Two mounts holding the same bytes share one blob: it is sent once.
    sent = {a.digest: result for a, result in
            each(lambda a: (a, _upload(session, target, a)), list({a.digest: a for a in changed}.values()), JOBS)}
    layers = []
    for archive in kept:
        if archive in changed:
            outcomes[archive.mount.id] = attrs.evolve(sent[archive.digest], id=archive.mount.id)
        before = stored.get(_key(archive.mount))
        if outcomes[archive.mount.id].action != "failed":
            layers.append(archive)
        elif before is not None:
            layers.append(attrs.evolve(archive, digest=before.digest, size=before.size))
    if not layers or {(_key(a.mount), a.digest) for a in layers} == {(k, d.digest) for k, d in stored.items()}:
        return [outcomes[a.mount.id] for a in archives]  # every upload failed: what is stored stays as it is
    manifest = manifest_for(layers, datetime.now(UTC), target)
    try:
        session.put_manifest(target, manifest)
    except CacheportError as exc:
        for a in kept:
            outcomes[a.mount.id] = _failed(a, target, exc)
        return [outcomes[a.mount.id] for a in archives]
    if signing is not None:
        _sign(session, target, manifest.digest, signing, [a for a in kept if outcomes[a.mount.id].action != "failed"],
              outcomes)
    return [outcomes[a.mount.id] for a in archives]


def _sign(session: StoreSession, target: str, digest: str, signing: StoreSigning, written: Sequence[MountArchive],
          outcomes: dict[str, MountOutcome]) -> None:
    """Sign the manifest just written (never one read back from the name), and say so in each mount's outcome."""
    try:
        signing.sign(session, target, digest)
    except CacheportError as exc:
        for a in written:
            outcomes[a.mount.id] = attrs.evolve(
                outcomes[a.mount.id], action="failed",
                detail=f"{target} ({digest}) written but not signed: {exc}; protected builds will refuse it")
        return
    for a in written:
        said = outcomes[a.mount.id].detail
        outcomes[a.mount.id] = attrs.evolve(outcomes[a.mount.id],
                                            detail=f"{said}; signed ({digest})" if said else f"signed ({digest})")


def _refusal(archive: MountArchive, limits: MountLimits, stored: str | None) -> MountOutcome | None:
    """Why an archive may not be saved (over the limit, not safe to restore), or None. One that the store holds
    already (``stored``, or a file gone, as restored from the store) is never uploaded: nothing to check."""
    began = time.monotonic()
    if archive.size > limits.per_mount:
        return MountOutcome(archive.mount.id, "too-large", size=archive.size,
                            detail=f"{archive.size} bytes is over one mount's size limit ({limits.per_mount} "
                                   "bytes); not saved")
    if archive.digest == stored or not archive.path.exists():
        return None
    try:
        archives_.check(archive.path, limit=limits.per_mount, name=archive.mount.id)
    except MountError as exc:
        action = "too-large" if isinstance(exc, MountTooLarge) else "refused"
        return MountOutcome(archive.mount.id, action, size=archive.size, seconds=time.monotonic() - began,
                            detail=str(exc))
    return None


def _stored(session: StoreSession, target: str,
            signing: StoreSigning | None) -> dict[tuple[object, ...], Descriptor]:
    """Mount -> the layer ``target`` holds for it now; empty when nothing readable (with ``signing``: nothing
    signed) is there, which is then replaced."""
    try:
        manifest = session.get_manifest(target) if signing is None else verified(session, target, signing)
        return {_key(m): d for m, d in layers_of(manifest)} if manifest is not None else {}
    except CacheportError:
        return {}


def _digest(descriptor: Descriptor | None) -> str | None:
    return descriptor.digest if descriptor is not None else None


def _key(mount: CacheMount) -> tuple[object, ...]:
    """What the artifact records of a mount: equal keys and digests mean an equal stored layer."""
    return (mount.id, mount.target, mount.sharing, mount.uid, mount.gid, mount.mode)


def _upload(session: StoreSession, target: str, archive: MountArchive) -> MountOutcome:
    began = time.monotonic()
    descriptor = Descriptor(LAYER_TYPE, archive.digest, archive.size)
    try:
        if session.blob_size(archive.digest) is not None:
            return MountOutcome(archive.mount.id, "saved", target, archive.size, time.monotonic() - began,
                                "the store holds these contents already (under another name): nothing uploaded")
        session.put_blob(descriptor, BlobSource(lambda offset: _read(archive.path, offset)))
    except (CacheportError, OSError) as exc:
        return _failed(archive, target, exc, time.monotonic() - began)
    return MountOutcome(archive.mount.id, "saved", target, archive.size, time.monotonic() - began)


@contextlib.contextmanager
def _read(path: Path, offset: int) -> Iterator[Iterator[bytes]]:
    with open(path, "rb") as fh:
        fh.seek(offset)
        yield iter(lambda: fh.read(CHUNK), b"")


def _failed(archive: MountArchive, target: str, exc: BaseException, seconds: float = 0.0) -> MountOutcome:
    return MountOutcome(archive.mount.id, "failed", target, archive.size, seconds, f"{target}: {exc}")

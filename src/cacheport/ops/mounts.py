"""Cache mounts restored before a build and saved after it: the ``[mounts]`` settings, the names the mounts sit
beside (as the plan's trust decision gives the layer cache's), and one outcome per mount.

Every failure (the helper image, the store, a hostile archive, the builder) becomes one
:class:`~cacheport.mounts.MountOutcome`; nothing here fails a build. The helper builds that copy a mount into and
out of the builder are :mod:`cacheport.ops.mounts_helper`'s; the store side (which archives, digests, uploads) is
:mod:`cacheport.ops.mounts_store`'s; which mounts a Dockerfile has is :mod:`cacheport.mounts.dockerfile`'s.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from cacheport.mounts import CacheMount, MountArchive, MountLimits, MountOutcome
from cacheport.ops.docker import Docker
from cacheport.ops.mounts_helper import (
    DEFAULT_HELPER,
    dockerfile,
    helper_build,
    read_same,
    restore_script,
    save_script,
    tar_said,
    usable,
)

if TYPE_CHECKING:
    from cacheport.config import Config
    from cacheport.ops.signatures import StoreSigning
    from cacheport.plan import Plan
    from cacheport.records import CacheStore


@attrs.frozen
class MountSettings:
    """The ``[mounts]`` settings, resolved.

    Attributes:
        enabled: restore and save around ``cacheport build`` (``mounts = "off"`` turns it off).
        helper_image: the image the helper builds start from.
        limits: the size limits.
        off_by: where ``enabled = false`` came from, for the one line that says so.
    """

    enabled: bool = True
    helper_image: str = DEFAULT_HELPER
    limits: MountLimits = attrs.field(factory=MountLimits)
    off_by: str = ""


def settings_of(config: Config) -> MountSettings:
    """The mount settings of a :class:`cacheport.config.Config`; a bad value is a ``ConfigError`` naming it."""
    from cacheport.config import resolve_mounts

    found = resolve_mounts(config)
    return MountSettings(bool(found["enabled"].value), str(found["helper-image"].value),
                         MountLimits(int(found["max-size"].value), int(found["max-total"].value)),
                         "" if found["enabled"].value else found["enabled"].source.detail)


@attrs.frozen
class Names:
    """Where a build's mounts come from and go, as the layer cache's names (the mounts sit beside each).

    Attributes:
        restore: the layer cache names to restore beside, first found wins (the branch's, then its fallbacks').
        save: the layer cache name to save beside, or ``""`` when this job may not write.
        refusal: why it may not write (for the ``refused`` outcomes), or ``""``.
    """

    restore: tuple[str, ...]
    save: str = ""
    refusal: str = ""


def names_for(plan: Plan, store: CacheStore) -> Names:
    """The layer cache names the mounts sit beside, as the plan's trust decision gives the layer cache's: restore
    over the branches it imports (its own unprotected name first under ``trust = "protected"``), save beside the
    one it exports, only when the plan may write the layer cache."""
    from cacheport.kit import NO_BRANCH
    from cacheport.trust import marked

    context, trust = plan.context, plan.context.trust
    branches = list(trust.imports) if trust is not None else list(context.fallback_branches())
    export = trust.export if trust is not None else context.branch
    unprotected = trust is not None and trust.mode == "protected" and not trust.protected and not store.fixed
    if not branches and not export:  # the one rule for a job that knows no branch at all
        branches, export = [NO_BRANCH], NO_BRANCH
    restore = [store.name_for(b) for b in branches]
    if unprotected and context.branch in branches:
        restore.insert(0, marked(store.name_for(context.branch)))
    names = tuple(dict.fromkeys(restore))
    if plan.read_only or not plan.exports or not export:
        return Names(names, "", "this job may not write the layer cache (read-only, or not trusted to), so it may "
                     "not write cache mounts either")
    save = store.name_for(export)
    return Names(names, marked(save) if unprotected else save)


def restore(store: CacheStore, names: Sequence[str], mounts: Sequence[CacheMount], docker: Docker,
            settings: MountSettings, signing: StoreSigning | None = None) -> list[MountOutcome]:
    """Fetch each mount's archive (beside the first name that has mounts; with ``signing``, the first whose
    signature holds) and copy it into the builder's mount of the same id in one helper build. One outcome per
    mount, after a ``refused`` one per mount for each name refused for its signature; never raises for the
    cache's sake."""
    from cacheport.ops.mounts_store import fetch

    wanted, outcomes = _split_usable(mounts)
    if not wanted:
        return outcomes
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cacheport-mounts-in-") as tmp:
        folder = Path(tmp) / "archives"
        try:
            with store.open() as session:
                archives, fetched = fetch(session, list(names), folder, limits=settings.limits, wanted=wanted,
                                          signing=signing)
        except Exception as exc:  # a store that breaks in any way must not fail the build
            return outcomes + [MountOutcome(m.id, "failed", detail=f"could not read the store: {_line(exc)}")
                               for m in wanted]
        said = {o.id: o for o in fetched}  # each mount's last word; a name refused before it is said as well
        outcomes += [o for o in fetched if o is not said[o.id]]
        found = _archives_by_id(archives)
        todo = [(m, found[m.id]) for m in wanted if m.id in found]
        outcomes += [said.get(m.id) or MountOutcome(m.id, "missed") for m in wanted if m.id not in found]
        if not todo:
            return outcomes
        context, out = Path(tmp) / "context", Path(tmp) / "out"
        context.mkdir()
        for n, (_mount, archive) in enumerate(todo):
            _place(archive.path, context / f"{n}.tar.gz")  # a build context never follows a symlink
        (context / "helper.sh").write_text(restore_script([a for _, a in todo]), encoding="utf-8")
        failed = helper_build(docker, dockerfile(settings.helper_image, [m for m, _ in todo]), context, out)
        seconds = round(time.monotonic() - began, 3)
        for n, (mount, archive) in enumerate(todo):
            done = attrs.evolve(said.get(mount.id) or MountOutcome(mount.id, "restored"), size=archive.size,
                                seconds=seconds)
            if failed:
                done = attrs.evolve(done, action="failed", detail=failed)
            elif not (out / f"{n}.ok").is_file():
                tar = tar_said(out / f"{n}.err")
                done = attrs.evolve(done, action="failed", detail=f"tar in the helper build: {tar}")
            outcomes.append(done)
    return _in_order(outcomes, mounts)


def save(store: CacheStore, name: str, mounts: Sequence[CacheMount], docker: Docker,
         settings: MountSettings, signing: StoreSigning | None = None) -> list[MountOutcome]:
    """Copy each mount out of the builder in one helper build and publish the archives beside the layer cache
    ``name`` (nothing unchanged is uploaded; with ``signing``, the manifest written is signed). One outcome per
    mount; never raises for the cache's sake."""
    from cacheport.mounts.archive import digest_of
    from cacheport.mounts.artifact import mounts_name
    from cacheport.ops.mounts_store import publish

    wanted, outcomes = _split_usable(mounts)
    if not wanted:
        return outcomes
    target = mounts_name(name)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cacheport-mounts-out-") as tmp:
        context, out = Path(tmp) / "context", Path(tmp) / "out"
        context.mkdir()
        (context / "helper.sh").write_text(save_script(wanted, settings.limits.per_mount), encoding="utf-8")
        failed = helper_build(docker, dockerfile(settings.helper_image, wanted), context, out)
        if failed:
            return outcomes + [MountOutcome(m.id, "failed", target, detail=failed) for m in wanted]
        archives: list[MountArchive] = []
        for n, mount in enumerate(wanted):
            path = out / f"{n}.tar.gz"
            same = read_same(out / f"{n}.same")
            if same is not None:  # as restored: its archive is the store's already (publish sends nothing)
                archives.append(MountArchive(mount, path, *same))
            elif (out / f"{n}.empty").is_file():
                outcomes.append(MountOutcome(mount.id, "skipped", target, detail="the mount is empty: nothing saved"))
            elif not path.is_file():
                outcomes.append(MountOutcome(mount.id, "failed", target,
                                             detail=f"tar in the helper build: {tar_said(out / f'{n}.err')}"))
            elif path.stat().st_size > settings.limits.per_mount:  # cut short by the helper: it would be more
                outcomes.append(MountOutcome(
                    mount.id, "too-large", target, path.stat().st_size,
                    detail=f"its archive is over one mount's size limit ({settings.limits.per_mount} bytes); "
                           "not saved"))
            else:
                archives.append(MountArchive(mount, path, digest_of(path), path.stat().st_size))
        if archives:
            try:
                with store.open() as session:
                    published = publish(session, name, archives, limits=settings.limits, signing=signing)
            except Exception as exc:  # a store that breaks in any way must not fail the build
                published = [MountOutcome(a.mount.id, "failed", target, a.size,
                                          detail=f"could not write the store: {_line(exc)}") for a in archives]
            spent = round(time.monotonic() - began, 3)  # the helper build's time and the upload's
            outcomes += [attrs.evolve(o, seconds=spent) for o in published]
    return _in_order(outcomes, mounts)


@attrs.frozen
class Around:
    """The restore before one build and the save after it.

    Attributes:
        mounts: the Dockerfile's cache mounts that the build reaches.
        settings: the ``[mounts]`` settings.
        store: the backend's store, or None when it has none (then ``notes`` says so for each mount).
        names: where the mounts come from and go.
        notes: outcomes known before anything runs (a mount left out, a backend without a store).
        warnings: lines to say first (from reading the Dockerfile).
        signing: a protected job's signatures under ``trust = "signed"``: restores only signed mounts, signs
            what it saves (:func:`cacheport.ops.signatures.store_signing`); None for every other job.
    """

    mounts: tuple[CacheMount, ...] = ()
    settings: MountSettings = attrs.field(factory=MountSettings)
    store: CacheStore | None = None
    names: Names = Names(())
    notes: tuple[MountOutcome, ...] = ()
    warnings: tuple[str, ...] = ()
    signing: StoreSigning | None = None

    def restore(self, docker: Docker) -> list[MountOutcome]:
        """Each mount restored (or why not), with the notes first."""
        if self.store is None or not self.mounts:
            return list(self.notes)
        return [*self.notes, *restore(self.store, self.names.restore, self.mounts, docker, self.settings,
                                      self.signing)]

    def save(self, docker: Docker) -> list[MountOutcome]:
        """Each mount saved, unchanged, refused (this job may not write), or why not."""
        if self.store is None or not self.mounts:
            return []
        if not self.names.save:
            return refused(self.mounts, self.names.refusal)
        return save(self.store, self.names.save, self.mounts, docker, self.settings, self.signing)


def around(plan: Plan, store: Callable[[], CacheStore], dockerfile: Path, settings: MountSettings, *,
           target: str | None = None, build_args: Mapping[str, str] | None = None) -> Around:
    """What to restore and save around a build of ``dockerfile``: its cache mounts, the store (``store()`` raises
    ``ConfigError`` for a backend without one), the names. Never raises for the cache's sake."""
    from cacheport.errors import CacheportError, ConfigError
    from cacheport.mounts.dockerfile import read_mounts

    if not settings.enabled:
        return Around(settings=settings)
    try:
        text = dockerfile.read_text(encoding="utf-8")
    except FileNotFoundError:  # buildx says so, as the build's own error
        return Around(settings=settings)
    except (OSError, UnicodeDecodeError) as exc:
        return Around(settings=settings, warnings=(f"cache mounts: could not read {dockerfile}: {_line(exc)}",))
    mounts, warnings = read_mounts(text, path=str(dockerfile), target=target, build_args=dict(build_args or {}))
    found = tuple(mounts)
    if not found:
        return Around(settings=settings, warnings=tuple(warnings))
    try:
        chosen = store()
    except CacheportError as exc:  # a ConfigError says this command can't reach the backend: true of mounts too
        where = (f"backend {plan.backend!r} has no store cacheport can reach (as gha, inline, s3 and azblob)"
                 if isinstance(exc, ConfigError) else str(exc))
        why = f"{where}: cache mounts are neither restored nor saved, and the build goes on"
        return Around(found, settings, warnings=(*warnings, f"cache mounts: {why}"),
                      notes=tuple(skipped(found, "the backend has no store")))
    return Around(found, settings, chosen, names_for(plan, chosen), warnings=tuple(warnings))


def refused(mounts: Sequence[CacheMount], why: str) -> list[MountOutcome]:
    """A ``refused`` outcome for each mount: this job may not write."""
    return [MountOutcome(m.id, "refused", detail=why) for m in mounts]


def skipped(mounts: Sequence[CacheMount], why: str) -> list[MountOutcome]:
    """A ``skipped`` outcome for each mount."""
    return [MountOutcome(m.id, "skipped", detail=why) for m in mounts]


def _split_usable(mounts: Sequence[CacheMount]) -> tuple[list[CacheMount], list[MountOutcome]]:
    wanted: dict[str, CacheMount] = {}
    outcomes: list[MountOutcome] = []
    for mount in mounts:
        why = usable(mount)
        if why:
            outcomes.append(MountOutcome(mount.id, "skipped", detail=f"line {mount.line}: {why}"))
        else:
            wanted.setdefault(mount.id, mount)  # one id is one mount in the builder, however many steps use it
    return list(wanted.values()), outcomes


def _archives_by_id(archives: Sequence[MountArchive]) -> Mapping[str, MountArchive]:
    found: dict[str, MountArchive] = {}
    for archive in archives:
        found.setdefault(archive.mount.id, archive)
    return found


def _place(source: Path, dest: Path) -> None:
    """``source`` at ``dest`` without copying its bytes when the file system allows (a hard link)."""
    import os
    import shutil

    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def _in_order(outcomes: Sequence[MountOutcome], mounts: Sequence[CacheMount]) -> list[MountOutcome]:
    order = {m.id: n for n, m in reversed(list(enumerate(mounts)))}
    return sorted(outcomes, key=lambda o: order.get(o.id, len(order)))


def _line(exc: BaseException) -> str:
    from cacheport.masking import printable

    return printable(str(exc) or type(exc).__name__, 300)

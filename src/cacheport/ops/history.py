"""The cache's history: build records kept beside the cache (:mod:`cacheport.report.record`), written after each
build and read by ``cacheport history``. Side effects at the edge.

Where records live (a *shelf*, :mod:`cacheport.ops.shelves`; a build keeps its record off its critical path
through :mod:`cacheport.ops.recorder`):

- in the backend's own store (a registry repository: Pulp, GitLab's, any distribution), one OCI artifact per
  record under its own unique name, beside the cache tags;
- in a directory, one JSON file per record, for a backend without a store and the ``local`` one (whose directory
  BuildKit's exporter and the rotation replace): ``history-dir`` if set, else ``./cacheport-history`` in a CI job
  (upload it as an artifact), else under the cache directory.

Two writers never lose each other's record: each record is written once under a name no other has (its branch,
its time to the millisecond, a random id), nothing is ever rewritten, and the bound (the newest ``history-keep``
per branch) is kept by deleting the oldest names. A job that may not write the shared caches (a fork, a read-only
or untrusted job) keeps its record in its directory only, never where protected builds read.

Under ``trust = "signed"`` (:mod:`cacheport.ops.signatures`), a store's records are signed and verified like a
cache mount's artifact: a protected job signs the digest of the record manifest it wrote (from the bytes it sent,
never read back), the record's name being the signed name; a reader counts only records whose current digest
carries a valid signature, read by that digest, and leaves the others out (:attr:`Shelved.unsigned`). Deleting
a record deletes its signature. A directory shelf is neither signed nor verified.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from cacheport.errors import (
    CacheportError,
    NewerRecordError,
    OversizedRecordError,
    RecordError,
    RegistryError,
    SignatureError,
)

# The shelves were here before; their old import paths still work.
from cacheport.ops.shelves import DirectoryShelf as DirectoryShelf
from cacheport.ops.shelves import Shelf as Shelf
from cacheport.ops.shelves import StoreShelf as StoreShelf
from cacheport.options import GLOBAL_OPTIONS
from cacheport.plan import Plan
from cacheport.records import CacheStore
from cacheport.refs import slug
from cacheport.report import BuildReport
from cacheport.report import record as rec

if TYPE_CHECKING:
    from cacheport.ops.signatures import StoreSigning

#: The history settings' defaults, as the option schema gives them (a hand-built plan may lack them).
_SETTING_DEFAULTS: dict[str, Any] = {o.name: o.default for o in GLOBAL_OPTIONS
                                     if o.name in ("history", "history-keep", "history-dir")}
#: The default of ``history-keep``: records kept per branch.
KEEP: int = _SETTING_DEFAULTS["history-keep"]


@attrs.frozen
class Settings:
    """The history settings in force for a plan.

    Attributes:
        on: records are written at all (``history = "on"``).
        keep: records kept per branch (``history-keep``).
        directory: ``history-dir``, or None for the default place.
    """

    on: bool = True
    keep: int = KEEP
    directory: str | None = None


def settings_of(plan: Plan) -> Settings:
    values = dict(_SETTING_DEFAULTS)
    values.update({s.name: s.setting.value for s in plan.settings if s.name in _SETTING_DEFAULTS
                   and s.setting.value is not None})
    return Settings(values["history"] != "off", max(int(values["history-keep"]), 1), values["history-dir"])


def writes_store(plan: Plan) -> bool:
    """Whether this job's records may go where protected builds read them: only a job that may write the caches
    every branch shares (not read-only, not a fork, under ``trust = "protected"`` only a protected pipeline)."""
    trust = plan.context.trust
    return not plan.read_only and trust is not None and trust.writes_shared


def directory_for(plan: Plan, store: CacheStore | None, environ: Mapping[str, str], cwd: Path) -> Path:
    """Where a directory shelf is: ``history-dir``, else ``./cacheport-history`` in a CI job (its artifact), else
    ``<cache dir>/history/<the local cache's place under the cache dir, else the project>``."""
    chosen = settings_of(plan).directory
    if chosen:
        return cwd / chosen
    if plan.context.provider != "local":
        return cwd / "cacheport-history"
    base = Path(plan.request.cache_dir) if plan.request and plan.request.cache_dir else cwd / ".cacheport"
    if store is not None and os.path.isabs(store.location):  # a local cache: its records beside its name
        where = Path(store.location)
        return base / "history" / (where.relative_to(base) if where.is_relative_to(base) else slug(str(where)))
    return base / "history" / slug(plan.context.project or "project")


@contextlib.contextmanager
def open_shelf(plan: Plan, store: CacheStore | None, cache_type: str, environ: Mapping[str, str], cwd: Path, *,
               writing: bool = False, signing: StoreSigning | None = None) -> Iterator[Shelf]:
    """The shelf for this plan: its backend's store when it has one (not ``local``'s, which is replaced on every
    build) and, when ``writing``, this job may write there; else the directory. ``signing`` (from
    :func:`signing_of`) applies to a store's shelf only."""
    if store is not None and cache_type != "local" and (writes_store(plan) or not writing):
        with store.open() as session:
            yield StoreShelf(session, store.location, signing)
        return
    yield DirectoryShelf(directory_for(plan, store, environ, cwd), _named_by(plan))


def _named_by(plan: Plan) -> str | None:
    """Where ``history-dir`` was set (``cacheport.toml history-dir``, ``CACHEPORT_HISTORY_DIR``), if it was."""
    return next((s.setting.source.detail for s in plan.settings if s.name == "history-dir"
                 and s.setting.value and s.setting.source.level != "default"), None)


def signing_of(plan: Plan, environ: Mapping[str, str], *, writing: bool = False,
               key: object | None = None) -> StoreSigning | None:
    """Under ``trust = "signed"``, how records in a store are verified (by every job: records are read, never
    imported, so no job reads them unverified) and, for a protected job ``writing`` its own, signed; None under
    any other trust. A record's signature has no age bound: each is written once under its own name, so an old
    one is never replayed as a newer. A protected writer whose key can't be loaded has none: its record is kept
    unsigned, with the one warning :func:`leave_record` gives. ``key``: the one the build already signs its
    exports with (under ``signing = "keyless"`` its signer, whose certificate is then asked for once per build),
    loaded here when not given."""
    from cacheport.ops.signatures import StoreSigning, signing_key
    from cacheport.signing import policy

    found = policy(plan)
    if found is None:
        return None
    if not (writing and found.protected and writes_store(plan)):
        key = None
    elif key is None:
        with contextlib.suppress(CacheportError):  # a build without its key stopped before building
            key = signing_key(plan, environ)
    return StoreSigning(attrs.evolve(found, max_age=None), key)


def keep(shelf: Shelf, record: rec.BuildRecord, limit: int) -> list[str]:
    """Write ``record``, then delete the oldest records of its branch beyond ``limit``; the names deleted.

    Only names are compared, never contents: a corrupt record elsewhere can't stop a build's."""
    shelf.write(record.name, rec.to_json(record))
    return trim(shelf, record.name, limit)


def trim(shelf: Shelf, name: str, limit: int) -> list[str]:
    """Delete the oldest records of ``name``'s branch beyond ``limit``; the names deleted."""
    branch = rec.parse_name(name)
    assert branch is not None
    return [other for other in _beyond(shelf.names(), branch[0], limit) if shelf.delete(other)]


def leave_record(report: BuildReport, plan: Plan, store: Callable[[], CacheStore | None], cache_type: str,
                 environ: Mapping[str, str], cwd: Path, say: Callable[[str], None], *, source: str = "build",
                 mounts: Sequence[Any] = (), signing: StoreSigning | None = None) -> rec.BuildRecord | None:
    """Keep this build's record; never fails: a problem is one warning line. ``store()`` gives the backend's
    store (None without one) and may raise a :class:`CacheportError` that is a warning too. With ``signing``
    (:func:`signing_of`), a record written to a store is signed; one that can't be is one warning line.
    :class:`~cacheport.ops.recorder.Recorder` does the same off a build's critical path."""
    from cacheport.ops.recorder import Recorder

    recorder = Recorder(plan, store, cache_type, environ, cwd, say, source=source, signing=signing)
    recorder.keep(report, mounts=mounts, wait=True)
    return recorder.finish()


def record_for(report: BuildReport, plan: Plan, environ: Mapping[str, str], *, source: str = "build",
               mounts: Sequence[Any] = ()) -> rec.BuildRecord:
    """This build's record, masked like the build's log (BuildKit's reasons can echo a password)."""
    from cacheport import __version__
    from cacheport.masking import mask, secret_forms
    from cacheport.ops.signatures import key_values
    from cacheport.render import plan_secrets

    forms = secret_forms([*plan_secrets(plan, environ), *key_values(plan, environ)])
    return rec.record_of(report, plan.context, plan.backend, environ, now=datetime.now(UTC), source=source,
                         key=plan.request.key if plan.request else None, mounts=mounts, version=__version__,
                         clean=lambda text: mask(text, forms))


def _beyond(names: Sequence[str], branch: str, limit: int) -> list[str]:
    """The oldest names of ``branch``'s records beyond the newest ``limit``."""
    mine = sorted((parsed[1], name) for name in names
                  if (parsed := rec.parse_name(name)) is not None and parsed[0] == branch)
    return [name for _stamp, name in mine[:-limit]] if limit > 0 else [name for _stamp, name in mine]


@attrs.frozen
class Shelved:
    """The records read from a shelf, oldest first, and the ones that could not be read (with ``skip_bad``).

    Attributes:
        records: ``(name, record)`` pairs, oldest first.
        bad: ``(name, why)`` for each record skipped.
        where: the shelf, for messages.
        unsigned: ``(name, why)`` for each record left out under ``trust = "signed"``: not signed by an allowed
            key for its current digest (always left out, never an error).
    """

    records: tuple[tuple[str, rec.BuildRecord], ...]
    bad: tuple[tuple[str, str], ...] = ()
    where: str = ""
    unsigned: tuple[tuple[str, str], ...] = ()

    def unsigned_line(self) -> str | None:
        """One line counting the records left out for their signatures, with how many for each reason."""
        if not self.unsigned:
            return None
        import re
        from collections import Counter

        reasons = Counter(re.sub(r" \(sha256:[0-9a-f]+\)$", "", why) for _name, why in self.unsigned)
        n = len(self.unsigned)
        return (f"{n} record{'s' if n != 1 else ''} left out: not signed by an allowed key ("
                + "; ".join(f"{count}: {why}" for why, count in sorted(reasons.items())) + ")")


def read_records(shelf: Shelf, *, branch: str | None = None, last: int | None = None, skip_bad: bool = False,
                 jobs: int = 8, names: Sequence[str] | None = None) -> Shelved:
    """The records on ``shelf`` (those of ``branch``; the ``last`` per branch), oldest first. A record that can't
    be read is a :class:`RecordError` naming it, unless ``skip_bad``. ``names``: the shelf's, listed already."""
    from cacheport.ops.inventory import each

    parsed = [(p, n) for n in (shelf.names() if names is None else names) if (p := rec.parse_name(n)) is not None]
    if branch is not None:
        parsed = [(p, n) for p, n in parsed if p[0] == slug(branch, 50)]
    by_branch: dict[str, list[tuple[str, str]]] = {}
    for (b, stamp), name in sorted(parsed, key=lambda item: item[0][1]):
        by_branch.setdefault(b, []).append((stamp, name))
    chosen = sorted(item for items in by_branch.values() for item in (items[-last:] if last else items))
    names = [name for _stamp, name in chosen]

    def one(name: str) -> tuple[str, rec.BuildRecord | str | SignatureError | None]:
        try:
            data = shelf.read(name)
            return name, rec.parse_record(data) if data is not None else None
        except SignatureError as exc:
            return name, exc
        except NewerRecordError as exc:
            return name, str(exc)
        except RecordError as exc:
            corrupt.add(name)
            return name, str(exc)
        except RegistryError as exc:
            return name, f"unreadable: {exc}"

    corrupt: set[str] = set()  # what --prune-bad deletes: not a newer cacheport's, nor one it could not read

    out, bad, unsigned = [], [], []
    for name, found in each(one, names, jobs):
        if found is None:
            continue  # gone since it was listed: another job's bound
        if isinstance(found, SignatureError):
            unsigned.append((name, str(found)))
            continue
        if isinstance(found, str):
            if not skip_bad:
                raise RecordError(f"history record {shown(shelf, name)}" + ("" if isinstance(shelf, DirectoryShelf)
                                  else f" in {shelf.where}") + f": {found} (--skip-bad leaves it out"
                                  + ("; --prune-bad deletes every record that can't be read)" if name in corrupt
                                     else ")"))
            bad.append((name, found))
        else:
            out.append((name, found))
    return Shelved(tuple(out), tuple(bad), shelf.where, tuple(unsigned))


def shown(shelf: Shelf, name: str) -> str:
    """A record as a user finds it: a directory's as the file's path (to ``rm``), a store's by its tag."""
    return str(shelf.directory / f"{name}.json") if isinstance(shelf, DirectoryShelf) else name


def prune_bad(shelf: Shelf, *, branch: str | None = None, jobs: int = 8) -> Iterator[tuple[str, str, str | None]]:
    """Delete the records on ``shelf`` (``branch``'s only) that this version can prove corrupt (not what any
    cacheport writes: hostile, not JSON, too large for a schema it reads), yielding ``(name, why, failed)`` as each
    is deleted (``failed``: why it could not be, else None). Never one written by a newer cacheport (another
    record artifact type, a newer schema, or too large to tell), one left out for its signature, or one that
    could not be read (an outage, a file this job may not read: a good record, maybe)."""
    from cacheport.ops.inventory import each

    def one(name: str) -> tuple[str, str | None]:
        try:
            data = shelf.read(name, limit=rec.PROBE_SIZE)
            if data is None:
                return name, None
            if len(data) > rec.MAX_SIZE:
                return name, rec.oversized_why(data)
            rec.parse_record(data)
        except (NewerRecordError, OversizedRecordError, SignatureError, RegistryError, OSError):
            return name, None
        except RecordError as exc:
            return name, str(exc)
        return name, None

    names = [n for n in shelf.names() if (parsed := rec.parse_name(n)) is not None
             and (branch is None or parsed[0] == slug(branch, 50))]
    for name, why in each(one, names, jobs):
        if why is None:
            continue
        try:
            if shelf.delete(name):
                yield name, why, None
        except (RegistryError, OSError) as exc:
            yield name, why, str(exc)

"""The cache's history: build records kept beside the cache (:mod:`cacheport.report.record`), written after each
build and read by ``cacheport history``. Side effects at the edge.

Where records live (a *shelf*):

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
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from cacheport.errors import (
    CacheportError,
    NewerRecordError,
    OversizedRecordError,
    RecordError,
    RegistryError,
    SignatureError,
)
from cacheport.files import replacing
from cacheport.options import GLOBAL_OPTIONS
from cacheport.plan import Plan
from cacheport.records import CacheStore, StoreSession
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


class Shelf(Protocol):
    """Where records are kept: a store's repository or a directory."""

    where: str

    def names(self) -> list[str]: ...
    def read(self, name: str, limit: int = rec.MAX_SIZE) -> bytes | None:
        """A record's bytes (up to ``limit`` + 1 of them); None when it is gone (another job's bound deleted it
        since it was listed). :class:`RecordError` when it is not a record this version reads
        (:class:`NewerRecordError`: a newer cacheport's; :class:`OversizedRecordError`: over ``limit``);
        :class:`RegistryError` when it could not be read (an outage, a file this job may not read)."""
    def write(self, name: str, data: bytes) -> None: ...
    def delete(self, name: str) -> bool:
        """Delete a record: False when it was gone already; :class:`RegistryError` when it could not be."""


class StoreShelf:
    """Records as OCI artifacts in a backend's store (an open :class:`~cacheport.StoreSession`).

    With ``signing`` (``trust = "signed"``): :meth:`read` takes a record only by a digest whose signature holds
    for its name (:class:`SignatureError` else), :meth:`write` remembers the digest of the manifest it sent for
    :meth:`sign`, and :meth:`delete` deletes the record's signature too."""

    def __init__(self, session: StoreSession, where: str, signing: StoreSigning | None = None) -> None:
        self.session, self.where, self.signing = session, where, signing
        self.written: dict[str, str] = {}
        #: Blobs known to be in the repository: not asked about again.
        self.present: set[str] = set()

    def prepare(self) -> None:
        """Make sure the blob every record (and its signature) shares, the empty config, is in the repository,
        ahead of a :meth:`write` (while the build runs); one request when it is."""
        from cacheport.oci.artifact import EMPTY, EMPTY_DATA

        if self.session.blob_size(EMPTY.digest) is None:
            self.session.put_blob(EMPTY, [EMPTY_DATA])
        self.present.add(EMPTY.digest)

    def names(self) -> list[str]:
        return [n for n in self.session.names() if n.startswith(rec.PREFIX)]

    def read(self, name: str, limit: int = rec.MAX_SIZE) -> bytes | None:
        import sys

        from cacheport.oci.artifact import artifact_layer
        from cacheport.oci.format import sha256_digest

        if self.signing is None:
            manifest = self.session.get_manifest(name)
        else:
            from cacheport.ops.signatures import verified

            manifest = verified(self.session, name, self.signing)
        if manifest is None:  # deleted since it was listed (Pulp lists a deleted tag for a while, too)
            return None
        kind = manifest.json.get("artifactType")
        if (not manifest.is_index and isinstance(kind, str) and kind.startswith(rec.ARTIFACT_FAMILY)
                and kind != rec.ARTIFACT_TYPE):
            raise NewerRecordError(f"a {kind[:80]} artifact, written by a newer cacheport (this one reads "
                                   f"{rec.ARTIFACT_TYPE}): upgrade cacheport")
        try:
            layer = artifact_layer(manifest, rec.ARTIFACT_TYPE, rec.MEDIA_TYPE, sys.maxsize)
        except RegistryError as exc:
            raise RecordError(str(exc)) from None
        if layer.size > limit:
            raise OversizedRecordError(f"the artifact's {rec.MEDIA_TYPE} layer is {layer.size} bytes; at most "
                                       f"{limit} are read")
        data = bytearray()
        with self.session.open_blob(layer.digest) as chunks:
            for chunk in chunks:
                data += chunk
                if len(data) > layer.size:
                    break
        if len(data) != layer.size or sha256_digest(bytes(data)) != layer.digest:
            raise RecordError("its content does not match its digest")
        return bytes(data)

    def write(self, name: str, data: bytes) -> None:
        from cacheport.oci.artifact import artifact

        blobs, manifest = artifact(rec.ARTIFACT_TYPE, rec.MEDIA_TYPE, data,
                                   {"org.opencontainers.image.title": name})
        for descriptor, content in blobs:
            # A record's own bytes (its time and random id in them) are never there yet: not asked about.
            if descriptor.digest not in self.present and (
                    descriptor.media_type == rec.MEDIA_TYPE or self.session.blob_size(descriptor.digest) is None):
                self.session.put_blob(descriptor, [content])
            self.present.add(descriptor.digest)
        self.session.put_manifest(name, manifest)
        self.written[name] = manifest.digest

    def sign(self, name: str) -> str | None:
        """Sign the record this shelf wrote under ``name``, by the digest of the manifest it sent; the digest, or
        None without ``signing``. :class:`CacheportError` when it can't (no key, a registry that refuses)."""
        if self.signing is None:
            return None
        digest = self.written[name]
        self.signing.sign(self.session, name, digest, present=self.present)
        return digest

    def delete(self, name: str) -> bool:
        # Each record's manifest is its own (its content names its time and id), so no other name goes with it
        # but its signature, which would pile up otherwise.
        digest = self.session.manifest_digest(name) if self.signing is not None else None
        gone = self.session.delete(name)
        if digest:
            from cacheport.signing import signature_tag

            with contextlib.suppress(CacheportError):  # a signature left behind is pruned with the caches'
                self.session.delete(signature_tag(digest))
        return gone


class DirectoryShelf:
    """Records as JSON files in a directory (a CI artifact, or under the cache directory on a laptop).

    ``named_by``: where the user named the directory (``cacheport.toml history-dir``, ``--records``), for the
    one line that says it is not a directory."""

    def __init__(self, directory: Path, named_by: str | None = None) -> None:
        self.directory, self.named_by = directory, named_by
        self.where = str(directory)

    def _not_a_directory(self) -> CacheportError:
        from cacheport.errors import ConfigError

        return ConfigError(f"{self.named_by or 'history-dir'} = {str(self.directory)!r}: not a directory; name a "
                           "directory for build records (one not there yet is made)")

    def names(self) -> list[str]:
        try:
            return sorted(p.name[:-5] for p in self.directory.iterdir()
                          if p.name.startswith(rec.PREFIX) and p.name.endswith(".json"))
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            raise self._not_a_directory() from None
        except OSError as exc:
            raise RegistryError(f"{self.directory}: cannot list: {exc.strerror}") from None

    def read(self, name: str, limit: int = rec.MAX_SIZE) -> bytes | None:
        path = self.directory / f"{name}.json"
        try:
            with path.open("rb") as fh:
                return fh.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:  # not what the record holds: this job may not read it (a good record, maybe)
            raise RegistryError(f"cannot read: {exc.strerror}") from None

    def write(self, name: str, data: bytes) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with replacing(self.directory / f"{name}.json") as fh:
                fh.write(data)
        except (FileExistsError, NotADirectoryError):
            raise self._not_a_directory() from None
        except OSError as exc:
            raise RegistryError(f"{self.directory}: cannot write: {exc.strerror}") from None

    def delete(self, name: str) -> bool:
        try:
            (self.directory / f"{name}.json").unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise RegistryError(f"cannot delete: {exc.strerror}") from None
        return True


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
    :class:`Recorder` does the same off a build's critical path."""
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


class Recorder:
    """A build's record kept off the build's critical path (``cacheport build``), in three calls:

    - :meth:`begin`, as the build starts: on a thread, open the shelf, list it, and make room for the record
      (delete the oldest of this branch beyond ``history-keep`` less one), while BuildKit builds;
    - :meth:`keep`, once the build's report is final: write the record (and sign it) on a thread, while the
      build signs its exports and prints its report;
    - :meth:`finish`, before the command ends: wait for the write (nothing outlives the job) and say its
      warnings (one line each; never a failed build).

    With ``trend``, the branch's last ``trend`` records (this build's among them, from memory) are read while
    the build runs, from the names listed then, for the trend a CI job shows after its build: :attr:`read`.

    Room is made before the write, by names listed before it: a record that then fails to be written leaves its
    branch one under the bound, never less (the next build makes room for one again), and two jobs writing at
    once may leave it one over until the next build. The record itself is written once, whole, under its own
    name, and signed by the digest of the bytes sent (:class:`StoreShelf`), as :func:`leave_record` does.
    """

    def __init__(self, plan: Plan, store: Callable[[], CacheStore | None], cache_type: str,
                 environ: Mapping[str, str], cwd: Path, say: Callable[[str], None], *, source: str = "build",
                 signing: StoreSigning | None = None, trend: int = 0) -> None:
        self.plan, self.store, self.cache_type, self.environ, self.cwd = plan, store, cache_type, environ, cwd
        self.say, self.source, self.signing, self.trend = say, source, signing, trend
        self.settings = settings_of(plan)
        self.shelf: Shelf | None = None
        self.record: rec.BuildRecord | None = None
        #: With ``trend``, once :meth:`finish` kept the record: the branch's last records (this one last), or the
        #: error that stopped them being read.
        self.read: Shelved | CacheportError | None = None
        self._earlier: Shelved | CacheportError | None = None
        self._untrimmed = ""  # why the oldest were not deleted: said only when the record itself was written
        self._names: list[str] | None = None  # the shelf's names as begin found them
        self._lines: list[str] = []
        self._stack = contextlib.ExitStack()
        self._opening: Callable[[], None] | None = None
        self._writing: Callable[[], None] | None = None
        self._kept = False

    def begin(self) -> None:
        """Open the shelf and make room for the record, on a thread (nothing when history is off)."""
        if self.settings.on and self._opening is None:
            self._opening = _on_thread(self._open, "cacheport-history-open")

    def keep(self, report: BuildReport, *, mounts: Sequence[Any] = (), wait: bool = False) -> None:
        """Write ``report``'s record, on a thread unless ``wait`` (nothing when history is off)."""
        if not self.settings.on or self._writing is not None:
            return
        self.begin()
        self.record = record_for(report, self.plan, self.environ, source=self.source, mounts=mounts)
        if wait:
            self._writing = lambda: None
            self._write()
        else:
            self._writing = _on_thread(self._write, "cacheport-history-write")

    def finish(self) -> rec.BuildRecord | None:
        """Wait for the write, close the shelf, and say what went wrong, one line each; the record when it was
        kept (then :attr:`read` too, with ``trend``)."""
        try:
            if self._writing is not None:
                self._writing()  # it says what went wrong, opening the shelf included
            elif self._opening is not None:
                with contextlib.suppress(Exception):  # no record to keep (the build never started)
                    self._opening()
        finally:
            self._stack.close()
        for line in self._lines:
            self.say(line)
        self._lines = []
        kept = self.record if self._kept else None
        if kept is not None and self.trend:
            self.read = self._earlier if not isinstance(self._earlier, Shelved) else attrs.evolve(
                self._earlier, records=(*self._earlier.records, (kept.name, kept)))
        return kept

    def _open(self) -> None:
        try:
            found = self.store()
        except CacheportError:
            found = None
        self.shelf = self._stack.enter_context(open_shelf(self.plan, found, self.cache_type, self.environ,
                                                          self.cwd, writing=True, signing=self.signing))
        if isinstance(self.shelf, StoreShelf):
            with contextlib.suppress(CacheportError):  # else the write asks again
                self.shelf.prepare()
        names: list[str] | None = None
        try:
            names = self.shelf.names()
            self._names = names
            # Room for the record, less one (a build that stops before its record never empties the branch):
            # with history-keep = 1 the oldest go only once the record is written (_trim_after).
            if self.settings.keep > 1:
                stale = _beyond(names, rec.branch_slug(self.plan.context.branch), self.settings.keep - 1)
                gone = {name for name in stale if self.shelf.delete(name)}
                names = [name for name in names if name not in gone]
        except (CacheportError, OSError) as exc:  # the record is still written; the bound waits for a later build
            self._untrimmed = f"warning: history: older build records in {self.shelf.where} were not deleted ({exc})"
        if self.trend > 1:
            try:
                self._earlier = read_records(self.shelf, branch=self.plan.context.branch, last=self.trend - 1,
                                             skip_bad=True, names=names)
            except CacheportError as exc:
                self._earlier = exc
        elif self.trend:
            self._earlier = Shelved((), where=self.shelf.where)

    def _trim_after(self, shelf: Shelf, names: Sequence[str]) -> None:
        """With ``history-keep = 1``: the branch's older records, once this build's is written."""
        try:
            for name in _beyond(names, rec.branch_slug(self.plan.context.branch), 1):
                shelf.delete(name)
        except (CacheportError, OSError) as exc:
            self._untrimmed = f"warning: history: older build records in {shelf.where} were not deleted ({exc})"

    def _write(self) -> None:
        assert self.record is not None
        where = "?"
        try:
            if self._opening is not None:
                self._opening()
            if self.shelf is None:
                raise CacheportError("it could not be opened")
            where = self.shelf.where
            self.shelf.write(self.record.name, rec.to_json(self.record))
            self._kept = True
            if self.settings.keep == 1 and self._names is not None:
                self._trim_after(self.shelf, [*self._names, self.record.name])
            if self._untrimmed:
                self._lines.append(self._untrimmed)
            if isinstance(self.shelf, StoreShelf) and self.shelf.signing is not None:
                try:
                    self.shelf.sign(self.record.name)
                except CacheportError as exc:
                    self._lines.append(f"warning: history: the build record {self.record.name} was kept but not "
                                       f"signed ({exc}); cacheport history will leave it out")
        except (CacheportError, OSError) as exc:
            self._lines.append(f"warning: history: the build record was not kept in {where} ({exc}); the build "
                               "is unaffected")
        except Exception as exc:  # the history is never worth a failed build, not even its bug
            self._lines.append(f"warning: history: the build record was not kept ({type(exc).__name__}: {exc}); "
                               "the build is unaffected")


def _on_thread(work: Callable[[], None], name: str) -> Callable[[], None]:
    """``work`` started on a thread that the process waits for (never one that outlives the job); the returned
    call waits for it. ``work`` reports its own problems; a bug in it is kept for the waiter to raise."""
    import threading

    failed: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run, name=name)
    thread.start()

    def wait() -> None:
        thread.join()
        if failed:
            raise failed.pop()

    return wait


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

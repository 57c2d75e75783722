"""A build's record kept off the build's critical path (``cacheport build``): the shelf opened, listed and made room
in while BuildKit builds, the record written while the build signs its exports, and waited for before the command
ends (:mod:`cacheport.ops.history` has the shelves' rules). Side effects at the edge.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from cacheport.errors import (
    CacheportError,
)
from cacheport.ops.history import Shelved, _beyond, open_shelf, read_records, record_for, settings_of
from cacheport.ops.shelves import Shelf, StoreShelf
from cacheport.plan import Plan
from cacheport.records import CacheStore
from cacheport.report import BuildReport
from cacheport.report import record as rec

if TYPE_CHECKING:
    from cacheport.ops.signatures import StoreSigning

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

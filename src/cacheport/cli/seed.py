"""``cacheport seed``: copy caches from one backend's store to another's, so the first build after a switch is warm."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs
import click

from cacheport.cli.common import jobs_option, plan_options
from cacheport.cli.output import say, warn
from cacheport.errors import CacheportError
from cacheport.oci.copy import Reporter

if TYPE_CHECKING:
    from cacheport.cli.session import Session
    from cacheport.context import Context
    from cacheport.records import StoreSession

# --- progress ---------------------------------------------------------------------------------------------------


class Totals(Reporter):
    """Bytes and blobs done and to do, the rate and what is left, kept under a lock for the reporters below."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock, self.lock = clock, threading.Lock()
        self.blobs = self.blobs_done = self.size = self.sent = 0
        self.began: float | None = None

    def planned(self, blobs: int, size: int) -> None:
        with self.lock:
            self.blobs += blobs
            self.size += size
        self.changed()

    def advance(self, n: int) -> None:
        with self.lock:
            if self.began is None:
                self.began = self.clock()
            self.sent += n
        self.changed()

    def blob_done(self, size: int, sent: int) -> None:
        with self.lock:
            self.blobs_done += 1
            self.size += sent - size  # what is left to send is what it took (less on a resume, none if present)
        self.changed()

    def changed(self) -> None:
        """The totals moved (a hook for displays)."""

    def line(self) -> str:
        """``412.3 MB of 1.2 GB sent (34%), 7 of 13 blobs, 85.1 MB/s, about 9s left``."""
        from cacheport.render import human_size

        with self.lock:
            sent, size, done, blobs = self.sent, max(self.size, self.sent), self.blobs_done, self.blobs
            elapsed = self.clock() - self.began if self.began is not None else 0.0
        text = f"{human_size(sent)} of {human_size(size)} sent"
        if size:
            text += f" ({100 * sent // size}%)"
        text += f", {done} of {blobs} blobs"
        if elapsed > 0 and sent:
            rate = sent / elapsed
            text += f", {human_size(int(rate))}/s, about {max(0, round((size - sent) / rate))}s left"
        return text


class LineReporter(Totals):
    """Plain progress lines for logs (CI): one every ``every`` seconds while a long copy runs, none for a short one."""

    def __init__(self, write: Callable[[str], None], every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        self.write, self.every = write, every
        self.last = clock()

    def changed(self) -> None:
        now = self.clock()
        with self.lock:
            if now - self.last < self.every:
                return
            self.last = now
        self.write(f"seed: {self.line()}")


class BarReporter(Totals):
    """One rich progress bar on a terminal: bytes sent of bytes to send, blobs done, rate and time left.

    ``progress`` is a ``rich.progress.Progress`` (thread-safe); rich is imported by the caller only.
    """

    def __init__(self, progress: Any) -> None:
        super().__init__()
        self.progress = progress
        self.task = progress.add_task("blobs 0/0", total=None)

    def changed(self) -> None:
        with self.lock:
            total = max(self.size, self.sent)
            description, completed = f"blobs {self.blobs_done}/{self.blobs}", self.sent
        self.progress.update(self.task, description=description, total=total or None, completed=completed)



@contextmanager
def _reporter(mode: str, terminal: bool) -> Iterator[Reporter]:
    """``--progress``: a bar (``tty``), a plain line every 10 s while a long copy runs (``plain``, for CI logs),
    or nothing (``quiet``); ``auto`` is the bar on a terminal and plain lines elsewhere."""
    if mode == "auto":
        mode = "tty" if terminal else "plain"
    if mode == "quiet":
        yield Reporter()
        return
    if mode == "plain":
        yield LineReporter(lambda line: click.echo(line, err=True))
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    # Lines printed meanwhile go above the bar when stdout is the same terminal, and straight out otherwise.
    with Progress(*columns, console=Console(stderr=True), transient=True,
                  redirect_stdout=sys.stdout.isatty()) as progress:
        yield BarReporter(progress)


@contextmanager
def _stoppable() -> Iterator[None]:
    """SIGTERM (a cancelled CI job) stops a seed the way Ctrl-C does: uploads reach a point they resume from.
    A second signal ends it at once."""
    import signal

    def stop(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop), signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


@click.command("seed", epilog="""\b
Examples:
  cacheport seed --from gitlab --to pulp --branch main --branch develop
  cacheport seed --all --dry-run                  # from [migration] from to the configured backend
  cacheport seed --from gitlab --to registry --set registry.ref=harbor.example.com/app/cache --all
  cacheport seed --from local --to registry --branch main     # a laptop's cache warms CI
  cacheport seed --from gitlab --to local --branch main       # CI's cache warms a laptop
""")
@click.option("--from", "from_", metavar="OLD", help="The backend to copy from (default: [migration] from).")
@click.option("--to", metavar="NEW", help="The backend to copy to (default: the configured backend).")
@click.option("--branch", "branches", multiple=True, metavar="BRANCH", help="A branch whose cache to copy "
              "(repeatable).")
@click.option("--all", "all_tags", is_flag=True, help="Every cache the old backend's store holds.")
@click.option("--dry-run", is_flag=True, help="Show what would be copied; write nothing.")
@jobs_option("Caches, and blobs, copied")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--progress", type=click.Choice(["auto", "tty", "plain", "quiet"]), default="auto", show_default=True,
              help="A long copy's progress on stderr: a bar (tty), a line every 10 s (plain), or none (quiet); auto "
                   "is the bar on a terminal, plain lines elsewhere.")
@plan_options(backend_help="Same as --to.", read_only_hidden=True)
def command(from_: str | None, to: str | None, branches: tuple[str, ...], all_tags: bool, dry_run: bool,
            jobs: int, fmt: str, progress: str, session: Session) -> None:
    """Copy cache from one backend to another, so the first build after a switch is warm.

    For each branch, the old backend's cache for it is copied to the new backend's name for it: blobs the
    target lacks (mounted on the same registry, streamed otherwise), then the manifest, converted to an image
    manifest when the new backend exports image-manifest=true (as Pulp needs). Any two backends with a store
    work: registries, Pulp, and local directories in either direction. Blobs go --jobs at a time; large ones
    in chunks. Running it again copies only what is missing, and continues a large blob's upload where it
    stopped. Exit status 0 when every cache was copied, 1 when one failed, 130 when stopped (Ctrl-C, SIGTERM).
    """
    from cacheport.config import resolve_migration
    from cacheport.ops.seed import branch_pairs, describe, name_pairs, seed, with_mounts
    from cacheport.plan import backend_request
    from cacheport.render import human_size

    backend = session.options.backend
    if to and backend and to.lower() != backend.lower():
        raise CacheportError(f"--to {to} and --backend {backend} disagree; give one")
    if session.options.read_only:
        raise CacheportError("seed writes to the new backend; --read-only contradicts it (try --dry-run)")
    if bool(branches) == all_tags:
        raise CacheportError("say what to copy: --branch BRANCH (repeatable) or --all")
    session = attrs.evolve(session, options=attrs.evolve(session.options, backend=to or backend, read_only=None,
                                                         backend_flag="--to"), plan_warnings=False)
    config, plugins, plan = session.config, session.plugins, session.plan
    _check_may_write(plan.context, dry_run)
    new = plugins.backend(plan.backend)
    old_name = from_ or resolve_migration(config)["from"].value
    if not old_name:
        raise CacheportError("no backend to copy from: give --from OLD, or set [migration] from = \"OLD\"")
    old = plugins.backend(str(old_name))
    if old.name == new.name:
        raise CacheportError(f"--from and --to both name {new.name!r}; nothing to copy")
    if plan.request is None:
        raise CacheportError(f"backend {new.name!r} gave no request")  # build_plan always sets it
    old_request, _ = backend_request(config, old, plan.request)
    old_store, new_store = session.store(old, old_request), session.store(new, plan.request)
    if all_tags:
        from cacheport.report.record import is_record

        with old_store.open() as opened:
            names = [n for n in opened.names() if not is_record(n)]  # build records are not caches
        default = plan.context.default_branch
        pairs = name_pairs((old.name, old_store), (new.name, new_store), names, default)
        if not pairs:
            warn(f"no caches in {old_store.location}")
        elif old_store.fixed and not new_store.fixed and any(p.branch == default for p in pairs):
            say(f"{old.name} keeps one cache for every branch: copying it as the default branch's ({default}); "
                "--branch BRANCH copies it as another's")
    else:
        pairs = branch_pairs((old.name, old_store), (new.name, new_store), branches)
        with old_store.open() as opened:
            pairs = with_mounts(pairs, lambda name: _holds(opened, name))

    began = time.monotonic()
    text = fmt == "text"
    with _stoppable(), _reporter(progress, sys.stderr.isatty()) as reporter:
        outcomes = seed(pairs, dry_run=dry_run, reporter=reporter, jobs=jobs,
                        on_done=(lambda o: click.echo(describe(o))) if text else None)
    seconds = time.monotonic() - began
    failed = [o for o in outcomes if o.status == "failed"]
    total: dict[str, Any] = {
        "from": old.name, "to": new.name, "dry_run": dry_run,
        "refs": [o.as_dict() for o in outcomes],
        **{s.replace("-", "_"): sum(o.status == s for o in outcomes) for s in
           ("copied", "up-to-date", "would-copy", "failed")},
        "bytes_uploaded": sum(o.bytes_uploaded for o in outcomes if o.status == "copied"),
        "blobs_uploaded": sum(o.uploaded for o in outcomes if o.status == "copied"),
        "blobs_mounted": sum(o.mounted for o in outcomes if o.status == "copied"),
        "blobs_present": sum(o.present for o in outcomes if o.status == "copied"),
        "blobs_resumed": sum(o.resumed for o in outcomes if o.status == "copied"),
        "seconds": round(seconds, 3),
    }
    if not text:
        click.echo(json.dumps(total, indent=2))
    elif dry_run:
        click.echo(f"dry run: {len(outcomes) - len(failed)} ref(s) checked, nothing written")
    else:
        click.echo(f"seeded {old.name} → {new.name}: {total['copied']} copied, {total['up_to_date']} up to date, "
                   f"{len(failed)} failed; {human_size(total['bytes_uploaded'])} uploaded, "
                   f"{total['blobs_mounted']} blob(s) mounted, in {seconds:.1f}s")
    if failed:
        names_ = ", ".join(o.pair.name for o in failed)
        click.echo(f"cacheport: error: {len(failed)} of {len(outcomes)} ref(s) failed: {names_}", err=True)
        sys.exit(1)


def _holds(session: StoreSession, name: str) -> bool:
    """Whether the store holds ``name``; an outage is seed's own first check to report, not this one's."""
    try:
        return session.manifest_digest(name) is not None
    except CacheportError:
        return False


def _check_may_write(context: Context, dry_run: bool) -> None:
    """Seed writes branch names directly: only a job the plan's trust decision lets write a shared cache may."""
    if not dry_run and context.trust is not None and not context.trust.writes_shared:
        raise CacheportError(f"not seeding from this job: {context.trust.reason} Seed writes the names protected "
                             "builds read; --dry-run shows what it would copy")

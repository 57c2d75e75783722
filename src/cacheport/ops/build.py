"""Running a build with the plan's cache: ``cacheport build``. Side effects at the edge.

The build runs the docker client directly: our own rendered flags (python-on-whales' ``buildx.build`` takes
one ``cache_to`` and joins dict values without CSV quoting), one inspection of the builder the build will
use (``buildx inspect`` and the engine's driver status, at the same time), logins only when the plan has
credentials, and nothing heavy imported before the build starts: importing python-on-whales alone costs
more than cacheport's whole start-up, so it is left to ``cacheport doctor``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from cacheport import report
from cacheport.entry import CacheEntry
from cacheport.errors import ConfigError
from cacheport.masking import mask, secret_forms, terminal_safe
from cacheport.mounts import MountOutcome
from cacheport.ops import exports as exports_rule

# build_report, publish, surprises and image_output were here before; their old import paths still work.
from cacheport.ops.build_report import build_report as build_report
from cacheport.ops.build_report import publish as publish
from cacheport.ops.build_report import show, with_unpassed
from cacheport.ops.build_report import surprises as surprises
from cacheport.ops.buildx_args import image_output as image_output
from cacheport.ops.buildx_args import pushes
from cacheport.ops.docker import (
    BuildError,
    debug_refusal,
    fit_to_builder,
    inspect_builder,
    last_line,
    said,
    which_builder,
)
from cacheport.ops.mounts import Around
from cacheport.ops.preflight import usable
from cacheport.plan import Plan
from cacheport.records import Login, Swap
from cacheport.render import plan_secrets

if TYPE_CHECKING:
    from cacheport.ops.docker import Docker


def command(
    imports: Sequence[CacheEntry],
    exports: Sequence[CacheEntry],
    context: str,
    tags: Sequence[str] = (),
    file: str | None = None,
    extra: Sequence[str] = (),
    metadata_file: str | None = None,
) -> list[str]:
    """The ``buildx build`` arguments (after the docker client's own), one word per flag value.

    Progress comes as rawjson: the record :mod:`cacheport.report` reads (and the CLI's reporter shows).
    """
    args = ["buildx", "build", "--progress=rawjson"]
    if metadata_file:
        args.append(f"--metadata-file={metadata_file}")
    args += [f"--cache-from={e.format()}" for e in imports]
    args += [f"--cache-to={e.format()}" for e in exports]
    for tag in tags:
        args += ["--tag", tag]
    if file:
        args += ["--file", file]
    return [*args, *extra, context]


class Keeper(Protocol):
    """What keeps the build's record for ``cacheport history`` off the build's critical path (the CLI's
    :class:`cacheport.cli.history.BuildHistory`, which also waits for it): told when the build starts, with the key
    the build signs with (under ``signing = "keyless"`` a signer whose certificate the record's signature
    reuses), then given the final report. Neither ever fails the build."""

    def begin(self, key: object | None) -> None: ...
    def keep(self, found: report.BuildReport) -> None: ...


class Reporter(Protocol):
    """What shows a person the build's log while it runs (the CLI's choice, from the user's ``--progress``):
    fed buildx's output as it arrives, rawjson records and buildx's own lines; closed when it ends."""

    #: Where text buildx printed instead of a build (its ``--help``) goes, as it is.
    write: Callable[[str], None]

    def feed(self, text: str) -> None: ...
    def close(self) -> None: ...


def choose_logins(logins: Sequence[Login], environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """``(registry, username, password)`` for the first usable login of each registry."""
    chosen: dict[str, tuple[str, str, str]] = {}
    for login in logins:
        if login.registry in chosen:
            continue
        password = environ.get(login.password_env, "")
        username = (environ.get(login.username_env, "") if login.username_env else "") or login.username
        if password and username:
            chosen[login.registry] = (login.registry, username, password)
    return list(chosen.values())


def run(
    plan: Plan,
    context: str,
    tags: Sequence[str],
    file: str | None,
    extra: Sequence[str],
    docker: Docker,
    say: Callable[[str], None],
    *,
    progress: Callable[[Callable[[str], None]], Reporter],
    report_file: str | None = None,
    require_hit: bool = False,
    mounts: Around | None = None,
    keep: Keeper | None = None,
    history: exports_rule.Reader | None = None,
) -> int:
    """Log in, check the builder, leave out local imports BuildKit can't use, build with live logs, rotate local
    caches, and end with what BuildKit did with the cache, on ``docker``'s builder. Returns the build's exit code
    (1 with ``require_hit`` when no import hit). ``progress`` makes the log's display, given where its lines go
    (masked, and made safe for a terminal); ``extra`` comes without ``--progress``, which is cacheport's.
    ``keep`` is told when the build starts and gets the final report before the exports are signed, so the
    record is written while they are. ``history`` reads the branch's build records (never raising),
    which ``exports = "auto"`` goes by; under it, or ``when-changed``, exports of a name the build also imports
    may wait for it (:mod:`cacheport.ops.exports`): skipped when no step executed, else written by an export-only
    pass; and a ``mode=max`` export the branch never reads may be narrowed to ``mode=min``.

    With ``mounts``, the Dockerfile's cache mounts are restored into the builder before the build and saved after
    a successful one (:mod:`cacheport.ops.mounts`); their outcomes go into the report, and never fail the build.

    Run it with ``docker`` made in :func:`cacheport.ops.logins.build_environment`'s environment, so its logins
    stay out of the user's docker config."""
    import subprocess

    environ = docker.environ
    if refusal := debug_refusal(environ):
        raise ConfigError(refusal)
    from cacheport.ops import signatures

    key = signatures.signing_key(plan, environ)  # before anything: a protected export that can't be signed stops
    pinned = signatures.pin_in_background(plan, environ)
    # the branch's last builds, read while we log in (what it says goes through the masking ``say`` made below)
    records = exports_rule.in_background(plan, history, lambda line: say(line))
    if keep is not None:  # the history's shelf is opened and made room in while the build runs
        keep.begin(key)
    if mounts is not None:  # the mounts a protected build restores are verified too, and those it saves signed
        mounts = attrs.evolve(mounts, signing=signatures.store_signing(plan, key))
    # Everything cacheport streams or says is read by people: never a secret value, nor its base64.
    forms = secret_forms([*plan_secrets(plan, environ), *signatures.key_values(plan, environ)])
    say = _masking(say, forms)
    docker = attrs.evolve(docker, environ=signatures.without_key(plan, environ))
    environ = docker.environ
    located = docker.located()
    if located is None:
        say(f"error: the docker client {docker.client!r} was not found; install it, or set CACHEPORT_DOCKER to its "
            "path")
        return 127
    docker = located
    if plan.logins:
        from cacheport.ops.logins import build_warnings, registry_logins, restore_helper

        for warning in build_warnings(registry_logins(plan.logins, environ)):
            say(f"warning: {warning}")
    for registry, username, password in choose_logins(plan.logins, environ):
        try:
            done = docker.run("login", "--username", username, "--password-stdin", registry, stdin=password)
            failed = last_line(done.stderr or done.stdout) if done.returncode else ""
        except (OSError, subprocess.SubprocessError) as exc:
            failed = str(exc)
        if failed:
            # A registry that is down must not fail the build: the cache is an optimisation. Docker's own login
            # there, if the user has one, still applies.
            restore_helper(environ, registry)
            say(f"warning: login to {registry} failed ({failed}); building without it")
    _promote([s for s in plan.swaps if not s.replace], say)  # a cache from an older place, before it is read
    plan, verdicts = pinned()
    for verdict in verdicts:
        say(f"signature: {signatures.line(verdict)}")
    plan, left_out = usable(plan)
    for _entry, problem in left_out:
        if problem.broken:  # no cache yet is no news: the report says it
            say(f"warning: {problem.message}")
    imports, exports = list(plan.imports), list(plan.exports)
    image_report = ""
    no_buildx = False
    try:
        builder = inspect_builder(docker)
    except BuildError as exc:
        no_buildx = "unknown command: docker buildx" in str(exc)
        if not no_buildx:  # then buildx can't start: the error after it says so
            say(f"warning: could not inspect {which_builder(docker)} ({exc}); passing the cache flags as planned")
    else:
        imports, exports, unfit = fit_to_builder(imports, exports, builder)
        for each in unfit:
            say(f"warning: {each}")
        added, image_note, image_report = image_output(builder, [*tags, *plan.tags], extra)
        extra = [*extra, *added]
        if image_note:
            say(f"note: {image_note}")
    if plan.tags and exports and not pushes(extra):
        say("warning: inline cache is stored only in a pushed image; add -- --push (the cache goes to "
            + ", ".join(plan.tags) + ")")
    mount_outcomes: list[MountOutcome] = []
    if mounts is not None and not no_buildx:
        for warning in mounts.warnings:
            say(f"warning: {warning}")
        mount_outcomes = mounts.restore(docker)  # the report at the end says what became of each
    decision = exports_rule.decide(plan, imports, exports, records())
    held, at_once = list(decision.held), list(decision.inline)  # held: written after the build if something changed
    reporter = progress(lambda line: _echo(terminal_safe(mask(line, forms))))
    try:
        built = _buildx(docker, lambda meta: command(imports, at_once, context, [*tags, *plan.tags], file, extra,
                                                     meta), reporter.feed)
    except OSError as exc:
        reporter.close()
        say(f"error: could not run {docker.client}: {exc.strerror}")
        return 127
    reporter.close()
    code, stream, meta, prelude, wall = built.code, built.stream, built.meta, built.prelude, built.seconds
    if not prelude.started:  # no progress record: buildx refused to start, or printed text (its --help) instead
        if code != 0:
            if no_buildx:  # docker's own complaint is about the first buildx flag it doesn't know
                say(f"error: buildx is not installed (docker: unknown command: docker buildx), exit {code}: install "
                    "the docker-buildx plugin; `docker buildx version` must work, and `cacheport doctor` checks "
                    "the whole setup")
                return code
            say(f"error: buildx did not start the build (exit {code}): {prelude.failure()}{_start_hint(prelude)}")
            return code
        for text in prelude.held:
            reporter.write(text)
        if "".join(prelude.held).strip():
            return code
    if code == 0:
        _promote(plan.swaps, say)
        if mounts is not None and not no_buildx:
            mount_outcomes += mounts.save(docker)
    found_report = attrs.evolve(build_report(stream, meta, imports, at_once, plan, wall), mounts=tuple(mount_outcomes))
    found_report = exports_rule.noted(found_report, decision)
    if held:
        found_report = _export_after(found_report, held, exports, docker, context, file, extra, plan, code, say)
    found_report = with_unpassed(found_report, left_out, verdicts)
    if keep is not None:  # the build's record for the cache's history, written while the exports are signed
        keep.keep(found_report)
    if key is not None and code == 0:
        for signed in signatures.sign_written(plan, found_report.exports, key, environ):
            say(f"signature: {signed}")
    show(found_report, environ, say)
    if image_report and code == 0:
        say(f"image: {image_report}")
    for warning in surprises(found_report, plan):
        say(f"warning: {warning}")
    publish(found_report, environ, say, report_file)
    if code == 0 and require_hit and not any(i.status == report.HIT for i in found_report.imports):
        say("error: --require-hit: no cache import hit (see the cache report above)")
        return 1
    return code


@attrs.frozen
class _Pass:
    code: int
    stream: str
    meta: Any
    prelude: Prelude
    seconds: float


def _buildx(docker: Docker, words: Callable[[str], list[str]], feed: Callable[[str], None] | None) -> _Pass:
    """One ``buildx build`` (``words`` given the metadata file's path), its output fed on as it comes; OSError
    when the client can't run."""
    import subprocess
    import tempfile

    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cacheport-build-") as tmp:
        metadata = Path(tmp) / "metadata.json"
        stream: list[str] = []
        proc = subprocess.Popen([*docker.command, *words(str(metadata))], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(docker.environ))
        assert proc.stdout is not None
        prelude = Prelude(feed or (lambda _: None))
        for raw in proc.stdout:
            text = raw.decode("utf-8", errors="replace")
            stream.append(text)
            prelude.add(text)
        code = proc.wait()
        try:
            meta: Any = json.loads(metadata.read_text()) if metadata.is_file() else None
        except (OSError, ValueError):
            meta = None
    return _Pass(code, "".join(stream), meta, prelude, time.monotonic() - began)


def _export_after(found: report.BuildReport, held: Sequence[CacheEntry], exports: Sequence[CacheEntry],
                  docker: Docker, context: str, file: str | None, extra: Sequence[str], plan: Plan, code: int,
                  say: Callable[[str], None]) -> report.BuildReport:
    """The exports held back from the build (``exports = "auto"`` or ``"when-changed"``): skipped when nothing
    changed since they were written, else written by an export-only pass (every step cached in the builder); the
    report with their outcomes, in the plan's order. A failed pass is a failed export, never a failed build."""
    if code != 0:
        outcomes = [report.ExportReport(e, report.SKIPPED, "the build failed before exporting") for e in held]
    elif all(exports_rule.unchanged(found, e) for e in held):
        outcomes = [exports_rule.skipped(e) for e in held]
    else:
        say("note: exporting the cache (an export-only pass of the same build: every step is cached in the builder)")
        try:
            done = _buildx(docker, lambda meta: command(found_imports(found), held, context, (), file,
                                                        exports_rule.export_only(extra), meta), None)
        except OSError as exc:
            done = None
            why = f"could not run {docker.client}: {exc.strerror}"
        if done is not None and done.code != 0:
            why = (report.parse_rawjson(done.stream).error if done.prelude.started else done.prelude.failure()) or (
                f"exit {done.code}")
        if done is None or done.code != 0:
            outcomes = [report.ExportReport(e, report.FAILED, f"the export-only pass failed: {why}") for e in held]
        else:
            written = build_report(done.stream, done.meta, found_imports(found), held, plan, done.seconds)
            # What the export costs is the whole pass: it runs only for the export.
            outcomes = [attrs.evolve(e, seconds=round(done.seconds, 3)) for e in written.exports]
    order = {e: i for i, e in enumerate(exports)}
    order.update({e.with_attrs(mode="min"): i for i, e in enumerate(exports)})  # a narrowed export's place
    return attrs.evolve(found, exports=sorted([*found.exports, *outcomes], key=lambda e: order.get(e.entry, 0)))


def found_imports(found: report.BuildReport) -> list[CacheEntry]:
    """The imports a report is about, in its order."""
    return [i.entry for i in found.imports]


class Prelude:
    """What buildx says before the build starts (before its first rawjson record), held back: a build that
    never starts is reported in one line, not with buildx's whole usage text."""

    def __init__(self, feed: Callable[[str], None]) -> None:
        self.feed = feed
        self.held: list[str] = []
        self.started = False

    def add(self, text: str) -> None:
        if not self.started and text.lstrip().startswith("{"):
            self.started = True
            for held in self.held:
                self.feed(held)
            self.held = []
        if self.started:
            self.feed(text)
        else:
            self.held.append(text)

    def failure(self) -> str:
        """The line that says why buildx did not start: its first ``ERROR``, else its last line."""
        lines = said(line.strip() for line in "".join(self.held).splitlines())
        return next((line for line in lines if line.startswith("ERROR")), lines[-1] if lines else "no output")


def _start_hint(prelude: Prelude) -> str:
    if re.search(r"requires (exactly )?1 argument", prelude.failure()):  # buildx 0.13, 0.29
        return ("; the build context goes before --, buildx's own flags after it: "
                "cacheport build CONTEXT [-t TAG] -- FLAGS")
    return ""


def _promote(swaps: Sequence[Swap], say: Callable[[str], None]) -> None:
    from cacheport.ops.rotate import moved, promote

    for swap in swaps:
        try:
            if promote(swap) and not swap.replace:  # the rotation after every build is no news
                say(moved(swap))
        except OSError as exc:  # a cache problem must not fail a build, nor a built image
            say(f"warning: could not move {swap.new} into place: {exc}")


def _masking(say: Callable[[str], None], forms: frozenset[str]) -> Callable[[str], None]:
    return lambda message: say(mask(message, forms))


def _echo(line: str) -> None:
    sys.stderr.write(line)
    sys.stderr.flush()

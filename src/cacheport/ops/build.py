"""Running a build with the plan's cache: ``cacheport build``. Side effects at the edge.

The build runs the docker client directly: our own rendered flags (python-on-whales' ``buildx.build`` takes
one ``cache_to`` and joins dict values without CSV quoting), one inspection of the builder the build will
use (``buildx inspect`` and the engine's driver status, at the same time), logins only when the plan has
credentials, and nothing heavy imported before the build starts: importing python-on-whales alone costs
more than cacheport's whole start-up, so it is left to ``cacheport doctor``.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from cacheport import report
from cacheport.entry import CacheEntry
from cacheport.errors import CacheportError, ConfigError
from cacheport.masking import mask, secret_forms, terminal_safe
from cacheport.ops.preflight import usable
from cacheport.ops.progress import PlainPrinter, Prelude, said, take_progress
from cacheport.plan import Plan
from cacheport.records import Login, Swap
from cacheport.render import plan_secrets

# Cache types the docker driver can export only with the containerd image store; s3 and azblob never.
_NEEDS_CONTAINERD_STORE = {"registry", "local", "gha"}
_ENGINE_NEVER = {"s3", "azblob"}
# Drivers whose builder keeps what it builds unless told where it goes (the docker driver's lands in the engine).
_KEEPS_RESULTS = {"docker-container", "remote", "kubernetes"}
# buildx arguments that say where the result goes, or that there is no image to keep.
_OUTPUT_FLAGS = ("--load", "--push", "--output", "-o", "--call", "--check", "--print")


@attrs.frozen
class Builder:
    """What the current buildx builder can do.

    Attributes:
        name: the builder's name.
        driver: ``docker``, ``docker-container``, ``kubernetes``, ``remote``.
        containerd_store: for the docker driver, whether the engine uses the containerd image store.
        buildkit: BuildKit's version as numbers (``(0, 13, 1)``), when the builder says.
    """

    name: str
    driver: str
    containerd_store: bool = False
    buildkit: tuple[int, ...] | None = None


def fit_to_builder(
    imports: Sequence[CacheEntry], exports: Sequence[CacheEntry], builder: Builder
) -> tuple[list[CacheEntry], list[CacheEntry], list[str]]:
    """Drop what this builder cannot do, with one line each saying why and how to fix it. Never fails."""
    notes: list[str] = []
    keep_in = [e for e in imports if not (builder.driver == "docker" and e.type in _ENGINE_NEVER)]
    keep_out: list[CacheEntry] = []
    for entry in exports:
        if builder.driver == "docker" and entry.type in _ENGINE_NEVER:
            notes.append(f"builder {builder.name!r} (docker driver) cannot use {entry.type} cache; fix: "
                         "`docker buildx create --use --driver docker-container` or a remote BuildKit")
        elif builder.driver == "docker" and entry.type in _NEEDS_CONTAINERD_STORE and not builder.containerd_store:
            notes.append(f"builder {builder.name!r} uses the docker driver without the containerd image store, "
                         f"which cannot export {entry.type} cache; building with imports only. Fix: set "
                         '"features": {"containerd-snapshotter": true} in daemon.json, or '
                         "`docker buildx create --use --driver docker-container`")
        else:
            keep_out.append(entry)
    if len(keep_out) > 1 and builder.buildkit is not None and builder.buildkit < (0, 11):
        version = ".".join(map(str, builder.buildkit))
        notes.append(f"builder {builder.name!r} runs BuildKit {version}, which exports one cache only (0.11 added "
                     f"several); exporting to {keep_out[0].get('ref') or keep_out[0].type} only. Fix: update BuildKit")
        keep_out = keep_out[:1]
    dropped_in = len(imports) - len(keep_in)
    if dropped_in:
        notes.append(f"builder {builder.name!r} (docker driver) cannot import s3/azblob cache; skipped {dropped_in}")
    return keep_in, keep_out, notes


def image_output(builder: Builder, tags: Sequence[str], extra: Sequence[str]) -> tuple[list[str], str, str]:
    """Where a tagged build with no output goes on a builder that keeps results to itself: ``--load`` for one
    platform (into the engine), nothing for several (not every engine takes them). Returns the arguments to add, a
    line to say before the build and one for the report; all empty when there is nothing to do."""
    if builder.driver not in _KEEPS_RESULTS or not tags or _gives_output(extra):
        return [], "", ""
    keeps = f"builder {builder.name!r} ({builder.driver} driver) keeps what it builds to itself"
    if len(_platforms(extra)) > 1:
        # Only an engine with the containerd image store takes several platforms, and which one this is is unknown.
        how = ("add -- --push to send it to its registry, -- --output type=oci,dest=FILE, or -- --load on an engine "
               "with the containerd image store")
        return ([], f"{keeps}, and a multi-platform image is not loaded for you: {tags[0]} stays in the builder's "
                f"cache; {how}", f"{tags[0]} is in the builder's cache only (multi-platform); {how}")
    return (["--load"], f"{keeps}: adding --load, so {', '.join(tags)} is in the engine afterwards",
            f"{', '.join(tags)} loaded into the engine (--load added: {keeps})")


def _gives_output(extra: Sequence[str]) -> bool:
    return any(a in _OUTPUT_FLAGS or a.startswith(tuple(f"{f}=" for f in _OUTPUT_FLAGS)) or
               (a.startswith("-o") and not a.startswith("--")) for a in extra)


def _platforms(extra: Sequence[str]) -> list[str]:
    found: list[str] = []
    for i, arg in enumerate(extra):
        if arg.startswith("--platform="):
            value = arg.split("=", 1)[1]
        elif arg == "--platform" and i + 1 < len(extra):
            value = extra[i + 1]
        else:
            continue
        found += [p for p in value.split(",") if p.strip()]
    return found


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

    Progress comes as rawjson: the record :mod:`cacheport.report` reads (and :mod:`.progress` prints).
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


def chosen_builder(extra: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The builder buildx will use: ``--builder`` among buildx's arguments, else ``BUILDX_BUILDER``, else None
    (the current one)."""
    for i, arg in enumerate(extra):
        if arg == "--builder" and i + 1 < len(extra):
            return extra[i + 1]
        if arg.startswith("--builder="):
            return arg.split("=", 1)[1]
    return environ.get("BUILDX_BUILDER") or None


def parse_inspect(text: str) -> tuple[str, str, str | None]:
    """``(name, driver, BuildKit version)`` from ``docker buildx inspect``'s text (0.10 to 0.29 print it so)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("Name", "Driver", "BuildKit version", "Buildkit") and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    if "Name" not in fields or "Driver" not in fields:
        raise ValueError("docker buildx inspect printed no builder name and driver")
    return fields["Name"], fields["Driver"], fields.get("BuildKit version") or fields.get("Buildkit")


def inspect_builder(docker: Sequence[str], environ: Mapping[str, str], name: str | None = None) -> Builder:
    """What the builder ``name`` (None: the current one) is, from one ``buildx inspect`` and, at the same time,
    the engine's driver status (the docker driver can export cache only with the containerd image store).

    Raises :class:`BuildError` with docker's last line when the builder can't be inspected.
    """
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*docker, *args], capture_output=True, text=True, env=dict(environ), timeout=60,
                              stdin=subprocess.DEVNULL)

    with ThreadPoolExecutor(2) as pool:
        inspected = pool.submit(call, "buildx", "inspect", *([name] if name else []))
        # A docker-driver builder is a docker context of the same name: ask that engine, not the current one.
        info = pool.submit(call, *(["--context", name] if name else []), "info", "--format", "{{json .DriverStatus}}")
        try:
            found = inspected.result()
        except (OSError, subprocess.SubprocessError) as exc:
            raise BuildError(str(exc)) from None
        if found.returncode != 0:
            raise BuildError(last_line(found.stderr or found.stdout))
        try:
            builder_name, driver, version = parse_inspect(found.stdout)
        except ValueError as exc:
            raise BuildError(str(exc)) from None
        store = False
        if driver == "docker":
            try:
                status = info.result()
            except (OSError, subprocess.SubprocessError):
                status = None
            store = status is not None and status.returncode == 0 and "containerd.snapshotter" in status.stdout
    return Builder(builder_name, driver, store, _version(version))


class BuildError(Exception):
    """The docker client failed, or answered what we can't read; the message is its last line."""


def debug_refusal(environ: Mapping[str, str]) -> str | None:
    """Why python-on-whales must not run here: its debug switch prints every command's whole environment
    (every secret in it) to stdout, or None."""
    if environ.get("PYTHON_ON_WHALES_DEBUG", "") not in ("", "0"):
        return ("PYTHON_ON_WHALES_DEBUG is set: python-on-whales would print the whole environment, secrets "
                "included; unset it (cacheport -v shows what cacheport does)")
    return None


def unexpected(exc: BaseException) -> str:
    """One line for a docker client that answered, but not in the form python-on-whales reads."""
    return f"its answer was not what cacheport expected ({type(exc).__name__})"


def _version(text: str | None) -> tuple[int, ...] | None:
    numbers = tuple(int(n) for n in re.findall(r"\d+", (text or "").split("+")[0])[:3])
    # The docker driver reports its embedded BuildKit as v0.0.0+unknown: that says nothing.
    return numbers if any(numbers) else None


def run(
    plan: Plan,
    context: str,
    tags: Sequence[str],
    file: str | None,
    extra: Sequence[str],
    environ: Mapping[str, str],
    say: Callable[[str], None],
    *,
    report_file: str | None = None,
    require_hit: bool = False,
) -> int:
    """Log in, check the builder, leave out local imports BuildKit can't use, build with live logs, rotate local
    caches, and end with what BuildKit did with the cache. Returns the build's exit code (1 with ``require_hit``
    when no import hit).

    Run it in :func:`cacheport.ops.logins.build_environment`'s environment, so its logins stay out of the
    user's docker config."""
    import shutil
    import subprocess

    if refusal := debug_refusal(environ):
        raise ConfigError(refusal)
    # Everything cacheport streams or says is read by people: never a secret value, nor its base64.
    forms = secret_forms(plan_secrets(plan, environ))
    say = _masking(say, forms)
    client = environ.get("CACHEPORT_DOCKER", "docker")
    found = shutil.which(client, path=environ.get("PATH"))
    if found is None:
        say(f"error: the docker client {client!r} was not found; install it, or set CACHEPORT_DOCKER to its path")
        return 127
    docker = [found]
    if plan.logins:
        from cacheport.ops.logins import build_warnings, registry_logins

        for warning in build_warnings(registry_logins(plan.logins, environ)):
            say(f"warning: {warning}")
    for registry, username, password in choose_logins(plan.logins, environ):
        try:
            done = subprocess.run([*docker, "login", "--username", username, "--password-stdin", registry],
                                  input=password, capture_output=True, text=True, env=dict(environ), timeout=120)
            failed = last_line(done.stderr or done.stdout) if done.returncode else ""
        except (OSError, subprocess.SubprocessError) as exc:
            failed = str(exc)
        if failed:
            # A registry that is down must not fail the build: the cache is an optimisation.
            say(f"warning: login to {registry} failed ({failed}); building without it")
    _promote([s for s in plan.swaps if not s.replace], say)  # a cache from an older place, before it is read
    plan, left_out = usable(plan)
    for _entry, problem in left_out:
        if problem.broken:  # no cache yet is no news: the report says it
            say(f"warning: {problem.message}")
    imports, exports = list(plan.imports), list(plan.exports)
    extra, progress = take_progress(extra)
    if progress not in (None, "auto", "plain", "quiet", "rawjson"):
        say(f"note: --progress={progress} is not passed to buildx: cacheport reads its rawjson progress to report "
            "what happened to the cache, and shows the log as plain text")
    name = chosen_builder(extra, environ)
    image_report = ""
    no_buildx = False
    try:
        builder = inspect_builder(docker, environ, name)
    except BuildError as exc:
        no_buildx = "unknown command: docker buildx" in str(exc)
        which = f"the builder {name!r}" if name else "the current buildx builder"
        if not no_buildx:  # then buildx can't start: the error after it says so
            say(f"warning: could not inspect {which} ({exc}); passing the cache flags as planned")
    else:
        imports, exports, notes = fit_to_builder(imports, exports, builder)
        for note in notes:
            say(f"warning: {note}")
        added, image_note, image_report = image_output(builder, [*tags, *plan.tags], extra)
        extra = [*extra, *added]
        if image_note:
            say(f"note: {image_note}")
    if plan.tags and exports and not _pushes(extra):
        say("warning: inline cache is stored only in a pushed image; add -- --push (the cache goes to "
            + ", ".join(plan.tags) + ")")
    import tempfile


    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cacheport-build-") as tmp:
        metadata = Path(tmp) / "metadata.json"
        full = [*docker, *command(imports, exports, context, [*tags, *plan.tags], file, extra, str(metadata))]
        stream: list[str] = []
        try:
            proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=dict(environ))
        except OSError as exc:
            say(f"error: could not run {found}: {exc.strerror}")
            return 127
        assert proc.stdout is not None

        def show(line: str) -> None:
            if progress != "quiet":
                _echo(terminal_safe(mask(line, forms)))

        printer = PlainPrinter(show)
        prelude = Prelude(show if progress == "rawjson" else printer.feed)
        for raw in proc.stdout:
            text = raw.decode("utf-8", errors="replace")
            stream.append(text)
            prelude.add(text)
        printer.close()
        code = proc.wait()
        try:
            meta: Any = json.loads(metadata.read_text()) if metadata.is_file() else None
        except (OSError, ValueError):
            meta = None
    wall = time.monotonic() - began
    if not prelude.started:  # no progress record: buildx refused to start, or printed text (its --help) instead
        if code != 0:
            if no_buildx:  # docker's own complaint is about the first buildx flag it doesn't know
                say(f"error: buildx is not installed (docker: unknown command: docker buildx), exit {code}: install "
                    "the docker-buildx plugin; `docker buildx version` must work, and `cacheport doctor` checks "
                    "the whole setup")
                return code
            say(f"error: buildx did not start the build (exit {code}): {prelude.failure()}{_start_hint(prelude)}")
            return code
        for held in prelude.held:
            show(held)
        if "".join(prelude.held).strip():
            return code
    if code == 0:
        _promote(plan.swaps, say)
    found_report = build_report("".join(stream), meta, imports, exports, plan, wall)
    if left_out:
        found_report = attrs.evolve(found_report, imports=[*found_report.imports, *(
            report.ImportReport(e, report.MISSED, "not passed to buildx: " + p.reason if p.broken else
                                "no cache there yet") for e, p in left_out)])
    for line in report.as_text(found_report).splitlines():
        say(f"cache: {line.strip()}" if not line.startswith(" ") else f"cache:   {line.strip()}")
    if image_report and code == 0:
        say(f"image: {image_report}")
    for warning in surprises(found_report, plan):
        say(f"warning: {warning}")
    publish(found_report, environ, say, report_file)
    if code == 0 and require_hit and not any(i.status == report.HIT for i in found_report.imports):
        say("error: --require-hit: no cache import hit (see the cache report above)")
        return 1
    return code


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


def build_report(stream: str, metadata: Any, imports: Sequence[CacheEntry], exports: Sequence[CacheEntry],
                 plan: Plan, wall: float) -> report.BuildReport:
    """What BuildKit did, from the rawjson stream and the metadata file; local exports named where the cache
    lives after the swap."""
    found = [report.parse_rawjson(stream, imports, exports)]
    if isinstance(metadata, dict):
        with contextlib.suppress(CacheportError):  # a metadata file we can't read: the stream still speaks
            found.append(report.parse_metadata(metadata, imports, exports))
    merged = report.merge(*found)
    moved = {s.new: s.current for s in plan.swaps}
    exports_ = [attrs.evolve(e, entry=e.entry.with_attrs(dest=moved[str(e.entry.get("dest"))]))
                if e.entry.type == "local" and e.entry.get("dest") in moved and e.status == report.WRITTEN else e
                for e in merged.exports]
    return attrs.evolve(merged, exports=exports_, wall_seconds=merged.wall_seconds or round(wall, 3))


def surprises(found: report.BuildReport, plan: Plan) -> list[str]:
    """Loud warnings for what should not happen: an export that failed (ignore-error hid it), an import that
    failed for another reason than not existing, and the default branch's cache missing on another branch."""
    out = [f"the cache export to {report.describe(e.entry)} FAILED ({e.reason or 'no reason given'}); the build "
           "passed anyway because of ignore-error, and nothing was stored" for e in found.exports
           if e.status == report.FAILED and found.status == report.SUCCEEDED]
    out += [f"the cache import from {report.describe(i.entry)} FAILED: {i.reason}" for i in found.imports
            if i.status == report.FAILED]
    ctx = plan.context
    if found.imports and ctx.branch and ctx.default_branch and ctx.branch != ctx.default_branch:
        last = found.imports[-1]
        if last.status == report.MISSED and not any(i.status == report.HIT for i in found.imports):
            out.append(f"no cache at {report.describe(last.entry)}: the default branch ({ctx.default_branch}) has "
                       "no cache to start this branch from; its next build exports one")
    return out


def publish(found: report.BuildReport, environ: Mapping[str, str], say: Callable[[str], None],
            report_file: str | None) -> None:
    """The report where the CI shows it: a job summary (GitHub), a collapsed log section (GitLab), a JSON file.

    Never fails the build: a file that can't be written is a warning.
    """
    if environ.get("GITHUB_STEP_SUMMARY"):
        try:
            with open(environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
                fh.write("### cacheport\n\n" + report.as_markdown(found) + "\n")
        except OSError as exc:
            say(f"warning: could not write the job summary: {exc.strerror}")
    if environ.get("GITLAB_CI") == "true":
        stamp = int(time.time())
        text = report.as_text(found).rstrip("\n").replace("\n", "\r\n")
        sys.stderr.write(f"\x1b[0Ksection_start:{stamp}:cacheport_report[collapsed=true]\r\x1b[0Kcacheport: cache "
                         f"report\r\n{text}\r\n\x1b[0Ksection_end:{stamp}:cacheport_report\r\x1b[0K\n")
    if report_file:
        try:
            Path(report_file).write_text(json.dumps(report.as_dict(found), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            say(f"warning: could not write the report to {report_file}: {exc.strerror}")


def _pushes(extra: Sequence[str]) -> bool:
    return any(a == "--push" or ("push=true" in a and a.startswith(("--output", "-o"))) for a in extra) or any(
        a in ("--output", "-o") and i + 1 < len(extra) and "push=true" in extra[i + 1] for i, a in enumerate(extra)
    )


def last_line(exc: Any) -> str:
    """The last line docker printed (an exception's stderr, or text): where it says what went wrong."""
    stderr = exc if isinstance(exc, str) else (getattr(exc, "stderr", "") or str(exc))
    lines = said(str(stderr).splitlines())
    return lines[-1].strip()[:300] if lines else (type(exc).__name__ if not isinstance(exc, str) else "no output")

"""Running a build with the plan's cache: ``cacheport build``. Side effects at the edge, through python-on-whales.

python-on-whales is imported only here, and only when a build runs. Its ``buildx.build`` takes one
``cache_to`` and joins dict values without CSV quoting, so we hand buildx our own rendered flags and use
python-on-whales for what it does well: the client's configuration, login, info, and streaming a command.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from cacheport.entry import CacheEntry
from cacheport.errors import ConfigError
from cacheport.masking import mask, plan_secrets, secret_forms, terminal_safe
from cacheport.plan import Plan
from cacheport.records import Login

# Cache types the docker driver can export only with the containerd image store; s3 and azblob never.
_NEEDS_CONTAINERD_STORE = {"registry", "local", "gha"}
_ENGINE_NEVER = {"s3", "azblob"}
_STEP = re.compile(r"^#(\d+) \[[^\]]*?\d+/\d+\] (\w+)")
_LINE = re.compile(r"^#(\d+) (.*)$")
# A step satisfied from an imported remote cache shows only its layers being fetched, not CACHED.
_FETCH = re.compile(r"^(?:extracting )?sha256:[0-9a-f]{64}\b")


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


@attrs.frozen
class Summary:
    """What the build log says about the cache.

    Attributes:
        steps: build steps (``[n/m]``) seen, by id, with their instruction.
        cached: ids of the steps that BuildKit reported CACHED.
    """

    steps: Mapping[str, str]
    cached: frozenset[str]

    @property
    def executed_runs(self) -> list[str]:
        """RUN steps that executed instead of coming from cache."""
        return [i for i, kind in self.steps.items() if kind == "RUN" and i not in self.cached]


def summarize(lines: Iterable[str]) -> Summary:
    """Read ``--progress=plain`` output."""
    steps: dict[str, str] = {}
    cached: set[str] = set()
    fetched: set[str] = set()
    worked: set[str] = set()
    for line in lines:
        if m := _STEP.match(line):
            steps.setdefault(m.group(1), m.group(2).upper())
        elif (m := _LINE.match(line.rstrip())) and m.group(1) in steps:
            sid, body = m.groups()
            if body == "CACHED":
                cached.add(sid)
            elif body.startswith("DONE") or body == "...":
                continue
            elif _FETCH.match(body):
                fetched.add(sid)
            else:
                worked.add(sid)
    return Summary(steps, frozenset(cached | (fetched - worked)))


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


def command(
    imports: Sequence[CacheEntry],
    exports: Sequence[CacheEntry],
    context: str,
    tags: Sequence[str] = (),
    file: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``buildx build`` arguments (after the docker client's own), one word per flag value."""
    args = ["buildx", "build", "--progress=plain"]
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


def inspect_builder(docker: Any) -> Builder:
    """Ask buildx and the engine what the current builder is."""
    builder = docker.buildx.inspect()
    store = False
    if builder.driver == "docker":
        status = docker.system.info().driver_status or []
        store = any("containerd.snapshotter" in str(value) for _key, value in status)
    version = next((n.version for n in builder.nodes or () if n.version), None)
    return Builder(builder.name, builder.driver, store, _version(version))


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
) -> int:
    """Log in, check the builder, build with live logs, rotate local caches. Returns the build's exit code."""
    from python_on_whales import DockerClient
    from python_on_whales.client_config import ClientNotFoundError
    from python_on_whales.exceptions import DockerException
    from python_on_whales.utils import stream_stdout_and_stderr

    if refusal := debug_refusal(environ):
        raise ConfigError(refusal)
    # Everything cacheport streams or says is read by people: never a secret value, nor its base64.
    forms = secret_forms(plan_secrets(plan, environ))
    say = _masking(say, forms)
    client = environ.get("CACHEPORT_DOCKER", "docker")
    docker = DockerClient(client_call=[client])
    try:
        docker.client_config.docker_cmd  # noqa: B018  (resolves the client binary)
    except ClientNotFoundError:
        say(f"error: the docker client {client!r} was not found; install it, or set CACHEPORT_DOCKER to its path")
        return 127
    for registry, username, password in choose_logins(plan.logins, environ):
        try:
            _login(docker, registry, username, password)
        except DockerException as exc:
            # A registry that is down must not fail the build: the cache is an optimisation.
            say(f"warning: login to {registry} failed ({last_line(exc)}); building without it")
    imports, exports = list(plan.imports), list(plan.exports)
    try:
        builder = inspect_builder(docker)
    except Exception as exc:  # a client that says nothing usable must not stop the build
        why = last_line(exc) if isinstance(exc, DockerException) else unexpected(exc)
        say(f"warning: could not inspect the buildx builder ({why}); passing the cache flags as planned")
    else:
        imports, exports, notes = fit_to_builder(imports, exports, builder)
        for note in notes:
            say(f"warning: {note}")
    if plan.tags and exports and not _pushes(extra):
        say("warning: inline cache is stored only in a pushed image; add -- --push (the cache goes to "
            + ", ".join(plan.tags) + ")")
    full = [*docker.client_config.docker_cmd, *command(imports, exports, context, [*tags, *plan.tags], file, extra)]
    log: list[str] = []
    code = 0
    try:
        for _source, raw in stream_stdout_and_stderr(full):
            line = raw.decode("utf-8", errors="replace")
            log.append(line.rstrip("\n"))
            sys.stderr.write(terminal_safe(mask(line, forms)))
            sys.stderr.flush()
    except DockerException as exc:
        code = exc.return_code or 1
    summary = summarize(log)
    if code == 0:
        from cacheport.ops.rotate import promote

        for swap in plan.swaps:
            try:
                promote(swap)
            except OSError as exc:  # the image is built: a cache problem must not turn that into a failure
                say(f"warning: could not move {swap.new} into place: {exc}")
    source = ", ".join(e.get("ref") or e.get("src") or e.get("scope") or e.type for e in imports) or "nothing"
    target = ", ".join(e.get("ref") or e.get("dest") or e.get("scope") or e.type for e in exports) or "nothing"
    say(f"cache: {len(summary.cached)}/{len(summary.steps)} steps cached, imported from {source}, exported to {target}"
        + ("" if code == 0 else f"; build failed with exit code {code}"))
    return code


def _login(docker: Any, registry: str, username: str, password: str) -> None:
    """``docker login`` with the password on stdin and docker's output captured: python-on-whales' own login
    lets docker's stderr through, where a registry's answer would reach the log unmasked."""
    from python_on_whales.utils import run as run_docker

    run_docker([*docker.client_config.docker_cmd, "login", "--password-stdin", "--username", username, registry],
               input=password.encode())


def _masking(say: Callable[[str], None], forms: frozenset[str]) -> Callable[[str], None]:
    return lambda message: say(mask(message, forms))


def _pushes(extra: Sequence[str]) -> bool:
    return any(a == "--push" or ("push=true" in a and a.startswith(("--output", "-o"))) for a in extra) or any(
        a in ("--output", "-o") and i + 1 < len(extra) and "push=true" in extra[i + 1] for i, a in enumerate(extra)
    )


def last_line(exc: Any) -> str:
    """The last line docker printed: where it says what went wrong."""
    stderr = getattr(exc, "stderr", "") or str(exc)
    lines = [line for line in str(stderr).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__

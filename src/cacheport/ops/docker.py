"""The docker client and the buildx builder, for every command that runs docker (``build``, ``doctor``,
``report``): which client (``CACHEPORT_DOCKER``, else ``docker``), which builder (the one the command was
given, else ``BUILDX_BUILDER``, else buildx's current one), running them, what a builder is and what it can't
do with a plan's cache, as problems that carry their fix.

The builder is decided once, by :func:`docker_for`, and travels down in the :class:`Docker` record; nothing
below it reads ``BUILDX_BUILDER`` or a command line again.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from cacheport.entry import CacheEntry
from cacheport.ops.buildx_args import builder_in as builder_in  # its old home

#: The client run when ``CACHEPORT_DOCKER`` names none.
DEFAULT_CLIENT = "docker"

# Cache types the docker driver can export only with the containerd image store; s3 and azblob never.
_NEEDS_CONTAINERD_STORE = {"registry", "local", "gha"}
_ENGINE_NEVER = {"s3", "azblob"}


@attrs.frozen
class Docker:
    """The docker client a command runs, and the builder its buildx commands use.

    Attributes:
        command: the client's command line: ``CACHEPORT_DOCKER`` (else ``docker``), or where it was found.
        builder: the builder's name, or None for buildx's current one.
        environ: the environment the client runs in.
    """

    command: tuple[str, ...]
    builder: str | None = None
    environ: Mapping[str, str] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def client(self) -> str:
        """The client as configured or found, for messages."""
        return self.command[0]

    def located(self) -> Docker | None:
        """This client with its path resolved on the environment's ``PATH``, or None when it isn't there."""
        import shutil

        found = shutil.which(self.client, path=self.environ.get("PATH"))
        return None if found is None else attrs.evolve(self, command=(found, *self.command[1:]))

    def run(self, *args: str, stdin: str | None = None, timeout: float = 120,
            cwd: str | None = None) -> subprocess.CompletedProcess[str]:
        """``docker ARGS``, its output captured as text; raises ``OSError``/``SubprocessError`` as
        :func:`subprocess.run` does."""
        return subprocess.run([*self.command, *args], input=stdin, capture_output=True, text=True,
                              env=dict(self.environ), timeout=timeout, cwd=cwd,
                              stdin=subprocess.DEVNULL if stdin is None else None)

    def builder_args(self) -> list[str]:
        """``--builder NAME`` for a buildx command, when a builder was chosen."""
        return ["--builder", self.builder] if self.builder else []


def docker_for(environ: Mapping[str, str], builder: str | None = None) -> Docker:
    """The docker client and builder a command uses: ``builder`` (the command's own ``--builder``), else
    ``BUILDX_BUILDER``, else None (buildx's current builder)."""
    return Docker((environ.get("CACHEPORT_DOCKER", DEFAULT_CLIENT),), builder or environ.get("BUILDX_BUILDER") or None,
                  environ)


@attrs.frozen
class Problem:
    """Something the builder can't do with the plan, and what fixes it.

    Attributes:
        problem: what is wrong, and what cacheport does about it (one line).
        fix: how to fix it, or ``""`` when there is nothing to do.
    """

    problem: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.problem}; fix: {self.fix}" if self.fix else self.problem


@attrs.frozen
class Builder:
    """What a buildx builder can do.

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
) -> tuple[list[CacheEntry], list[CacheEntry], list[Problem]]:
    """Drop what this builder cannot do, with a problem (and its fix) for each. Never fails."""
    problems: list[Problem] = []
    keep_in = [e for e in imports if not (builder.driver == "docker" and e.type in _ENGINE_NEVER)]
    keep_out: list[CacheEntry] = []
    for entry in exports:
        if builder.driver == "docker" and entry.type in _ENGINE_NEVER:
            problems.append(Problem(f"builder {builder.name!r} (docker driver) cannot use {entry.type} cache",
                                    "`docker buildx create --use --driver docker-container` or a remote BuildKit"))
        elif builder.driver == "docker" and entry.type in _NEEDS_CONTAINERD_STORE and not builder.containerd_store:
            problems.append(Problem(
                f"builder {builder.name!r} uses the docker driver without the containerd image store, which cannot "
                f"export {entry.type} cache; building with imports only",
                'set "features": {"containerd-snapshotter": true} in daemon.json, or '
                "`docker buildx create --use --driver docker-container`"))
        else:
            keep_out.append(entry)
    if len(keep_out) > 1 and builder.buildkit is not None and builder.buildkit < (0, 11):
        version = ".".join(map(str, builder.buildkit))
        problems.append(Problem(f"builder {builder.name!r} runs BuildKit {version}, which exports one cache only "
                                f"(0.11 added several); exporting to {keep_out[0].get('ref') or keep_out[0].type} "
                                "only", "update BuildKit"))
        keep_out = keep_out[:1]
    dropped_in = len(imports) - len(keep_in)
    if dropped_in:
        problems.append(Problem(f"builder {builder.name!r} (docker driver) cannot import s3/azblob cache; "
                                f"skipped {dropped_in}"))
    return keep_in, keep_out, problems


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


def inspect_builder(docker: Docker) -> Builder:
    """What the docker's builder is, from one ``buildx inspect`` and, at the same time, the engine's driver status
    (the docker driver can export cache only with the containerd image store).

    Raises :class:`BuildError` with docker's last line when the builder can't be inspected.
    """
    from concurrent.futures import ThreadPoolExecutor

    name = docker.builder
    with ThreadPoolExecutor(2) as pool:
        inspected = pool.submit(docker.run, "buildx", "inspect", *([name] if name else []), timeout=60)
        # A docker-driver builder is a docker context of the same name: ask that engine, not the current one.
        info = pool.submit(docker.run, *(["--context", name] if name else []), "info", "--format",
                           "{{json .DriverStatus}}", timeout=60)
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
                status: subprocess.CompletedProcess[str] | None = info.result()
            except (OSError, subprocess.SubprocessError):
                status = None
            store = status is not None and status.returncode == 0 and "containerd.snapshotter" in status.stdout
    return Builder(builder_name, driver, store, _version(version))


def which_builder(docker: Docker, current: str = "the current buildx builder") -> str:
    """The docker's builder, as a message names it."""
    return f"the builder {docker.builder!r}" if docker.builder else current


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


def said(lines: Iterable[str]) -> list[str]:
    """What docker said, without its closing ``Run 'docker --help' for more information``, which says nothing
    about what went wrong (after ``docker: unknown command: docker buildx``, for one)."""
    return [line for line in lines if line.strip() and not re.match(r"Run '[^']*--help' for more information",
                                                                    line.strip())]


def last_line(exc: Any) -> str:
    """The last line docker printed (an exception's stderr, or text): where it says what went wrong."""
    stderr = exc if isinstance(exc, str) else (getattr(exc, "stderr", "") or str(exc))
    lines = said(str(stderr).splitlines())
    return lines[-1].strip()[:300] if lines else (type(exc).__name__ if not isinstance(exc, str) else "no output")


def _version(text: str | None) -> tuple[int, ...] | None:
    numbers = tuple(int(n) for n in re.findall(r"\d+", (text or "").split("+")[0])[:3])
    # The docker driver reports its embedded BuildKit as v0.0.0+unknown: that says nothing.
    return numbers if any(numbers) else None

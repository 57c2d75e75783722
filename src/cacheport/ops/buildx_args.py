"""What buildx's own arguments (those after ``--``) say: the builder, the target and build args, the platforms,
whether the result goes somewhere or is pushed. One reader, :func:`values_of`, takes a flag's values as buildx
does, ``--flag=v`` or ``--flag v``; nothing here runs anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

# Drivers whose builder keeps what it builds unless told where it goes (the docker driver's lands in the engine).
KEEPS_RESULTS = {"docker-container", "remote", "kubernetes"}
# buildx arguments that say where the result goes, or that there is no image to keep.
OUTPUT_FLAGS = ("--load", "--push", "--output", "-o", "--call", "--check", "--print")


class Driven(Protocol):
    """What :func:`image_output` needs of a builder (:class:`cacheport.ops.docker.Builder` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def driver(self) -> str: ...


def values_of(args: Sequence[str], *flags: str) -> list[tuple[str, str]]:
    """``(flag, value)`` for each of ``flags`` among ``args``, in order, given as ``--flag=v`` or ``--flag v``."""
    found: list[tuple[str, str]] = []
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if flag not in flags:
            continue
        if not eq:
            if i + 1 >= len(args):
                continue
            value = args[i + 1]
        found.append((flag, value))
    return found


def builder_in(args: Sequence[str]) -> str | None:
    """The builder named by ``--builder`` among buildx's own arguments, or None."""
    return next((value for _, value in values_of(args, "--builder")), None)


def build_options(args: Sequence[str], environ: Mapping[str, str]) -> tuple[str | None, dict[str, str]]:
    """``--target`` and every ``--build-arg`` among buildx's arguments (``--build-arg NAME`` takes the value from
    the environment, as buildx does)."""
    target: str | None = None
    build_args: dict[str, str] = {}
    for flag, value in values_of(args, "--target", "--build-arg"):
        if flag == "--target":
            target = value
            continue
        name, has, given = value.partition("=")
        if has:
            build_args[name] = given
        elif name in environ:
            build_args[name] = environ[name]
    return target, build_args


def image_output(builder: Driven, tags: Sequence[str], extra: Sequence[str]) -> tuple[list[str], str, str]:
    """Where a tagged build with no output goes on a builder that keeps results to itself: ``--load`` for one
    platform (into the engine), nothing for several (not every engine takes them). Returns the arguments to add, a
    line to say before the build and one for the report; all empty when there is nothing to do."""
    if builder.driver not in KEEPS_RESULTS or not tags or gives_output(extra):
        return [], "", ""
    keeps = f"builder {builder.name!r} ({builder.driver} driver) keeps what it builds to itself"
    if len(platforms(extra)) > 1:
        # Only an engine with the containerd image store takes several platforms, and which one this is is unknown.
        how = ("add -- --push to send it to its registry, -- --output type=oci,dest=FILE, or -- --load on an engine "
               "with the containerd image store")
        return ([], f"{keeps}, and a multi-platform image is not loaded for you: {tags[0]} stays in the builder's "
                f"cache; {how}", f"{tags[0]} is in the builder's cache only (multi-platform); {how}")
    return (["--load"], f"{keeps}: adding --load, so {', '.join(tags)} is in the engine afterwards",
            f"{', '.join(tags)} loaded into the engine (--load added: {keeps})")


def gives_output(extra: Sequence[str]) -> bool:
    """Whether buildx's arguments say where the result goes (or that there is no image to keep)."""
    return any(a in OUTPUT_FLAGS or a.startswith(tuple(f"{f}=" for f in OUTPUT_FLAGS)) or
               (a.startswith("-o") and not a.startswith("--")) for a in extra)


def platforms(extra: Sequence[str]) -> list[str]:
    """Every platform ``--platform`` names (each may list several, comma-separated)."""
    return [p for _, value in values_of(extra, "--platform") for p in value.split(",") if p.strip()]


def pushes(extra: Sequence[str]) -> bool:
    """Whether the build pushes its image (``--push``, or an output with ``push=true``)."""
    return any(a == "--push" or ("push=true" in a and a.startswith(("--output", "-o"))) for a in extra) or any(
        a in ("--output", "-o") and i + 1 < len(extra) and "push=true" in extra[i + 1] for i, a in enumerate(extra)
    )

"""Which cache mounts a build reaches: every ``RUN --mount=type=cache`` of the target stage and of the stages it
depends on, with ``ARG``, ``ENV`` and ``--build-arg`` values put in. Pure: text in, records and warnings out.

The Dockerfile is read with e2b-dockerfile-utils, a pure-Python port of BuildKit's own parser and shell lexer
(directives, comments, continuations, heredocs, quoted flags, ``${VAR:-default}``), imported only when a
Dockerfile is read. What BuildKit does with a mount flag (its CSV fields, their defaults) follows
``frontend/dockerfile/instructions/commands_runmount.go``.
"""

from __future__ import annotations

import contextlib
import csv
import posixpath
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from cacheport.masking import printable
from cacheport.mounts import CacheMount

if TYPE_CHECKING:
    from e2b_dockerfile_utils import DockerfileInstruction

SHARING = ("shared", "private", "locked")
_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_FLAG_KEYS = {"readonly", "ro", "readwrite", "rw", "required"}  # BuildKit's keys that may go without a value
_KEYS = {"type", "from", "source", "src", "target", "dst", "destination", "id", "sharing", "mode", "uid", "gid",
         "size", *_FLAG_KEYS}


class _Unresolved(ValueError):
    """A variable in a mount flag has no value: no ARG default, no ENV, no --build-arg."""


class _Env(dict[str, str]):
    """Variables for the lexer, remembering each name it asked for and did not find."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.missing: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self.missing.add(key)
        return super().get(key, default)


def _expand(word: str, values: Mapping[str, str], escape: str, *, strict: bool = True) -> str:
    """``word`` with its variables put in, as BuildKit's shell lexer does (quotes removed, ``${X:-default}``).

    Raises:
        _Unresolved: (``strict``) a bare ``$X`` or ``${X}`` whose variable has no value, where BuildKit would put
            in nothing.
        ValueError: bad substitution syntax.
    """
    from e2b_dockerfile_utils import ShellLex

    if not strict:
        return str(ShellLex(escape, env=values, skip_unset_env=False).process_word(word))
    env = _Env(values)
    kept = ShellLex(escape, env=env, skip_unset_env=True).process_word(word)
    for name in sorted(env.missing):
        # Unset variables are kept as written: a bare one still stands there, one with a default does not count.
        if re.search(rf"\$(?:\{{{re.escape(name)}\}}|{re.escape(name)}(?![A-Za-z0-9_]))", kept):
            raise _Unresolved(f"${name} has no value (no ARG default, ENV or --build-arg)")
    return str(ShellLex(escape, env=values, skip_unset_env=False).process_word(word))


def platform_args(platform: str) -> dict[str, str]:
    """BuildKit's automatic platform ARGs for a target platform such as ``linux/arm64/v8``; a caller passes them
    in ``build_args`` (with ``BUILDPLATFORM`` and friends of the builder, if it knows them)."""
    os_, _, rest = platform.partition("/")
    arch, _, variant = rest.partition("/")
    return {"TARGETPLATFORM": platform, "TARGETOS": os_, "TARGETARCH": arch, "TARGETVARIANT": variant}


def _clean(path: str) -> str:
    """Go's ``path.Clean``: BuildKit's default cache id is the cleaned target."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


@attrs.frozen
class _Stage:
    """One ``FROM`` and what follows it, up to the next.

    Attributes:
        index: its position among the stages.
        name: its ``AS`` name, lower-cased ("" when none).
        base: the image or stage it starts from, with global ARGs put in.
        line: the ``FROM`` line.
        body: its instructions.
    """

    index: int
    name: str
    base: str
    line: int
    body: tuple[DockerfileInstruction, ...]

    @property
    def label(self) -> str:
        return self.name or str(self.index)


@attrs.define
class _Scan:
    """What one stage gives: its ENV and WORKDIR (which a stage built on it inherits; "" for the image's own),
    its cache mounts, the stages it needs."""

    env: dict[str, str]
    workdir: str
    mounts: list[CacheMount]
    needs: list[str]


def _parse_mount(flag: str) -> dict[str, str]:
    """A ``--mount`` flag's CSV fields as BuildKit reads them (keys lower-cased); ValueError if malformed."""
    try:
        fields = next(csv.reader([flag], strict=True))
    except (csv.Error, StopIteration) as exc:
        raise ValueError(f"not CSV: {exc}") from None
    out: dict[str, str] = {}
    for field in fields:
        key, eq, value = field.partition("=")
        key = key.lower()
        if not eq and key not in _FLAG_KEYS:
            raise ValueError(f"{field!r} must be a key=value pair")
        if key not in _KEYS:
            raise ValueError(f"unknown key {key!r}")
        out[key] = value
    return out


class _Reader:
    """Reads one Dockerfile's stages on demand, each once."""

    def __init__(self, stages: list[_Stage], args: Mapping[str, str], build_args: Mapping[str, str],
                 path: str, escape: str) -> None:
        self.stages, self.global_args, self.build_args = stages, args, build_args
        self.path, self.escape = path, escape
        self.by_name = {s.name: s for s in stages if s.name}
        self.scans: dict[int, _Scan] = {}
        self.warnings: list[str] = []

    def warn(self, line: int, message: str) -> None:
        self.warnings.append(printable(f"{self.path}:{line}: {message}", 400))  # the text is the Dockerfile's

    def find(self, name: str, before: int | None = None) -> _Stage | None:
        """The stage ``name`` stands for (a name, or an index for ``COPY --from``), or None for an image."""
        stage = self.by_name.get(name.lower())
        if stage is None and before is not None and name.isdigit() and int(name) < before:
            stage = self.stages[int(name)]
        return stage

    def reach(self, target: _Stage) -> list[CacheMount]:
        """The mounts of ``target`` and of every stage it needs, in Dockerfile order."""
        seen: set[int] = set()
        todo = [target]
        while todo:
            stage = todo.pop()
            if stage.index in seen:
                continue
            seen.add(stage.index)
            scan = self.scan(stage, set())
            todo += [s for s in (self.find(n, stage.index) for n in scan.needs) if s is not None]
        found = [m for i in sorted(seen) for m in self.scans[i].mounts]
        return sorted(found, key=lambda m: m.line)

    def scan(self, stage: _Stage, parents: set[int]) -> _Scan:
        if stage.index in self.scans:
            return self.scans[stage.index]
        env: dict[str, str] = {}
        workdir = ""
        needs: list[str] = []
        parent = self.find(stage.base)
        if parent is not None and parent.index != stage.index and parent.index not in parents:
            inherited = self.scan(parent, parents | {stage.index})
            env, workdir = dict(inherited.env), inherited.workdir
            needs.append(parent.name)
        args: dict[str, str] = {}
        mounts: list[CacheMount] = []
        for ins in stage.body:
            values = {**args, **env}  # an ENV hides an ARG of the same name
            if ins.name == "ARG":
                for decl in ins.args:
                    self._declare(args, decl, values, ins.start_line)
            elif ins.name == "ENV":
                for key, value in zip(ins.args[0::3], ins.args[1::3], strict=False):
                    with contextlib.suppress(ValueError):  # BuildKit stops there; the mounts before it stay
                        env[key] = _expand(value, values, self.escape, strict=False)
            elif ins.name == "WORKDIR" and ins.args:
                with contextlib.suppress(ValueError):
                    where = _expand(ins.args[0], values, self.escape, strict=False)
                    # relative to the image's own WORKDIR, which only the image knows
                    workdir = posixpath.join(workdir, where) if workdir or where.startswith("/") else ""
            elif ins.name == "COPY":
                for flag in ins.flags:
                    if flag.startswith("--from="):
                        with contextlib.suppress(ValueError):
                            needs.append(_expand(flag.partition("=")[2], values, self.escape, strict=False))
            elif ins.name == "RUN":
                for flag in ins.flags:
                    if flag.partition("=")[0] == "--mount":
                        mount = self._mount(flag.partition("=")[2], values, stage, ins.start_line, needs, workdir)
                        if mount is not None:
                            mounts.append(mount)
        self.scans[stage.index] = _Scan(env, workdir, mounts, needs)
        return self.scans[stage.index]

    def _declare(self, args: dict[str, str], decl: str, values: Mapping[str, str], line: int) -> None:
        name, eq, default = decl.partition("=")
        if name in self.build_args:
            args[name] = self.build_args[name]
        elif eq:
            try:
                args[name] = _expand(default, values, self.escape, strict=False)
            except ValueError as exc:
                self.warn(line, f"ARG {name}: {exc}")
        elif name in self.global_args:
            args[name] = self.global_args[name]

    def _mount(self, flag: str, values: Mapping[str, str], stage: _Stage, line: int, needs: list[str],
               workdir: str) -> CacheMount | None:
        if not flag:
            self.warn(line, "--mount without a value skipped")
            return None
        try:
            fields = _parse_mount(flag)
            if "$" in fields.get("from", ""):
                raise ValueError("'from' takes no variables (BuildKit refuses them; name a stage instead)")
            kind = _expand(fields.get("type", "bind"), values, self.escape).lower()
            if kind not in _MOUNT_TYPES:
                raise ValueError(f"unknown type {kind!r} (allowed: {', '.join(_MOUNT_TYPES)})")
        except ValueError as exc:
            self.warn(line, f"--mount={flag} skipped: {exc}")
            return None
        if fields.get("from"):
            needs.append(fields["from"])
        if kind != "cache" or fields.get("from"):
            return None  # a cache mount from a stage or an image starts from that content, not from ours
        try:
            return _cache_mount({k: _expand(v, values, self.escape) for k, v in fields.items()}, workdir,
                                stage.label, line)
        except _Unresolved as exc:
            self.warn(line, f"cache mount skipped: {exc}")
        except ValueError as exc:
            self.warn(line, f"--mount={flag} skipped: {exc}")
        return None


def _cache_mount(fields: Mapping[str, str], workdir: str, stage: str, line: int) -> CacheMount:
    """The mount BuildKit makes of a ``type=cache`` flag's fields: the id defaults to the target as written, and
    a relative target is under the WORKDIR (left as written when that is the image's own)."""
    written = fields.get("target") or fields.get("dst") or fields.get("destination") or ""
    if not written:
        raise ValueError("a cache mount needs a target")
    target = _clean(posixpath.join(workdir, written)) if workdir and not written.startswith("/") else written
    sharing = fields.get("sharing", "shared").lower()
    if sharing not in SHARING:
        raise ValueError(f"sharing={sharing} (allowed: {', '.join(SHARING)})")

    def number(key: str, base: int, default: int) -> int:
        text = fields.get(key)
        if text is None:
            return default
        try:
            value = int(text, base)
        except ValueError:
            value = -1
        if not (text.isascii() and text.isdigit() and 0 <= value < 1 << 32):
            raise ValueError(f"{key}={text} is not {'an octal' if base == 8 else 'a'} number")
        return value

    return CacheMount(id=fields.get("id") or _clean(written), target=target, sharing=sharing,
                      uid=number("uid", 10, 0), gid=number("gid", 10, 0), mode=number("mode", 8, 0o755),
                      stage=stage, line=line, owner_given=any(k in fields for k in ("uid", "gid", "mode")))


def _stages(instructions: list[DockerfileInstruction], args: dict[str, str], build_args: Mapping[str, str],
            escape: str) -> list[_Stage]:
    """The stages; ``args`` gets the global ARGs (those before the first FROM) with their values."""
    stages: list[_Stage] = []
    header: list[tuple[DockerfileInstruction, list[DockerfileInstruction]]] = []  # (FROM, body) pairs
    for ins in instructions:
        if ins.name == "FROM":
            header.append((ins, []))
        elif header:
            header[-1][1].append(ins)
        elif ins.name == "ARG":
            for decl in ins.args:
                name, eq, default = decl.partition("=")
                if name in build_args:
                    args[name] = build_args[name]
                elif eq:
                    with contextlib.suppress(ValueError):
                        args[name] = _expand(default, args, escape, strict=False)
    for index, (ins, body) in enumerate(header):
        words = list(ins.args)
        name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else ""
        try:
            base = _expand(words[0], args, escape, strict=False) if words else ""
        except ValueError:
            base = words[0]
        stages.append(_Stage(index, name, base, ins.start_line, tuple(body)))
    return stages


def read_mounts(text: str, *, path: str = "Dockerfile", target: str | None = None,
                build_args: Mapping[str, str] | None = None) -> tuple[list[CacheMount], list[str]]:
    """The cache mounts a build of ``target`` (default: the last stage) reaches, and one-line warnings.

    A stage is reached when it is the target, or when a reached stage starts ``FROM`` it, copies ``--from`` it or
    mounts ``from`` it. Mounts come in Dockerfile order, one per id: the first wins, and a later one with another
    uid, gid or mode is a warning. A mount with a variable that has no value, or a malformed flag, is skipped with
    a warning naming ``path:line``; a cache mount ``from`` a stage or image is left alone. Never raises for what
    the text holds: a Dockerfile that can't be parsed gives no mounts and one warning.

    Example::

        >>> mounts, warnings = read_mounts("FROM alpine\\nRUN --mount=type=cache,target=/root/.cache/pip pip -V\\n")
        >>> [(m.id, m.target, m.line) for m in mounts], warnings
        ([('/root/.cache/pip', '/root/.cache/pip', 2)], [])
    """
    from e2b_dockerfile_utils import DockerfileSyntaxError, parse_dockerfile_ast

    build_args = build_args or {}
    try:
        ast = parse_dockerfile_ast(text)
    except DockerfileSyntaxError as exc:
        message = str(exc).removeprefix("Dockerfile parse error").split(": ", 1)[-1]
        return [], [printable(f"{path}:{exc.line or 1}: cannot read the Dockerfile ({message}); its cache mounts "
                              "are left out", 400)]
    global_args: dict[str, str] = {}
    stages = _stages(ast.instructions, global_args, build_args, ast.escape_token)
    reader = _Reader(stages, global_args, build_args, path, ast.escape_token)
    if not stages:
        return [], [f"{path}:1: no FROM: no stage to build"]
    chosen = stages[-1]
    if target is not None:
        found = reader.by_name.get(target.lower())
        if found is None:
            names = ", ".join(s.name for s in stages if s.name) or "none has a name"
            return [], [f"{path}: no stage named {target!r} (stages: {names})"]
        chosen = found
    mounts: dict[str, CacheMount] = {}
    for mount in reader.reach(chosen):
        first = mounts.setdefault(mount.id, mount)
        if (first.uid, first.gid, first.mode) != (mount.uid, mount.gid, mount.mode):
            reader.warn(mount.line, f"cache mount {mount.id!r} is also on line {first.line} with another owner or "
                        f"mode; kept as line {first.line} has it (uid={first.uid}, gid={first.gid}, "
                        f"mode={first.mode:o})")
    return list(mounts.values()), reader.warnings

"""What the CLI writes: its own lines on stderr, files (atomically, owner-only by default), and tables."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import click

from cacheport.errors import ConfigError


def warn(message: str) -> None:
    click.echo(f"cacheport: warning: {message}", err=True)


def say(message: str) -> None:
    click.echo(f"cacheport: {message}", err=True)


def write_file(path: Path, text: str, *, append: bool = False, mode: int = 0o600, secret: bool = False,
               source: str = "") -> None:
    """Write ``text`` to ``path``, all or nothing; by default readable by the owner only: a plan may carry secrets.

    Through a symlink the link's target is written and the link stays. A regular file (or a new one) is
    replaced atomically: a temporary file beside it, then a rename, so on any failure (a full disk) it is as it
    was. Anything else (a terminal, a pipe, ``/dev/stdout``, a FIFO) is written as a stream. ``append`` adds
    to the file instead, and on failure cuts it back to where it was; with ``secret``, a regular file others
    could read is first made the owner's only. ``source`` says where the path came from (``-o``,
    ``$GITHUB_OUTPUT``), for errors.
    """
    import stat

    where = f"{source} {path}" if source else str(path)
    try:
        data = text.encode("utf-8")
        try:
            info: os.stat_result | None = os.stat(path)
        except FileNotFoundError:
            info = None
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{where}: is a directory; give a file")
        if append or (info is not None and not stat.S_ISREG(info.st_mode)):
            _write_stream(path, data, append=append, secret=secret)
        else:
            _write_replacing(Path(os.path.realpath(path)), data, mode, where)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot write it: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL in the path, text that is not Unicode
        raise ConfigError(f"{where}: cannot write it: {exc}") from None


def _write_replacing(target: Path, data: bytes, mode: int, where: str) -> None:
    from cacheport.files import replacing

    opened = False
    try:
        with replacing(target, mode) as fh:
            opened = True
            fh.write(data)
    except OSError as exc:
        if opened:
            raise
        raise ConfigError(f"{where}: cannot write it: cannot create a file in {target.parent}: "
                          f"{exc.strerror or exc}") from None


def _write_stream(path: Path, data: bytes, *, append: bool, secret: bool) -> None:
    import stat

    # O_NONBLOCK: a FIFO that nobody reads fails at once (ENXIO) instead of hanging the command.
    flags = os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | (os.O_APPEND | os.O_CREAT if append else 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.set_blocking(fd, True)
        info = os.fstat(fd)
        regular = stat.S_ISREG(info.st_mode)
        if secret and regular and info.st_mode & 0o077:
            os.fchmod(fd, info.st_mode & 0o700)
        start = info.st_size if regular else None
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            if start is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def is_terminal(path: Path) -> bool:
    """Whether ``path`` is (a link to) a terminal: a person reads what goes there."""
    import stat

    try:
        if not stat.S_ISCHR(os.stat(path).st_mode):
            return False
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except (OSError, ValueError):
        return False
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """Left-aligned columns under an upper-case header."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(h.upper().ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(out) + "\n"

"""What every command shares: the plan options, loading plugins (warning about broken ones once), making the
plan, reaching a backend's store, writing files, and tables.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cacheport.errors import ConfigError

if TYPE_CHECKING:
    from cacheport.config import Config
    from cacheport.context import Context
    from cacheport.plan import Plan
    from cacheport.plugins import Plugins
    from cacheport.records import Backend, CacheStore, EntryRequest, Swap

F = TypeVar("F", bound=Callable[..., Any])
_warned: set[tuple[str, str]] = set()


def is_verbose(argv: Sequence[str]) -> bool:
    return any(a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in argv)


def warn(message: str) -> None:
    click.echo(f"cacheport: warning: {message}", err=True)


def say(message: str) -> None:
    click.echo(f"cacheport: {message}", err=True)


def load_plugins(verbose: int = 0) -> Plugins:
    """The process's plugins; each broken one is warned about once, however many commands ask."""
    from cacheport.plugins import default_plugins

    plugins = default_plugins()
    for info in plugins.failures:
        if (info.name, info.error or "") in _warned:
            continue
        _warned.add((info.name, info.error or ""))
        warn(f"plugin {info.name!r} from {info.distribution} {info.version} failed to load and was skipped: "
             f"{info.error}" + ("" if verbose else " (-v shows the traceback)"))
        if verbose and info.traceback:
            click.echo(info.traceback.rstrip(), err=True)
    return plugins


def _split_set(ctx: click.Context, param: click.Parameter, values: Iterable[str]) -> list[tuple[str, str]]:
    out = []
    for raw in values:
        name, eq, value = raw.partition("=")
        if not eq or not name.strip():
            raise click.BadParameter(f"{raw!r}: expected NAME=VALUE, e.g. --set mode=min or --set registry.ref=...")
        out.append((name.strip(), value))
    return out


def set_option(help: str = "Set an option: OPTION (of the selected backend), BACKEND.OPTION, or a global key.",
               metavar: str = "NAME=VALUE") -> Callable[[F], F]:
    return click.option("--set", "sets", multiple=True, metavar=metavar, callback=_split_set, help=help)


def verbose_option(func: F) -> F:
    return click.option("-v", "--verbose", count=True, help="Show tracebacks and plugin details.")(func)


def plan_options(func: F) -> F:
    """The options every plan-making command shares; they arrive as keyword arguments for :func:`make_plan`."""
    decorators = [
        click.option("--backend", "-b", metavar="NAME", help="Use this backend (overrides config and env)."),
        click.option("--key", metavar="KEY", help="Scope cache refs, e.g. by target or platform."),
        set_option(),
        click.option("--read-only", is_flag=True, default=None, help="Import only; no exports."),
        config_option(),
        verbose_option,
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


class FilePath(click.Path):
    """A file path option; a path the OS can't even look at (a NUL byte in it) is a usage error, not a crash."""

    def __init__(self) -> None:
        super().__init__(path_type=Path, dir_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except ValueError as exc:
            self.fail(f"{value!r} is not a path: {exc}", param, ctx)


def config_option(help: str = "Config file (default: cacheport.toml or pyproject.toml, searched upward).",
                  ) -> Callable[[F], F]:
    return click.option("--config", "config_path", type=FilePath(), help=help)


def cli_values(backend: str | None, key: str | None, sets: Sequence[tuple[str, str]], read_only: bool | None,
               backend_flag: str = "--backend") -> list[tuple[str, Any, str]]:
    """The command line's settings, as :func:`cacheport.config.load_config` takes them."""
    values: list[tuple[str, Any, str]] = [(n, v, f"--set {n}") for n, v in sets]
    if backend is not None:
        values.append(("backend", backend, backend_flag))
    if key is not None:
        values.append(("key", key, "--key"))
    if read_only:
        values.append(("read-only", True, "--read-only"))
    return values


def load_inputs(backend: str | None = None, key: str | None = None, sets: Sequence[tuple[str, str]] = (),
                read_only: bool | None = None, config_path: Path | None = None, verbose: int = 0, *,
                backend_flag: str = "--backend") -> tuple[Config, Context, Plugins]:
    """The settings, the CI context and the plugins, from the shared options."""
    from cacheport.config import load_config
    from cacheport.context import detect_context

    plugins = load_plugins(verbose)
    cwd = Path.cwd()
    config = load_config(cwd, os.environ, config_path=config_path,
                         cli=cli_values(backend, key, sets, read_only, backend_flag))
    return config, detect_context(plugins.context_providers(), os.environ, cwd), plugins


def make_plan(backend: str | None = None, key: str | None = None, sets: Sequence[tuple[str, str]] = (),
              read_only: bool | None = None, config_path: Path | None = None, verbose: int = 0) -> Plan:
    """Config + context → plan, from the shared options; prints the plan's warnings."""
    from cacheport.plan import build_plan

    plan = build_plan(*load_inputs(backend, key, sets, read_only, config_path, verbose))
    for warning in plan.warnings:
        warn(warning)
    return plan


def store_for(backend: Backend, request: EntryRequest | None, command: str) -> CacheStore:
    """The backend's store, or one line saying that ``command`` can't reach this backend's caches."""
    if backend.store is None or request is None:
        from cacheport.plugins import no_store

        raise ConfigError(no_store(backend, command))
    plugins = load_plugins()
    store = plugins.guarded(backend, "store", lambda: backend.store(request) if backend.store else None)
    from cacheport.records import CacheStore

    if not isinstance(store, CacheStore):
        from cacheport.errors import PluginError

        raise PluginError(f"backend {backend.name!r} returned {type(store).__name__} from store, expected CacheStore")
    return store


def plan_store(plan: Plan, command: str) -> tuple[Backend, CacheStore]:
    """The plan's backend and its store."""
    backend = load_plugins().backend(plan.backend)
    return backend, store_for(backend, plan.request, command)


def promote_all(swaps: Iterable[Swap]) -> None:
    """Swap finished local exports into place; a cache problem never stops anything."""
    from cacheport.ops.rotate import moved, promote

    for swap in swaps:
        try:
            if promote(swap):
                say(moved(swap))
        except OSError as exc:
            warn(f"could not move {swap.new} into place: {exc}")


def usable_imports(plan: Plan) -> Plan:
    """The plan without the local imports BuildKit can't use, with a warning for each where something broken is
    there (no cache yet is no news): a cache problem never fails a build."""
    from cacheport.ops.preflight import usable

    plan, held = usable(plan)
    for _entry, problem in held:
        if problem.broken:
            warn(problem.message)
    return plan


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


def jobs_option(what: str, lookups: bool = False) -> Callable[[F], F]:
    """``--jobs N``: how many registry requests (and so caches, blobs or tags) are in flight at once."""
    from cacheport.ops import DEFAULT_JOBS, LOOKUP_JOBS

    return click.option("--jobs", "-j", type=click.IntRange(1, 64), show_default=True, metavar="N",
                        default=LOOKUP_JOBS if lookups else DEFAULT_JOBS, help=f"{what} at once (1 to 64).")


def format_option(choices: Sequence[str], default: str) -> Callable[[F], F]:
    return click.option("--format", "fmt", type=click.Choice(list(choices)), default=default, show_default=True,
                        help="Output format.")


def check_config_text(text: str, path: Path, context: Context, plugins: Plugins) -> Plan:
    """The plan config text would give, before it is written; a problem is reported as the change's."""
    import tempfile

    from cacheport.config import load_config
    from cacheport.errors import CacheportError
    from cacheport.plan import build_plan

    with tempfile.TemporaryDirectory(prefix="cacheport-") as tmp:
        candidate = Path(tmp) / path.name
        candidate.write_text(text, encoding="utf-8")
        try:
            return build_plan(load_config(Path(tmp), os.environ, config_path=candidate), context, plugins)
        except CacheportError as exc:
            message = str(exc).replace(str(candidate), str(path))
            raise type(exc)(f"{path} not written, because the result would be invalid: {message}") from None

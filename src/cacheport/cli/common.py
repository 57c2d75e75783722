"""The options commands share: each as one decorator, with its parsing. :func:`plan_options` hands the
command a :class:`~cacheport.cli.session.Session` built from them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

import click

F = TypeVar("F", bound=Callable[..., Any])


def is_verbose(argv: Sequence[str]) -> bool:
    return any(a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in argv)


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


@overload
def plan_options(func: F, /) -> F: ...
@overload
def plan_options(*, backend_help: str = ..., read_only_hidden: bool = ...) -> Callable[[F], F]: ...
def plan_options(func: F | None = None, /, *, backend_help: str = "Use this backend (overrides config and env).",
                 read_only_hidden: bool = False) -> F | Callable[[F], F]:
    """The options every plan-making command shares (--backend, --key, --set, --read-only, --config, -v); the
    command receives them as one ``session`` keyword argument: a :class:`~cacheport.cli.session.Session`."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def with_session(*args: Any, **kwargs: Any) -> Any:
            from cacheport.cli.session import session_of

            name = click.get_current_context().command.name or ""
            return func(*args, session=session_of(name, kwargs), **kwargs)

        decorated: Any = with_session
        for decorator in reversed([
            click.option("--backend", "-b", metavar="NAME", help=backend_help),
            click.option("--key", metavar="KEY", help="Scope cache refs, e.g. by target or platform."),
            set_option(),
            click.option("--read-only", is_flag=True, default=None, hidden=read_only_hidden,
                         help="Import only; no exports."),
            config_option(),
            verbose_option,
        ]):
            decorated = decorator(decorated)
        return decorated  # type: ignore[no-any-return]

    return decorate if func is None else decorate(func)


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


def jobs_option(what: str, lookups: bool = False) -> Callable[[F], F]:
    """``--jobs N``: how many registry requests (and so caches, blobs or tags) are in flight at once."""
    from cacheport.ops import DEFAULT_JOBS, LOOKUP_JOBS

    return click.option("--jobs", "-j", type=click.IntRange(1, 64), show_default=True, metavar="N",
                        default=LOOKUP_JOBS if lookups else DEFAULT_JOBS, help=f"{what} at once (1 to 64).")


def format_option(choices: Sequence[str], default: str) -> Callable[[F], F]:
    return click.option("--format", "fmt", type=click.Choice(list(choices)), default=default, show_default=True,
                        help="Output format.")


#: buildx build flags that take no value, so the word after one is not its value.
_SWITCHES = {"--no-cache", "--pull", "--push", "--load", "-q", "--quiet", "--check", "--debug"}


def buildx_flag(args: list[str], exc: click.NoSuchOption) -> tuple[int, list[str]] | None:
    """Where the option click refused is in ``args``, and it as buildx's flag with its value when that is the
    next word (``--network host``); None for a typo of one of ours, which click's did-you-mean says."""
    flag = next((a for a in args if a == exc.option_name or a.startswith(f"{exc.option_name}=")), None)
    if flag is None or exc.possibilities:
        return None
    at = args.index(flag)
    if "=" not in flag and at + 1 < len(args) and not args[at + 1].startswith("-") and flag not in _SWITCHES:
        return at, args[at:at + 2]
    return at, args[at:at + 1]


class BuildxFlagsCommand(click.Command):
    """A command that newcomers give buildx's own flags (``build``, ``args``): an option of buildx's that it
    refuses is said in one line, with where it goes (:meth:`misplaced`); a typo of its own keeps click's
    did-you-mean."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, list(args))
        except click.NoSuchOption as exc:
            found = buildx_flag(args, exc)
            if found is None:
                raise
            raise self.misplaced(ctx, args, *found, exc) from None
        except click.UsageError:
            better = self.usage_error(ctx, args)
            if better is None:
                raise
            raise better from None

    def misplaced(self, ctx: click.Context, args: list[str], at: int, flags: list[str],
                  exc: click.NoSuchOption) -> click.UsageError:
        """The error for buildx's ``flags`` (with their value), found at ``args[at]``."""
        raise NotImplementedError

    def usage_error(self, ctx: click.Context, args: list[str]) -> click.UsageError | None:
        """A clearer error for any other misuse of ``args``, or None for click's own."""
        return None

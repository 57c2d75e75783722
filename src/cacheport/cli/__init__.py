"""The ``cacheport`` command line: one module per command (``cacheport.cli.<command>``, each with a ``command``),
the options they share in :mod:`.common`, and :func:`main`, which turns our errors into one line.

Commands are imported when they run (or when ``--help`` lists them), so ``cacheport args`` loads only its own.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

# httpx imports its own command line (with rich and pygments: tens of milliseconds) whenever click and rich are
# installed, as they are with cacheport, which never runs it. A None entry makes that import fail quietly, and
# httpx then offers a stub in its place (`httpx/__init__.py`). Set before anything imports httpx; it holds for
# the whole process, so a program that imports cacheport.cli gets that stub for `httpx.main` too.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from cacheport import __version__  # noqa: E402
from cacheport.errors import CacheportError  # noqa: E402

COMMANDS = ("args", "explain", "build", "report", "rotate", "switch", "init", "seed", "status", "prune", "doctor",
            "backends", "plugins", "verify", "mounts", "history")
EXAMPLES = """\b
Examples:
  docker buildx build $(cacheport args) -t app .     # flags for this branch's cache
  cacheport explain                                  # what, and why (every setting's source)
  cacheport args --format json                       # the plan as JSON
  cacheport args --format dotenv -o cache.env        # GitLab artifacts:reports:dotenv
  cacheport args --format github                     # cache-from/cache-to into $GITHUB_OUTPUT
  cacheport COMMAND --help                           # more on one command
"""


class _Commands(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        import importlib

        command: click.Command = importlib.import_module(f"cacheport.cli.{cmd_name}").command
        return command


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
             epilog=EXAMPLES)
@click.version_option(__version__, prog_name="cacheport")
def cli() -> None:
    """Portable BuildKit cache settings: one small config, any backend, warm across migrations.

    cacheport reads cacheport.toml (or [tool.cacheport] in pyproject.toml) and the CI context
    (GitLab, GitHub Actions, or a laptop) and prints the --cache-from/--cache-to flags for this build.
    With no config at all it uses a local cache directory.
    """


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: runs the CLI and turns our errors into one line and exit status 2."""
    from cacheport.cli.common import is_verbose

    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "build" in argv and "--" in argv[argv.index("build"):]:
        # click would hand everything after -- to CONTEXT first; buildx's own arguments must pass untouched.
        cut = argv.index("--", argv.index("build"))
        argv, extra = argv[:cut], argv[cut + 1:]
    try:
        cli.main(args=argv, prog_name="cacheport", standalone_mode=False, obj={"extra": extra})
    except CacheportError as exc:
        if is_verbose(argv):
            import traceback

            traceback.print_exc()
        click.echo(f"cacheport: error: {_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        click.echo(f"cacheport: error: {usage_line(exc)}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"cacheport: error: {_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code if exc.exit_code in (1, 2) else 1)
    except click.exceptions.Abort:
        click.echo("cacheport: aborted", err=True)
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # a bug: still one line, and the traceback for the report with -v
        import os

        if is_verbose(argv) or os.environ.get("CACHEPORT_STRICT_PLUGINS", "").strip().lower() in ("1", "true",
                                                                                               "yes", "on"):
            raise
        click.echo(f"cacheport: internal error (a bug; run again with -v and report the traceback): "
                   f"{type(exc).__name__}: {_line(exc, 200)}", err=True)
        sys.exit(1)


def _line(message: object, limit: int = 2000) -> str:
    from cacheport.masking import printable

    return printable(message, limit)


def usage_line(exc: click.UsageError) -> str:
    """click's three-line usage error (Usage:, Try, Error:) as one line that says where to look."""
    where = exc.ctx.command_path if exc.ctx is not None else "cacheport"
    return f"{_line(exc.format_message())} (see '{where} --help')"

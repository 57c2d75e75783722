"""``cacheport init``: a starter cacheport.toml for the CI detected here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cacheport.cli.common import set_option, verbose_option
from cacheport.cli.output import say, write_file

if TYPE_CHECKING:
    from cacheport.cli.session import Session


@click.command("init", epilog="""\b
Examples:
  cacheport init                            # the detected CI's backend (local on a laptop)
  cacheport init --backend registry --set ref=registry.example.com/team/app/cache
""")
@click.option("--backend", "-b", metavar="NAME", help="The backend (default: the detected CI's).")
@set_option("Write an option of the backend (repeatable).", "OPTION=VALUE")
@click.option("--force", is_flag=True, help="Overwrite an existing cacheport.toml.")
@click.option("--dry-run", is_flag=True, help="Print the file; write nothing.")
@click.option("--here", is_flag=True, help="Write in this directory, not at the top of the checkout (a project in a "
              "monorepo's subdirectory, built from there).")
@verbose_option
def command(backend: str | None, sets: list[tuple[str, str]], force: bool, dry_run: bool, here: bool,
            verbose: int) -> None:
    """Write a starter cacheport.toml for the CI detected here.

    It goes where cacheport looks for it from every directory of the project: the top of the git checkout
    (or the config cacheport already reads from here, with --force), and it says where.
    """
    from cacheport.cli.session import Options, Session
    from cacheport.errors import ConfigError
    from cacheport.switch import starter, typed

    session = Session("init", Options(verbose=verbose))
    plugins, context = session.plugins, session.context
    chosen = plugins.backend(backend or context.default_backend if (backend or context.default_backend in
                                                                    plugins.backends()) else "local")
    cwd = session.cwd
    path = _target(session, Path(context.root) if context.root and not here else cwd, force or dry_run)
    shown = path.relative_to(cwd) if path.is_relative_to(cwd) else path  # elsewhere: where, in full
    if path.exists() and not force and not dry_run:
        raise ConfigError(f"{shown} exists already, and cacheport reads it from here; use --force to overwrite it")
    from cacheport.cli.switch import ci_files

    shared = ci_files(cwd) if chosen.name == "local" and not backend and not sets and context.provider == "local" \
        else []
    text = _each_its_default(shared) if shared else starter(chosen.name, typed(chosen, sets))
    session.plan_for_text(text, path)
    if dry_run:
        say(f"would write {shown}")
        click.echo(text, nl=False)
        return
    write_file(path, text, mode=0o644)
    if shared:
        click.echo(f"wrote {shown} with no backend line: this laptop keeps a local cache, and "
                   f"{' and '.join(f'{name} builds with {ci}' for name, ci in shared)} (its default); "
                   "`cacheport explain` shows what it does.")
        return
    click.echo(f"wrote {shown}: backend = {chosen.name} ({context.provider} detected). "
               "`cacheport explain` shows what it does.")


def _each_its_default(ci: list[tuple[str, str]]) -> str:
    """A starter for a repository that a CI builds too: a laptop's default (local) in the file would become the
    CI jobs' backend, each job keeping its cache to itself; with no backend line each place keeps its own."""
    names = " and ".join(f"{name} ({backend})" for name, backend in ci)
    return (f"# cacheport.toml: read on laptops and by the jobs of {names}. With no backend line each uses its\n"
            "# own default: a local cache on a laptop, the CI's own in its jobs. To share one cache everywhere:\n"
            "#   backend = \"registry\"\n"
            "#   [registry]\n"
            "#   ref = \"registry.example.com/team/app/cache\"\n")


def _target(session: Session, root: Path, replacing: bool) -> Path:
    """Where cacheport will read the file from the session's directory and every directory below ``root``:
    ``$CACHEPORT_CONFIG``; else the config it finds from here today, if that is inside ``root``; else
    ``root/cacheport.toml``. A ``[tool.cacheport]`` table in pyproject.toml is replaced (by a cacheport.toml
    beside it) only when ``replacing``."""
    from cacheport.config import find_config
    from cacheport.errors import ConfigError

    if session.environ.get("CACHEPORT_CONFIG"):
        explicit = Path(session.environ["CACHEPORT_CONFIG"])
        if explicit.name == "pyproject.toml":
            raise ConfigError(f"CACHEPORT_CONFIG names {explicit}: cacheport init writes a cacheport.toml; unset "
                              "CACHEPORT_CONFIG, or add a [tool.cacheport] table to that file yourself")
        return explicit
    found = find_config(session.cwd)
    if found is None or not found[0].parent.is_relative_to(root):
        return root / "cacheport.toml"
    existing, table = found
    if table and not replacing:
        raise ConfigError(f"{existing} has a [tool.cacheport] table, which cacheport reads from here; change it "
                          "there (`cacheport switch` does), or use --force to write a cacheport.toml beside it, "
                          "which takes its place")
    return existing.with_name("cacheport.toml")

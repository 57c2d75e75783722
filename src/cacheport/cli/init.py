"""``cacheport init``: a starter cacheport.toml for the CI detected here."""

from __future__ import annotations

import click

from cacheport.cli.common import set_option, verbose_option
from cacheport.cli.output import write_file


@click.command("init", epilog="""\b
Examples:
  cacheport init                            # the detected CI's backend (local on a laptop)
  cacheport init --backend registry --set ref=registry.example.com/team/app/cache
""")
@click.option("--backend", "-b", metavar="NAME", help="The backend (default: the detected CI's).")
@set_option("Write an option of the backend (repeatable).", "OPTION=VALUE")
@click.option("--force", is_flag=True, help="Overwrite an existing cacheport.toml.")
@click.option("--dry-run", is_flag=True, help="Print the file; write nothing.")
@verbose_option
def command(backend: str | None, sets: list[tuple[str, str]], force: bool, dry_run: bool, verbose: int) -> None:
    """Write a starter cacheport.toml for the CI detected here."""
    from cacheport.cli.session import Options, Session
    from cacheport.errors import ConfigError
    from cacheport.switch import starter, typed

    session = Session("init", Options(verbose=verbose))
    plugins, context = session.plugins, session.context
    chosen = plugins.backend(backend or context.default_backend if (backend or context.default_backend in
                                                                    plugins.backends()) else "local")
    path = session.cwd / "cacheport.toml"
    if path.exists() and not force and not dry_run:
        raise ConfigError(f"{path.name} exists already; use --force to overwrite it")
    text = starter(chosen.name, typed(chosen, sets))
    session.plan_for_text(text, path)
    if dry_run:
        click.echo(text, nl=False)
        return
    write_file(path, text, mode=0o644)
    click.echo(f"wrote {path.name}: backend = {chosen.name} ({context.provider} detected). "
               "`cacheport explain` shows what it does.")

"""``cacheport switch``: move the cache to another backend by editing the config file, keeping caches warm."""

from __future__ import annotations

from pathlib import Path

import click

from cacheport.cli.common import config_option, set_option, verbose_option
from cacheport.cli.output import say, write_file


@click.command("switch", epilog="""\b
Examples:
  cacheport switch pulp                     # start: dual-read from the current backend
  cacheport switch pulp --set url=pulp.example.com
  cacheport switch --phase dual-write       # also export to the old backend
  cacheport switch --phase cutover          # the new backend only
  cacheport switch --finish                 # drop the [migration] table
  cacheport switch registry --dry-run       # show the diff, write nothing
""")
@click.argument("new", required=False)
@click.option("--phase", type=click.Choice(["dual-read", "dual-write", "cutover"]), help="Migration phase.")
@click.option("--finish", is_flag=True, help="End the migration: remove the [migration] table.")
@click.option("--from", "from_", metavar="OLD", help="Where the cache is now, when no config names a backend.")
@set_option("Also write an option of the new backend (e.g. its ref or url).", "OPTION=VALUE")
@click.option("--dry-run", is_flag=True, help="Show the diff; write nothing.")
@config_option("Config file (default: the one cacheport finds).")
@verbose_option
def command(new: str | None, phase: str | None, finish: bool, from_: str | None, sets: list[tuple[str, str]],
           dry_run: bool, config_path: Path | None, verbose: int) -> None:
    """Move the cache to another backend by editing the config file, keeping caches warm.

    Sets backend = NEW and a [migration] table (from = the current backend, phase = dual-read), so builds
    read both backends until you move on: --phase dual-write, --phase cutover, then --finish. With no
    config, the current backend is the default: the CI's inside one; on a laptop, that of the CI the
    repository's .gitlab-ci.yml (gitlab) or .github/workflows (gha) configures, else local. Comments and
    everything else in the file stay as they are; the file is replaced atomically, and only when the
    result is a valid config.
    """
    from cacheport.cli.session import Options, Session
    from cacheport.config import resolve_migration
    from cacheport.errors import ConfigError
    from cacheport.plan import select_backend
    from cacheport.switch import diff, switched, typed, with_options

    if not (new or phase or finish):
        raise ConfigError("switch needs a backend name, --phase or --finish (see cacheport switch --help)")
    session = Session("switch", Options(config_path=config_path, verbose=verbose))
    plugins, config, context, cwd = session.plugins, session.config, session.context, session.cwd
    current, setting, _ = select_backend(config, context, plugins)
    for name, s in [("backend", setting), *[(f"migration.{k}", v) for k, v in resolve_migration(config).items()]]:
        if s.source.level in ("env", "cli"):
            raise ConfigError(f"{name} is set by {s.source.detail}; switch edits config files, so change it there")
    if from_:
        current = plugins.backend(from_)
    elif new and setting.source.level == "default":
        home, why = _default_home(current.name, context.provider, cwd, new)
        current = plugins.backend(home)
        say(f"no config names the backend, so the cache is taken to be in {current.name!r} ({why}); "
            "--from BACKEND says otherwise")
    if new:
        new = plugins.backend(new).name
    path = config.path or cwd / "cacheport.toml"
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    pyproject = path.name == "pyproject.toml"
    after = switched(before, pyproject=pyproject, current=current.name, new=new, phase=phase, finish=finish)
    if sets:
        target = plugins.backend(new or current.name)
        after = with_options(after, pyproject=pyproject, backend=target.name, options=typed(target, sets))
    plan = session.plan_for_text(after, path)
    if dry_run:
        click.echo(diff(before, after, path) or "no change", nl=False)
        return
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    write_file(path, after, mode=mode)
    if finish:
        click.echo(f"{path}: migration finished; backend = {plan.backend}")
    elif new and new != current.name:
        click.echo(f"{path}: backend = {new}; migrating from {current.name} ({phase or 'dual-read'})")
        click.echo(f"next: `cacheport seed --from {current.name} --to {new}` warms the new backend; "
                   "then `cacheport switch --phase dual-write` or `--phase cutover`")
    elif new and not phase:
        click.echo(f"{path}: backend = {new}; no migration: the cache is already there")
    else:
        click.echo(f"{path}: migration phase is now {phase}")


#: CI files that say, on a laptop, which CI builds this repository, and that CI's default backend.
_CI_FILES = ((".gitlab-ci.yml", "gitlab"), (".github/workflows", "gha"))


def ci_files(cwd: Path) -> list[tuple[str, str]]:
    """The CI files at the top of the checkout ``cwd`` is in, each with its CI's default backend."""
    root = next((d for d in (cwd, *cwd.parents) if (d / ".git").exists()), cwd)
    return [(name, backend) for name, backend in _CI_FILES if (root / name).exists()]


def _default_home(default: str, provider: str, cwd: Path, new: str) -> tuple[str, str]:
    """The backend that holds the cache when no config names one: the context's default inside a CI; on a laptop,
    that of the CI the repository's files name (a zero-config GitLab project's cache is gitlab's, not this
    machine's), else the laptop's own."""
    from cacheport.errors import ConfigError

    if provider != "local":
        return default, f"the {provider} default here"
    found = sorted({backend for _name, backend in ci_files(cwd)})
    if len(found) > 1:
        raise ConfigError(f"no config names the current backend, and this repository has both GitLab and GitHub "
                          f"CI files ({', '.join(found)} by default); say where the cache is now: "
                          f"cacheport switch {new} --from BACKEND")
    if found:
        name = next(n for n, b in _CI_FILES if b == found[0])
        return found[0], f"the default of the CI that {name} configures"
    return default, "the default on this machine"

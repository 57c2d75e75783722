"""The ``cacheport`` command line: turns flags into a Plan and prints it. Side effects live here."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import click

from cacheport import __version__
from cacheport.errors import CacheportError

EXAMPLES = """\b
Examples:
  docker buildx build $(cacheport args) -t app .     # flags for this branch's cache
  cacheport explain                                  # what, and why (every setting's source)
  cacheport args --format json                       # the plan as JSON
  cacheport args --format dotenv -o cache.env        # GitLab artifacts:reports:dotenv
  cacheport args --format github                     # cache-from/cache-to into $GITHUB_OUTPUT
  cacheport COMMAND --help                           # more on one command
"""


def _verbose(argv: Sequence[str]) -> bool:
    return any(a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in argv)


def _warn(message: str) -> None:
    click.echo(f"cacheport: warning: {message}", err=True)


def _plugins(verbose: int) -> Any:
    from cacheport.plugins import default_plugins

    plugins = default_plugins()
    for info in plugins.failures:
        _warn(
            f"plugin {info.name!r} from {info.distribution} {info.version} failed to load and was skipped: "
            f"{info.error}" + ("" if verbose else " (-v shows the traceback)")
        )
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


def plan_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options every plan-making command shares."""
    decorators = [
        click.option("--backend", "-b", metavar="NAME", help="Use this backend (overrides config and env)."),
        click.option("--key", metavar="KEY", help="Scope cache refs, e.g. by target or platform."),
        click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", callback=_split_set,
                     help="Set an option: OPTION (of the selected backend), BACKEND.OPTION, or a global key."),
        click.option("--read-only", is_flag=True, default=None, help="Import only; no exports."),
        click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
                     help="Config file (default: cacheport.toml or pyproject.toml, searched upward)."),
        click.option("-v", "--verbose", count=True, help="Show tracebacks and plugin details."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def make_plan(backend: str | None, key: str | None, sets: list[tuple[str, str]], read_only: bool | None,
              config_path: Path | None, verbose: int) -> Any:
    from cacheport.config import load_config
    from cacheport.context import detect_context
    from cacheport.plan import build_plan

    cli_values: list[tuple[str, Any, str]] = [(n, v, f"--set {n}=") for n, v in sets]
    if backend is not None:
        cli_values.append(("backend", backend, "--backend"))
    if key is not None:
        cli_values.append(("key", key, "--key"))
    if read_only:
        cli_values.append(("read-only", True, "--read-only"))
    plugins = _plugins(verbose)
    cwd = Path.cwd()
    config = load_config(cwd, os.environ, config_path=config_path, cli=cli_values)
    context = detect_context(plugins.context_providers(), os.environ, cwd)
    plan = build_plan(config, context, plugins)
    for warning in plan.warnings:
        _warn(warning)
    return plan


def _promote(swaps: Iterable[Any]) -> None:
    from cacheport.swap import promote

    for swap in swaps:
        try:
            if promote(swap):
                click.echo(f"cacheport: moved the last build's cache export into {swap.current}", err=True)
        except OSError as exc:  # a cache problem never stops the build
            _warn(f"could not move {swap.new} into place: {exc}")


def write_file(path: Path, text: str, *, append: bool = False, mode: int = 0o600) -> None:
    """Write all or nothing (temp file + rename); by default readable by the owner only: a plan may carry secrets."""
    if append:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            from cacheport.errors import ConfigError

            raise ConfigError(f"{path}: cannot append to it: {exc.strerror}") from None
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(text)
        return
    import tempfile

    from cacheport.errors import ConfigError

    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write there: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class _Commands(click.Group):
    """Commands that need heavy modules are imported when they run, so `cacheport args` stays fast."""

    LAZY: ClassVar[dict[str, tuple[str, str]]] = {"seed": ("cacheport.seed", "seed_command")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY and cmd_name not in self.commands:
            import importlib

            module, attr = self.LAZY[cmd_name]
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
             epilog=EXAMPLES)
@click.version_option(__version__, prog_name="cacheport")
def cli() -> None:
    """Portable BuildKit cache settings: one small config, any backend, warm across migrations.

    cacheport reads cacheport.toml (or [tool.cacheport] in pyproject.toml) and the CI context
    (GitLab, GitHub Actions, or a laptop) and prints the --cache-from/--cache-to flags for this build.
    With no config at all it uses a local cache directory.
    """


@cli.command(epilog="""\b
Examples:
  docker buildx build $(cacheport args) -t app .
  mapfile -t flags < <(cacheport args --lines); docker buildx build "${flags[@]}" .
  cacheport args --format bake --target app -o cache.json && docker buildx bake -f docker-bake.hcl -f cache.json
  cacheport args --format buildctl          # --import-cache/--export-cache, one per line
  cacheport args --backend registry --set ref=registry.example.com/app/cache
""")
@click.option("--format", "fmt", type=click.Choice(["args", "lines", "json", "bake", "buildctl", "github", "dotenv"]),
              default="args", show_default=True, help="Output format.")
@click.option("--lines", "as_lines", is_flag=True, help="Same as --format lines: one flag per line.")
@click.option("--target", "targets", multiple=True, metavar="NAME",
              help="Bake targets to configure (default: default).")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to this file (atomically, mode 0600) instead of stdout; github appends.")
@plan_options
def args(fmt: str, as_lines: bool, targets: tuple[str, ...], output: Path | None, **common: Any) -> None:
    """Print cache flags for the build that runs next.

    Before printing, a local cache exported by the previous build is swapped into place.
    """
    from cacheport import render

    plan = make_plan(**common)
    if plan.secret_attrs and output is None and sys.stdout.isatty():
        # A terminal is read by a person (and may be recorded); $(cacheport args) and -o get the real values.
        click.echo("cacheport: secret values shown as *** on a terminal; use -o FILE or $(cacheport args)", err=True)
        from cacheport.render import redacted

        plan = redacted(plan)
    fmt = "lines" if as_lines else fmt
    if fmt == "github":
        import secrets

        text = render.github_output(plan, f"ghadelimiter_{secrets.token_hex(16)}")
        for value in render.secret_values(plan):
            click.echo(f"::add-mask::{value}")  # GitHub then hides it wherever the output is echoed
        target = output or (Path(os.environ["GITHUB_OUTPUT"]) if os.environ.get("GITHUB_OUTPUT") else None)
        if target is not None:
            _promote(plan.swaps)
            write_file(target, text, append=True)
            return
    else:
        renderers: dict[str, Callable[[Any], str]] = {
            "args": lambda p: render.args(p) + "\n",
            "lines": render.lines,
            "json": render.as_json,
            "bake": lambda p: render.bake(p, targets or ("default",)),
            "buildctl": render.buildctl,
            "dotenv": render.dotenv,
        }
        text = renderers[fmt](plan)
    _promote(plan.swaps)
    if output is not None:
        write_file(output, text)
    else:
        click.echo(text, nl=False)


@cli.command(epilog="""\b
Examples:
  cacheport explain
  cacheport explain --backend registry --set ref=registry.example.com/app/cache
  CACHEPORT_KEY=arm64 cacheport explain --format json
""")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@plan_options
def explain(fmt: str, **common: Any) -> None:
    """Show the plan, and where every setting came from (file and key, env var, flag, default)."""
    from cacheport import render

    plan = make_plan(**common)
    click.echo(render.as_json(plan) if fmt == "json" else render.explain(plan), nl=False)


@cli.command(epilog="""\b
Examples:
  cacheport rotate                 # after docker buildx build $(cacheport args) succeeded
""")
@plan_options
def rotate(**common: Any) -> None:
    """Swap a finished local cache export into place (for builds you run yourself).

    BuildKit only ever adds to a local cache directory, so cacheport exports to DIR.new and moves it
    over DIR after the build. `cacheport build` does this itself; `cacheport args` does it before printing.
    """
    from cacheport.swap import promote

    plan = make_plan(**common)
    if not plan.swaps:
        click.echo("nothing to rotate: this backend keeps no local directory", err=True)
    for swap in plan.swaps:
        done = promote(swap)
        click.echo(f"{'rotated' if done else 'no finished export at'} {swap.new if not done else swap.current}")


@cli.command(epilog="""\b
Examples:
  cacheport build . -t registry.example.com/app:dev
  cacheport build . -t app -- --push --platform linux/amd64,linux/arm64
  cacheport build --backend registry --set ref=registry.example.com/app/cache -- --network=host
""")
@click.argument("context", default=".", required=False)
@click.option("-t", "--tag", "tags", multiple=True, metavar="TAG", help="Image tag (repeatable).")
@click.option("-f", "--file", "dockerfile", metavar="PATH", help="Dockerfile (default: CONTEXT/Dockerfile).")
@plan_options
@click.pass_context
def build(ctx: click.Context, /, context: str, tags: tuple[str, ...], dockerfile: str | None, **common: Any) -> None:
    """Run docker buildx build with the plan's cache imports and exports.

    Logs in with the backend's credentials (password on stdin, never in arguments or logs), checks what
    the builder can do and drops what it can't (never failing the build for the cache's sake), streams
    the build log, swaps a local cache into place after success, and ends with a one-line cache summary.
    Everything after -- goes to buildx as it is. The exit status is the build's.
    """
    from cacheport.build import run

    plan = make_plan(**common)
    extra = (ctx.obj or {}).get("extra", [])
    code = run(plan, context, tags, dockerfile, extra, os.environ, lambda m: click.echo(f"cacheport: {m}", err=True))
    sys.exit(code)


def _check_config_text(text: str, path: Path, context: Any, plugins: Any) -> Any:
    """Build a plan from config text that is not written yet; a problem is reported as being 'after' the change."""
    from cacheport.config import load_config
    from cacheport.plan import build_plan

    with tempfile_dir() as tmp:
        candidate = Path(tmp) / path.name
        candidate.write_text(text, encoding="utf-8")
        try:
            return build_plan(load_config(Path(tmp), os.environ, config_path=candidate), context, plugins)
        except CacheportError as exc:
            message = str(exc).replace(str(candidate), str(path))
            raise type(exc)(f"{path} not written, because the result would be invalid: {message}") from None


def _typed(backend: Any, sets: list[tuple[str, str]]) -> dict[str, Any]:
    """``--set`` values as the option's type, so the file says ``insecure = true``, not ``"true"``."""
    from cacheport.errors import ConfigError

    out: dict[str, Any] = {}
    for key, value in sets:
        option = backend.option(key)
        if option is not None and option.type is bool:
            if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ConfigError(f"--set {key}={value}: expected true or false")
            out[option.name] = value.strip().lower() in ("true", "1", "yes", "on")
        elif option is not None and option.type is int:
            try:
                out[option.name] = int(value)
            except ValueError:
                raise ConfigError(f"--set {key}={value}: expected a whole number") from None
        else:
            out[option.name if option else key] = value
    return out


def tempfile_dir() -> Any:
    import tempfile

    return tempfile.TemporaryDirectory(prefix="cacheport-")


@cli.command(epilog="""\b
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
@click.option("--set", "sets", multiple=True, metavar="OPTION=VALUE", callback=_split_set,
              help="Also write an option of the new backend (e.g. its ref or url).")
@click.option("--dry-run", is_flag=True, help="Show the diff; write nothing.")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Config file (default: the one cacheport finds).")
@click.option("-v", "--verbose", count=True, help="Show tracebacks.")
def switch(new: str | None, phase: str | None, finish: bool, from_: str | None, sets: list[tuple[str, str]],
           dry_run: bool, config_path: Path | None, verbose: int) -> None:
    """Move the cache to another backend by editing the config file, keeping caches warm.

    Sets backend = NEW and a [migration] table (from = the current backend, phase = dual-read), so builds
    read both backends until you move on: --phase dual-write, --phase cutover, then --finish. Comments and
    everything else in the file stay as they are; the file is replaced atomically, and only when the
    result is a valid config.
    """
    from cacheport.config import load_config, resolve_migration
    from cacheport.context import detect_context
    from cacheport.errors import ConfigError
    from cacheport.plan import select_backend
    from cacheport.switch import diff, switched

    if not (new or phase or finish):
        raise ConfigError("switch needs a backend name, --phase or --finish (see cacheport switch --help)")
    plugins = _plugins(verbose)
    cwd = Path.cwd()
    config = load_config(cwd, os.environ, config_path=config_path)
    context = detect_context(plugins.context_providers(), os.environ, cwd)
    current, setting, _ = select_backend(config, context, plugins)
    for name, s in [("backend", setting), *[(f"migration.{k}", v) for k, v in resolve_migration(config).items()]]:
        if s.source.level in ("env", "cli"):
            raise ConfigError(f"{name} is set by {s.source.detail}; switch edits config files, so change it there")
    if from_:
        current = plugins.backend(from_)
    elif new and setting.source.level == "default":
        # The default depends on where this runs (gitlab in GitLab CI, local on a laptop): guessing it here
        # could record the wrong old home and leave the real cache unread.
        raise ConfigError(f"no config names the current backend ({current.name!r} is only the {context.provider} "
                          f"default here); say where the cache is now: cacheport switch {new} --from BACKEND")
    if new:
        new = plugins.backend(new).name
    path = config.path or cwd / "cacheport.toml"
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    pyproject = path.name == "pyproject.toml"
    after = switched(before, pyproject=pyproject, current=current.name, new=new, phase=phase, finish=finish)
    if sets:
        import tomlkit

        doc = tomlkit.parse(after)
        table = doc["tool"]["cacheport"] if pyproject else doc
        target = new or current.name
        section = table.setdefault(target, tomlkit.table())
        for key, value in _typed(plugins.backend(target), sets).items():
            section[key] = value
        after = tomlkit.dumps(doc)
    plan = _check_config_text(after, path, context, plugins)
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
    else:
        click.echo(f"{path}: migration phase is now {phase}")


@cli.command(epilog="""\b
Examples:
  cacheport init                            # the detected CI's backend (local on a laptop)
  cacheport init --backend registry --set ref=registry.example.com/team/app/cache
""")
@click.option("--backend", "-b", metavar="NAME", help="The backend (default: the detected CI's).")
@click.option("--set", "sets", multiple=True, metavar="OPTION=VALUE", callback=_split_set,
              help="Write an option of the backend (repeatable).")
@click.option("--force", is_flag=True, help="Overwrite an existing cacheport.toml.")
@click.option("--dry-run", is_flag=True, help="Print the file; write nothing.")
@click.option("-v", "--verbose", count=True, help="Show tracebacks.")
def init(backend: str | None, sets: list[tuple[str, str]], force: bool, dry_run: bool, verbose: int) -> None:
    """Write a starter cacheport.toml for the CI detected here."""
    from cacheport.context import detect_context
    from cacheport.errors import ConfigError
    from cacheport.switch import starter

    plugins = _plugins(verbose)
    cwd = Path.cwd()
    context = detect_context(plugins.context_providers(), os.environ, cwd)
    chosen = plugins.backend(backend or context.default_backend if (backend or context.default_backend in
                                                                    plugins.backends()) else "local")
    path = cwd / "cacheport.toml"
    if path.exists() and not force and not dry_run:
        raise ConfigError(f"{path.name} exists already; use --force to overwrite it")
    text = starter(chosen.name, _typed(chosen, sets))
    _check_config_text(text, path, context, plugins)
    if dry_run:
        click.echo(text, nl=False)
        return
    write_file(path, text, mode=0o644)
    click.echo(f"wrote {path.name}: backend = {chosen.name} ({context.provider} detected). "
               "`cacheport explain` shows what it does.")


@cli.command(epilog="""\b
Examples:
  cacheport doctor
  cacheport doctor --backend pulp --format json
""")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@plan_options
def doctor(fmt: str, **common: Any) -> None:
    """Check that the configured cache works before a build finds out: one line per check, with the fix.

    Exit status 0 when every check passes, 1 when one fails.
    """
    import json

    from cacheport.backend import Check
    from cacheport.doctor import machine_checks

    plan = make_plan(**common)
    backend = _plugins(0).backend(plan.backend)
    checks: list[Check] = [Check("plan", True, f"backend {plan.backend}: {len(plan.imports)} import(s), "
                                 f"{len(plan.exports)} export(s)")]
    checks += machine_checks(plan, os.environ)
    if backend.doctor is not None and plan.request is not None:
        try:
            checks += list(backend.doctor(plan.request, os.environ))
        except Exception as exc:  # a plugin's bug is a failed check, not a crash
            checks.append(Check(f"{backend.name} checks", False, f"{type(exc).__name__}: {exc}",
                                "report this to the plugin's authors (-v shows where)"))
    if backend.cache_type == "registry" and plan.request is not None:
        # Last: the format round trip writes a scratch tag, which may create the repository.
        from cacheport.lifecycle import registry_checks

        checks += registry_checks(_cache_side(plan), os.environ)
    if fmt == "json":
        click.echo(json.dumps([{"name": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix} for c in checks],
                              indent=2))
    else:
        for c in checks:
            fix = "" if c.ok or not c.fix else f"\n    fix: {c.fix}"
            click.echo(f"{'✓' if c.ok else '✗'} {c.name}: {c.detail}{fix}")
    sys.exit(0 if all(c.ok for c in checks) else 1)


def _cache_side(plan: Any) -> Any:
    """The configured backend's registry repository and credentials, or an error saying it has none."""
    from cacheport.errors import ConfigError
    from cacheport.seed import for_branch

    backend = _plugins(0).backend(plan.backend)
    if backend.cache_type != "registry" or plan.request is None:
        raise ConfigError(f"backend {plan.backend!r} keeps its cache in {backend.cache_type!r} storage; "
                          "status and prune read registry-type backends (and local directories, for status)")
    ctx = plan.context
    return for_branch(backend, plan.request)(ctx.branch or ctx.default_branch or "latest")


@cli.command(epilog="""\b
Examples:
  cacheport status
  cacheport status --format json
  cacheport status --backend local
""")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@plan_options
def status(fmt: str, **common: Any) -> None:
    """Show the cache in its backend: every tag, its format, size, last update and branch.

    For a local cache: the directory's size and the blobs no build uses any more.
    """
    import json

    from cacheport import lifecycle
    from cacheport.render import human_size

    plan = make_plan(**common)
    if _plugins(0).backend(plan.backend).cache_type == "local":
        infos = [lifecycle.local_status(Path(s.current)) for s in plan.swaps] or [
            lifecycle.local_status(Path(str(e.get("src")))) for e in plan.imports if e.type == "local"]
        if fmt == "json":
            click.echo(json.dumps(infos, indent=2))
            return
        for i in infos:
            click.echo(f"{i['directory']}: {human_size(i['size'])} in {i['blobs']} blobs; "
                       f"{i['stale_blobs']} stale ({human_size(i['stale_size'])})" if i["exists"]
                       else f"{i['directory']}: no cache yet")
        return
    side = _cache_side(plan)
    tags = lifecycle.list_cache(side, plan, plan.request.key if plan.request else None)
    if plan.migrating_from and plan.old_request is not None:
        _migration_status(plan, side, tags, fmt)
        return
    if fmt == "json":
        click.echo(json.dumps({"repository": f"{side.ref.host}/{side.ref.repository}",
                               "tags": [t.as_dict() for t in tags]}, indent=2))
        return
    click.echo(f"{side.ref.host}/{side.ref.repository}: {len(tags)} tag(s)")
    if tags:
        rows = [[t.tag, t.format or "(not a cache)", human_size(t.size),
                 t.updated.strftime("%Y-%m-%d %H:%M") if t.updated else "-", t.role] for t in tags]
        click.echo(_table(rows, ["tag", "format", "size", "updated", "branch"]), nl=False)


def _migration_status(plan: Any, side: Any, new_tags: list[Any], fmt: str) -> None:
    """Which branches have cache in the old and in the new backend."""
    import json

    from cacheport import lifecycle
    from cacheport.render import human_size
    from cacheport.seed import for_branch

    old = _plugins(0).backend(plan.migrating_from)
    if old.cache_type != "registry":
        raise click.ClickException(f"the old backend {old.name!r} is not registry-type; status can't list it")
    ctx = plan.context
    old_side = for_branch(old, plan.old_request)(ctx.branch or ctx.default_branch or "latest")
    old_tags = lifecycle.list_cache(old_side, plan, plan.old_request.key)
    by_tag: dict[str, dict[str, Any]] = {}
    for label, tags in (("old", old_tags), ("new", new_tags)):
        for t in tags:
            by_tag.setdefault(t.tag, {"tag": t.tag, "role": t.role, "old": None, "new": None})[label] = t.as_dict()
    if fmt == "json":
        click.echo(json.dumps({"migration": {"from": old.name, "to": plan.backend, "phase": plan.phase},
                               "old": f"{old_side.ref.host}/{old_side.ref.repository}",
                               "new": f"{side.ref.host}/{side.ref.repository}",
                               "tags": sorted(by_tag.values(), key=lambda r: r["tag"])}, indent=2))
        return
    click.echo(f"migrating {old.name} → {plan.backend} ({plan.phase})\n"
               f"  old: {old_side.ref.host}/{old_side.ref.repository}\n  new: {side.ref.host}/{side.ref.repository}")

    def cell(info: dict[str, Any] | None) -> str:
        return f"{info['format']} {human_size(info['size'])}" if info else "-"

    rows = [[r["tag"], cell(r["old"]), cell(r["new"]), r["role"] or ""] for r in sorted(by_tag.values(),
                                                                                        key=lambda r: r["tag"])]
    click.echo(_table(rows, ["tag", f"old ({old.name})", f"new ({plan.backend})", "branch"]), nl=False)
    missing = [r["tag"] for r in by_tag.values() if r["old"] and not r["new"]]
    if missing:
        click.echo(f"{len(missing)} tag(s) only in {old.name}: `cacheport seed --from {old.name} --to {plan.backend} "
                   "--all` copies them")


@cli.command(epilog="""\b
Examples:
  cacheport prune --older-than 14d              # show what would go
  cacheport prune --older-than 14d --yes        # delete it
  cacheport prune --branches-gone --yes         # caches of branches no longer on origin
  cacheport prune feature-x --yes               # one tag, by name (the default branch's too)
""")
@click.argument("tags_named", nargs=-1, metavar="[TAG]...")
@click.option("--older-than", metavar="AGE", help="Tags not updated for AGE (14d, 12h, 2w).")
@click.option("--branches-gone", is_flag=True, help="Tags of branches that no longer exist on origin.")
@click.option("--keep", multiple=True, metavar="NAME", help="Never delete this branch's (or tag's) cache.")
@click.option("--yes", is_flag=True, help="Delete; without it, only show what would be deleted.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@plan_options
def prune(tags_named: tuple[str, ...], older_than: str | None, branches_gone: bool, keep: tuple[str, ...],
          yes: bool, fmt: str, **common: Any) -> None:
    """Delete stale cache tags through the registry API (a manifest DELETE).

    Nothing is deleted without --yes. The default branch's cache is kept unless named as a TAG.
    """
    import json

    from cacheport import lifecycle
    from cacheport.errors import ConfigError
    from cacheport.refs import branch_tag
    from cacheport.render import human_size

    if not (tags_named or older_than or branches_gone):
        raise ConfigError("say what to prune: TAG names, --older-than AGE or --branches-gone")
    age = lifecycle.parse_age(older_than) if older_than else None
    plan = make_plan(**common)
    default = plan.context.default_branch
    if (older_than or branches_gone) and not default and not keep:
        raise ConfigError("the default branch is unknown here (no CI, no origin/HEAD), so its cache can't be "
                          "protected; name it: --keep BRANCH")
    side = _cache_side(plan)
    key = plan.request.key if plan.request else None
    live = {branch_tag(b) for b in lifecycle.remote_branches(Path.cwd())} if branches_gone else None
    keep_tags = {branch_tag(k, key) for k in keep} | {branch_tag(k) for k in keep} | set(keep)
    tags = lifecycle.list_cache(side, plan, key)
    decisions = lifecycle.choose(tags, named=tags_named, older_than=age, live_branch_tags=live, keep=keep_tags,
                                 default_tag=branch_tag(default) if default else None)
    unknown = set(tags_named) - {t.tag for t in tags}
    if unknown:
        raise ConfigError(f"no such tag in {side.ref.host}/{side.ref.repository}: {', '.join(sorted(unknown))}")
    doomed = [d for d in decisions if d.delete]
    deleted: list[str] = []
    if yes and doomed:
        with lifecycle.registry_for(side) as reg:
            for d in doomed:
                reg.delete_manifest(side.ref.repository, d.tag.digest)
                deleted.append(d.tag.tag)
    if fmt == "json":
        click.echo(json.dumps([{**d.tag.as_dict(), "delete": d.delete, "reason": d.reason,
                                "deleted": d.tag.tag in deleted} for d in decisions], indent=2))
        return
    verb = "deleted" if yes else "would delete"
    for d in decisions:
        click.echo(f"{verb if d.delete else 'keep':12s} {d.tag.tag:40s} {human_size(d.tag.size):>9s}  {d.reason}")
    total = sum(d.tag.size for d in doomed)
    click.echo(f"{verb} {len(doomed)} of {len(decisions)} tag(s), {human_size(total)}"
               + ("" if yes or not doomed else "; run again with --yes to delete"))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(h.upper().ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(out) + "\n"


@cli.command(epilog="""\b
Examples:
  cacheport plugins
  cacheport plugins --format json
  CACHEPORT_LOAD_PLUGINS= cacheport plugins        # built-ins only
""")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("-v", "--verbose", count=True, help="Show tracebacks of plugins that failed to load.")
def plugins(fmt: str, verbose: int) -> None:
    """List installed plugins: name, version, source, and the backends each provides."""
    import json

    loaded = _plugins(verbose)
    try:
        owners = loaded.backend_owners()
    except CacheportError:
        owners = {}
    provided: dict[str, list[str]] = {}
    for backend, info in owners.items():
        provided.setdefault(info.name, []).append(backend)
    rows = [
        {
            "name": i.name,
            "distribution": i.distribution,
            "version": i.version,
            "source": i.source,
            "module": i.module,
            "backends": sorted(provided.get(i.name, [])),
            "error": i.error,
        }
        for i in loaded.infos
    ]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    table = [
        [r["name"], f"{r['distribution']} {r['version']}".strip(), r["source"],
         ", ".join(r["backends"]) or ("FAILED" if r["error"] else "-")]
        for r in rows
    ]
    click.echo(_table(table, ["plugin", "distribution", "source", "backends"]), nl=False)


@cli.command(epilog="""\b
Examples:
  cacheport backends
  cacheport backends gitlab
  cacheport backends --format json
""")
@click.argument("name", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def backends(name: str | None, fmt: str) -> None:
    """List backends and their options; with NAME, one backend in detail."""
    import json

    from cacheport.backend import OPTION_TYPES
    from cacheport.config import env_name

    loaded = _plugins(0)
    found = loaded.backends()
    chosen = [loaded.backend(name)] if name else list(found.values())
    owners = loaded.backend_owners()
    docs = [
        {
            "name": b.name,
            "description": b.description,
            "cache_type": b.cache_type,
            "plugin": owners[b.name].name,
            "distribution": owners[b.name].distribution,
            "docs": b.docs,
            "options": [
                {"name": o.name, "type": OPTION_TYPES[o.type], "default": o.default, "choices": list(o.choices),
                 "required": o.required, "secret": o.secret, "env": env_name(b.name, o.name), "help": o.help}
                for o in b.options
            ],
        }
        for b in chosen
    ]
    if fmt == "json":
        click.echo(json.dumps(docs, indent=2))
        return
    if not name:
        click.echo(_table([[d["name"], d["cache_type"], d["description"]] for d in docs],
                          ["backend", "type", "description"]), nl=False)
        click.echo("\n`cacheport backends NAME` shows a backend's options.")
        return
    d = docs[0]
    click.echo(f"{d['name']}: {d['description']}\n(plugin {d['plugin']} from {d['distribution']}, "
               f"BuildKit type {d['cache_type']})\n")
    if d["docs"]:
        click.echo(d["docs"] + "\n")
    rows = [[o["name"], o["type"] + (" (" + "|".join(o["choices"]) + ")" if o["choices"] else ""),
             "(required)" if o["required"] else ("-" if o["default"] is None else json.dumps(o["default"])),
             o["help"]] for o in d["options"]]
    click.echo(_table(rows, ["option", "type", "default", "help"]), nl=False)
    click.echo(f"\nSet in [tool.cacheport.{d['name']}], as {env_name(d['name'], 'OPTION')}, "
               "or with --set OPTION=VALUE.")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: runs the CLI and turns our errors into one line and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "build" in argv and "--" in argv[argv.index("build"):]:
        # click would hand everything after -- to CONTEXT first; buildx's own arguments must pass untouched.
        cut = argv.index("--", argv.index("build"))
        argv, extra = argv[:cut], argv[cut + 1:]
    try:
        cli.main(args=argv, prog_name="cacheport", standalone_mode=False, obj={"extra": extra})
    except CacheportError as exc:
        if _verbose(argv):
            import traceback

            traceback.print_exc()
        click.echo(f"cacheport: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("cacheport: aborted", err=True)
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(0)

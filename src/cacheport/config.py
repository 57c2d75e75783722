"""Reading settings: the config file, the environment and CLI flags, with where each value came from.

Precedence is CLI > environment > file > default. This module knows option *schemas* only as data passed
in by the plan; it never imports a backend. cacheport's own keys are :mod:`cacheport.options`'s, and how one
value is typed is :mod:`cacheport.values`'s; both are exported from here too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from cacheport.errors import ConfigError, close_matches, did_you_mean
from cacheport.options import ENV_PREFIX as ENV_PREFIX
from cacheport.options import GLOBAL_OPTIONS as GLOBAL_OPTIONS
from cacheport.options import MIGRATION as MIGRATION
from cacheport.options import MIGRATION_OPTIONS as MIGRATION_OPTIONS
from cacheport.options import MOUNTS as MOUNTS
from cacheport.options import MOUNTS_OPTIONS as MOUNTS_OPTIONS
from cacheport.options import OTHER_VARIABLES as OTHER_VARIABLES
from cacheport.options import PHASES as PHASES
from cacheport.options import env_name as env_name
from cacheport.records import Backend, Option, normalize_key
from cacheport.records import Setting as Setting
from cacheport.records import Source as Source
from cacheport.values import coerce, resolve
from cacheport.values import interpolate as interpolate
from cacheport.values import parse_size as parse_size
from cacheport.values import parse_text as parse_text


@attrs.frozen
class Config:
    """Everything the user set, before it is checked against a backend's schema.

    Attributes:
        path: the config file in use, or None.
        values: ``(scope, key) -> [Setting, ...]`` in rising precedence; scope is ``""`` for global keys,
            a backend name, or ``"*"`` for ``--set option=value`` aimed at whichever backend is selected.
        tables: backend names that have a table in the file.
        environ: the environment the values were read from (for ``${VAR}`` references).
    """

    path: Path | None
    values: Mapping[tuple[str, str], tuple[Setting, ...]]
    tables: tuple[str, ...] = ()
    environ: Mapping[str, str] = attrs.field(factory=dict, repr=False, eq=False)

    def raw(self, scope: str, key: str) -> tuple[Setting, ...]:
        return self.values.get((scope, normalize_key(key)), ())


def find_config(start: Path) -> tuple[Path, str] | None:
    """The nearest ``cacheport.toml``, or ``pyproject.toml`` with ``[tool.cacheport]``, from ``start`` up to the
    top of the git checkout it is in (a file above it belongs to something else), or to the root outside one."""
    for folder in (start, *start.parents):
        own = folder / "cacheport.toml"
        if own.is_file():
            return own, ""
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            data = _read_toml(pyproject)
            if isinstance(data.get("tool"), dict) and "cacheport" in data["tool"]:
                return pyproject, "tool.cacheport"
        if (folder / ".git").exists():
            return None
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{_show(path)}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{_show(path)}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                          f"{exc.start}); TOML files are UTF-8") from None
    except RecursionError:
        raise ConfigError(f"{_show(path)}: nested too deeply to read (tables or arrays inside each other "
                          "hundreds of levels deep)") from None
    except OSError as exc:
        raise ConfigError(f"{_show(path)}: cannot read: {exc.strerror}") from None


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_config(
    cwd: Path,
    environ: Mapping[str, str],
    *,
    config_path: Path | None = None,
    cli: Sequence[tuple[str, Any, str]] = (),
) -> Config:
    """Collect settings from the file, the environment and the CLI.

    ``cli`` holds ``(name, value, flag)``: name is ``backend``/``key``/``read-only``, ``<backend>.<option>``
    or a bare ``<option>`` of the selected backend; flag is what the user typed, for messages.
    """
    values: dict[tuple[str, str], list[Setting]] = {}
    tables: list[str] = []

    def add(scope: str, key: str, value: Any, level: str, detail: str) -> None:
        values.setdefault((scope, normalize_key(key)), []).append(Setting(value, Source(level, detail, key)))

    explicit = config_path or (Path(environ["CACHEPORT_CONFIG"]) if environ.get("CACHEPORT_CONFIG") else None)
    found: tuple[Path, str] | None
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"{explicit}: config file not found (from --config or CACHEPORT_CONFIG)")
        found = (explicit, "tool.cacheport" if explicit.name == "pyproject.toml" else "")
    else:
        found = find_config(cwd)
    path = None
    if found:
        path, prefix = found
        data = _read_toml(path)
        for part in prefix.split(".") if prefix else ():
            data = data.get(part, {}) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            raise ConfigError(f"{_show(path)}: [{prefix}] must be a table")
        where = _show(path)
        if not prefix and isinstance(data.get("tool"), dict) and "cacheport" in data["tool"]:
            raise ConfigError(f"{where}: [tool.cacheport] is for pyproject.toml; in {path.name}, settings go at "
                              "the top level (backend = \"...\", then [BACKEND] tables)")
        for key, value in data.items():
            if isinstance(value, dict):
                table = f"{prefix}.{key}" if prefix else key
                if normalize_key(key) not in (MIGRATION, MOUNTS):
                    tables.append(normalize_key(key))
                for opt, val in value.items():
                    if isinstance(val, dict | list):
                        kind = type(val).__name__
                        raise ConfigError(f"{where}: [{table}] {opt}: expected a single value, not a {kind}")
                    add(normalize_key(key), opt, val, "file", f"{where} [{table}] {opt}")
            else:
                if normalize_key(key) not in {o.key for o in GLOBAL_OPTIONS}:
                    heading = f"[{prefix}] " if prefix else ""
                    hint = did_you_mean(key, [o.name for o in GLOBAL_OPTIONS], 3)
                    raise ConfigError(
                        f"{where}: {heading}unknown key {key!r}{hint}; "
                        "backend options belong in a table named after the backend"
                    )
                add("", key, value, "file", f"{where} {('[' + prefix + '] ') if prefix else ''}{key}")

    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in OTHER_VARIABLES or value == "":
            continue  # an empty variable is an unset one, as CI systems leave them
        rest = name[len(ENV_PREFIX):]
        if "__" in rest:
            backend, _, opt = rest.partition("__")
            add(normalize_key(backend), opt, value, "env", name)
        elif normalize_key(rest) in {o.key for o in GLOBAL_OPTIONS}:
            add("", rest, value, "env", name)

    for name, value, flag in cli:
        scope, dot, opt = name.rpartition(".")
        if dot and not (scope.strip() and opt.strip()):
            raise ConfigError(f"{flag}: {name!r} is not OPTION, BACKEND.OPTION or a global key")
        if not dot:
            scope = "" if normalize_key(name) in {o.key for o in GLOBAL_OPTIONS} else "*"
        add(normalize_key(scope) if scope != "*" else "*", opt, value, "cli", flag)

    return Config(
        path=path,
        values={k: tuple(v) for k, v in values.items()},
        tables=tuple(tables),
        environ=dict(environ),
    )


#: Unknown ``CACHEPORT_<WORD>_*`` variables sharing a first word that no cacheport variable has or resembles, from
#: this many on, are another tool's namespace (a test harness, a wrapper script), not a misspelling: one line.
FAMILY = 3


def unknown_variables(environ: Mapping[str, str], backends: Mapping[str, Backend]) -> list[str]:
    """One warning per ``CACHEPORT_*`` variable that nothing reads (a misspelt name), the suggestion being the
    closest real name; a family of them (:data:`FAMILY` or more under a first word no cacheport variable has or
    resembles, ``CACHEPORT_E2E_*``) is one warning.

    ``CACHEPORT_<BACKEND>__<OPTION>`` is left to the settings' own checks, which name the backend or option.
    """
    known = [*OTHER_VARIABLES, *(f"{ENV_PREFIX}{o.key.upper().replace('-', '_')}" for o in GLOBAL_OPTIONS),
             *(env_name(b.name, o.name) for b in backends.values() for o in b.options),
             *(env_name(MIGRATION, o.name) for o in MIGRATION_OPTIONS),
             *(env_name(MOUNTS, o.name) for o in MOUNTS_OPTIONS)]
    strangers = [name for name in sorted(environ)
                 if name.startswith(ENV_PREFIX) and "__" not in name and name not in OTHER_VARIABLES
                 and normalize_key(name[len(ENV_PREFIX):]) not in {o.key for o in GLOBAL_OPTIONS}]

    def word(name: str) -> str:
        return name[len(ENV_PREFIX):].split("_", 1)[0]

    known_words = {word(k) for k in known}
    families: dict[str, list[str]] = {}
    for name in strangers:
        # a word close to one of cacheport's (MOUNT for MOUNTS) is a misspelling, each name its own warning
        if "_" in name[len(ENV_PREFIX):] and not close_matches(word(name), known_words):
            families.setdefault(word(name), []).append(name)
    grouped = {name for names in families.values() if len(names) >= FAMILY for name in names}
    bare = {k[len(ENV_PREFIX):]: k for k in known}
    lines = [f"{ENV_PREFIX}{w}_* ({len(names)} variables: {', '.join(names[:2])}, ...) are not cacheport variables "
             "and are ignored" for w, names in families.items() if len(names) >= FAMILY]
    for name in strangers:
        if name not in grouped:
            close = close_matches(name[len(ENV_PREFIX):], bare)
            lines.append(f"{name} is not a cacheport variable and is ignored"
                         + (f" (did you mean {bare[close[0]]!r}?)" if close else ""))
    return lines


def env_overrides(config: Config, secret: Mapping[str, frozenset[str]]) -> list[str]:
    """One warning per environment variable that beats a value the config file sets (and differs from it).

    ``secret`` maps a scope (a backend name) to its secret options, whose values are not shown.
    """
    out = []
    for (scope, key), settings in config.values.items():
        levels = {s.source.level: s for s in settings}
        env, file = levels.get("env"), levels.get("file")
        if env is None or file is None or "cli" in levels or str(env.value).strip().lower() == str(
                file.value).strip().lower():
            continue
        hidden = key in secret.get(scope, frozenset())
        now, was = ("", "") if hidden else (f" = {env.value!r}", f" = {file.value!r}")
        out.append(f"{env.source.detail}{now} overrides {file.source.detail}{was} "
                   f"(the environment beats the config file); unset {env.source.detail} to use the file's value")
    return out


def resolve_globals(config: Config) -> dict[str, Setting]:
    """The global settings (backend, key, read-only), typed, each from its highest level."""
    for setting in config.raw("", "history-dir"):  # a number is no directory name anyone meant (5 became ./5)
        if setting.source.level in ("file", "default") and not isinstance(setting.value, str):
            shown = str(setting.value).lower() if isinstance(setting.value, bool) else repr(setting.value)
            raise ConfigError(f"{setting.source.detail} = {shown}: expected a directory, as a string "
                              "(history-dir = \"cacheport-history\")")
    resolved = {opt.name: resolve(opt, config.raw("", opt.key), config.environ) for opt in GLOBAL_OPTIONS}
    keep = resolved["history-keep"]
    if keep.value is not None and keep.value < 1:  # 0 or less would delete every record, the new one too
        raise ConfigError(f"{keep.source.detail} = {keep.value}: records kept per branch, 1 or more "
                          "(history = \"off\" keeps none)")
    return resolved


def resolve_backend(config: Config, backend: Backend, *, selected: bool) -> dict[str, Setting]:
    """The backend's options, checked against its schema. ``--set opt=v`` applies only when ``selected``."""
    given: dict[str, list[Setting]] = {}
    for (scope, key), settings in config.values.items():
        if scope != backend.name and not (selected and scope == "*"):
            continue
        option = backend.option(key)
        if option is None:
            where, shown = settings[0].source.detail, settings[0].source.key or key
            names = [o.name for o in backend.options]
            raise ConfigError(  # the suggestion from the key as read (CACHEPORT_REGISTRY__RF: 'rf'), not as written
                f"{where}: backend {backend.name!r} has no option {shown!r}"
                + (_global_hint(config, settings[0], key, backend.name) or did_you_mean(key, names, 3))
                + f"; its options are: {', '.join(names) or '(none)'}"
            )
        given.setdefault(option.name, []).extend(settings)
    resolved = {}
    for option in backend.options:
        setting = resolve(option, given.get(option.name, ()), config.environ, f"{backend.name}.{option.name}")
        if option.required and setting.value in (None, ""):
            if config.path is None:  # where `cacheport init` and the docs put a new config
                table = f"[{backend.name}] in cacheport.toml"
            elif config.path.name == "pyproject.toml":
                table = f"[tool.cacheport.{backend.name}] in {_show(config.path)}"
            else:
                table = f"[{backend.name}] in {_show(config.path)}"
            # A misspelt table holds the option already: name it rather than send the user to write it again.
            typo = "".join(f"; the file has a table [{t}]: did you mean [{backend.name}]?"
                           for t in close_matches(backend.name, [t for t in config.tables if t != backend.name]))
            raise ConfigError(
                f"backend {backend.name!r} needs option {option.name!r}: set it in {table}, "
                f"{env_name(backend.name, option.name)}, or --set {option.name}=...{typo}"
            )
        resolved[option.name] = setting
    return resolved


def _global_hint(config: Config, setting: Setting, key: str, backend: str) -> str:
    """When a backend's unknown option is a top-level key (written below the table's header, where TOML puts it in
    the table), where it goes; else nothing."""
    option = next((o for o in GLOBAL_OPTIONS if o.key == key), None)
    if option is None:
        return ""
    if setting.source.level == "env":
        return f" ({option.name} is a top-level key: {ENV_PREFIX}{option.name.upper().replace('-', '_')})"
    if setting.source.level == "cli":
        return f" ({option.name} is a top-level key, not a backend option)"
    table = (f"[tool.cacheport.{backend}]" if config.path is not None and config.path.name == "pyproject.toml"
             else f"[{backend}]")
    return f" ({option.name} is a top-level key: put it above {table})"


def resolve_migration(config: Config) -> dict[str, Setting]:
    """The ``[migration]`` table's keys (``from``, ``phase``), typed, each from its highest level."""
    given = _table(config, MIGRATION, MIGRATION_OPTIONS)
    return {o.name: resolve(o, given.get(o.name, ()), config.environ) for o in MIGRATION_OPTIONS}


def _table(config: Config, table: str, options: Sequence[Option]) -> dict[str, list[Setting]]:
    """The settings given for a table of cacheport's own (``[migration]``, ``[mounts]``), by option; a key it
    does not have is one line naming where it was set."""
    given: dict[str, list[Setting]] = {}
    for (scope, key), settings in config.values.items():
        if scope != table:
            continue
        option = next((o for o in options if o.key == key), None)
        if option is None:
            where, key = settings[0].source.detail, settings[0].source.key or key
            names = [o.name for o in options]
            raise ConfigError(f"{where}: [{table}] has no key {key!r}{did_you_mean(key, names)}; "
                              f"its keys are: {', '.join(names)}")
        given.setdefault(option.name, []).extend(settings)
    return given


def resolve_mounts(config: Config) -> dict[str, Setting]:
    """The ``[mounts]`` table's keys, typed, each from its highest level; ``mounts = "off"`` (or ``on``) at the
    top, or ``CACHEPORT_MOUNTS``, ``--mounts``, sets ``enabled`` at its own level."""
    given = _table(config, MOUNTS, MOUNTS_OPTIONS)
    switch = next(o for o in GLOBAL_OPTIONS if o.name == "mounts")
    for setting in config.raw("", "mounts"):
        value = coerce(switch, setting, config.environ)
        given.setdefault("enabled", []).append(Setting(value == "on", setting.source))
    resolved = {o.name: resolve(o, given.get(o.name, ()), config.environ, f"mounts.{o.name}") for o in MOUNTS_OPTIONS}
    for name in ("max-size", "max-total"):
        setting = resolved[name]
        resolved[name] = Setting(parse_size(setting.value, setting.source.detail), setting.source)
    from cacheport.masking import shown_value
    from cacheport.refs import reference_problem

    helper = resolved["helper-image"]
    if helper.value is not None and (problem := reference_problem(str(helper.value))):  # it goes into a FROM line
        raise ConfigError(f"{helper.source.detail} = {shown_value(str(helper.value))}: not an image reference "
                          f"({problem})")
    return resolved


def default_cache_home(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME``, or ``~/.cache``."""
    base = environ.get("XDG_CACHE_HOME")
    return Path(base) if base else Path(environ.get("HOME") or os.path.expanduser("~")) / ".cache"

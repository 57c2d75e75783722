"""Reading settings: the config file, the environment and CLI flags, with where each value came from.

Precedence is CLI > environment > file > default. This module knows option *schemas* only as data passed
in by the plan; it never imports a backend.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from cacheport.entry import REDACTED
from cacheport.errors import ConfigError, close_matches, did_you_mean
from cacheport.records import Backend, Option, normalize_key
from cacheport.records import Setting as Setting
from cacheport.records import Source as Source

ENV_PREFIX = "CACHEPORT_"
#: Settings that are not options of one backend.
GLOBAL_OPTIONS = (
    Option("backend", "The backend that holds the cache (`cacheport backends` lists them).", default=None),
    Option("key", "Scopes cache refs, so parallel jobs (targets, platforms, matrix axes) never collide."),
    Option("read-only", "Import only; never export.", type=bool, default=False),
    Option("trust", "Who writes the caches protected builds read: branch (every job that may write writes its "
           "branch's), protected (only protected pipelines; others write their own unprotected cache) or signed "
           "(protected, and protected pipelines sign their caches and import only signed ones). "
           "Unset: protected for tags, branch otherwise.", choices=("branch", "protected", "signed")),
    Option("trust-events", "Events that read only by default but may write, comma-separated: GitHub's "
           "pull_request_target, issue_comment, workflow_run, merge_group, ...; GitLab's merge_train."),
    Option("signers", "Under trust = signed: the Ed25519 public keys whose signatures protected builds accept, "
           "comma-separated, each the base64 of its DER form (openssl pkey -pubout -outform DER | base64 -w0)."),
    Option("signing-key-env", "Under trust = signed: the protected CI/CD variable holding the private key that "
           "protected pipelines sign with (PKCS#8, PEM or the base64 of its DER).", default="CACHE_SIGNING_KEY"),
    Option("signed-max-age", "Under trust = signed: how many days a signature stays good for, bounding a "
           "rollback to an older signed cache; 0 for no bound.", type=int, default=30),
    Option("mounts", "Restore the Dockerfile's cache mounts (RUN --mount=type=cache) before `cacheport build` and "
           "save them after it: on or off. Shorthand for [mounts] enabled.", choices=("on", "off")),
)
#: The table that moves the cache from one backend to another, and its keys.
MIGRATION = "migration"
PHASES = ("dual-read", "dual-write", "cutover")
MIGRATION_OPTIONS = (
    Option("from", "The backend the cache is moving away from; while migrating, builds also read (and in "
           "dual-write, write) it."),
    Option("phase", "dual-read: import from both, export to the new backend; dual-write: also export to the old "
           "one; cutover: the new backend only.", default="dual-read", choices=PHASES),
)
#: The table for cache mounts (``mounts = "off"`` is its ``enabled = false``), and its keys.
MOUNTS = "mounts"
MOUNTS_OPTIONS = (
    Option("enabled", "Restore the Dockerfile's cache mounts before `cacheport build` and save them after a "
           "successful one.", type=bool, default=True),
    Option("helper-image", "The image of the small builds that copy mount contents into and out of the builder; "
           "it needs a shell and tar (busybox has both).", default="busybox"),
    Option("max-size", "The largest one mount's archive (and its contents) may be: bytes, or a number with KiB, "
           "MiB, GiB (KB, MB, GB: powers of 1000). Over it, the mount is not saved.", default="2GiB"),
    Option("max-total", "The most all of a build's mount archives may take together; same units.",
           default="4GiB"),
)
#: Every CACHEPORT_* variable that is not a setting (``CACHEPORT_<GLOBAL>``, ``CACHEPORT_<BACKEND>__<OPTION>``),
#: and what reads it: anything else is a typo to warn about. The one list; a test holds the repository to it.
OTHER_VARIABLES = {
    "CACHEPORT_CONFIG": "the config file, as --config",
    "CACHEPORT_LOAD_PLUGINS": "which third-party plugins load",
    "CACHEPORT_STRICT_PLUGINS": "a broken plugin is an error",
    "CACHEPORT_INSECURE_REGISTRIES": "registries spoken to over plain HTTP or unverified TLS",
    "CACHEPORT_DOCKER": "the docker client to run",
    "CACHEPORT_NONCE": "a build argument of the cache-mount helper builds, never read from the environment",
    # `args --format dotenv` writes these; GitLab hands them to later jobs as variables.
    "CACHEPORT_CACHE_FROM": "args --format dotenv output",
    "CACHEPORT_CACHE_TO": "args --format dotenv output",
    "CACHEPORT_TAGS": "args --format dotenv output",
    "CACHEPORT_BUILDX_ARGS": "args --format dotenv output",
    # The test servers' scripts (scripts/pulp-up, scripts/objstore-up), whose env files CI sources.
    **{f"CACHEPORT_PULP_{v}": "scripts/pulp-up" for v in ("STATE", "PREFIX", "PORT", "PYTHON", "TIMEOUT",
                                                           "API_PORT", "CONTENT_PORT", "PG_PORT", "ADMIN_PASSWORD")},
    **{f"CACHEPORT_OBJSTORE_{v}": "scripts/objstore-up" for v in ("STATE", "MOTO", "AZURITE", "NODE")},
}
#: Prefixes of whole families of variables that are not settings: the end-to-end harness's.
OTHER_PREFIXES = ("CACHEPORT_E2E",)
_LEVELS = ("default", "file", "env", "cli")
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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
        if not name.startswith(ENV_PREFIX) or _not_setting(name) or value == "":
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


def _not_setting(name: str) -> bool:
    return name in OTHER_VARIABLES or name.startswith(OTHER_PREFIXES)


def unknown_variables(environ: Mapping[str, str], backends: Mapping[str, Backend]) -> list[str]:
    """One warning per ``CACHEPORT_*`` variable that nothing reads (a misspelt name).

    ``CACHEPORT_<BACKEND>__<OPTION>`` is left to the settings' own checks, which name the backend or option.
    """
    known = [*OTHER_VARIABLES, *(f"{ENV_PREFIX}{o.key.upper().replace('-', '_')}" for o in GLOBAL_OPTIONS),
             *(env_name(b.name, o.name) for b in backends.values() for o in b.options),
             *(env_name(MIGRATION, o.name) for o in MIGRATION_OPTIONS),
             *(env_name(MOUNTS, o.name) for o in MOUNTS_OPTIONS)]
    return [f"{name} is not a cacheport variable and is ignored{did_you_mean(name, known)}"
            for name in sorted(environ)
            if name.startswith(ENV_PREFIX) and "__" not in name and not _not_setting(name)
            and normalize_key(name[len(ENV_PREFIX):]) not in {o.key for o in GLOBAL_OPTIONS}]


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


def interpolate(text: str, environ: Mapping[str, str], where: str, *, default: str = "") -> str:
    """Expand ``${VAR}`` and ``${VAR:-fallback}``; ``$$`` is a literal ``$``. An unset VAR is an error.

    ``default``: the setting's name when ``text`` is its default, which the user never wrote: the error then
    says what is missing and what to set, not how to edit text they have not seen.
    """

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        var, fallback = match.group(1), match.group(2)
        if environ.get(var):
            return environ[var]
        if fallback is not None:
            return fallback
        if default:
            scope, _, name = default.rpartition(".")
            how = f" ({name} in the [{scope}] table, or {env_name(scope, name)})" if scope else ""
            raise ConfigError(f"{default} is not set, and its default needs the environment variable {var}, which "
                              f"is not set here either; set {var}, or set {default}{how}")
        raise ConfigError(
            f"{where} = {text!r}: environment variable {var} is not set (use ${{{var}:-fallback}} for a default)"
        )

    return _VAR.sub(one, text)


def parse_text(option: Option, text: str, where: str) -> Any:
    """A value typed as text (a variable, a flag) as the option's type: ``true``/``1``/``on``, a whole number."""
    shown = REDACTED if option.secret else repr(text)
    if option.type is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{where} = {shown}: expected true or false")
    if option.type is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{where} = {shown}: expected a whole number") from None
    return text


def _coerce(option: Option, setting: Setting, environ: Mapping[str, str]) -> Any:
    value = setting.value
    shown = REDACTED if option.secret else repr(value)
    where = setting.source.detail
    if setting.source.level in ("env", "cli") and isinstance(value, str):
        value = parse_text(option, value, where)
    elif setting.source.level in ("file", "default") and isinstance(value, str):
        value = interpolate(value, environ, where, default=setting.source.key if setting.source.level == "default"
                            else "")
    if option.type is str and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, option.type) or (option.type is int and isinstance(value, bool)):
        kind = {str: "a string", bool: "true or false", int: "a whole number"}[option.type]
        raise ConfigError(f"{where} = {shown}: expected {kind}")
    if option.choices and str(value) not in option.choices:
        raise ConfigError(f"{where} = {shown}: allowed values are {', '.join(option.choices)}")
    return value


def resolve_globals(config: Config) -> dict[str, Setting]:
    """The global settings (backend, key, read-only), typed, each from its highest level."""
    return {opt.name: _resolve(opt, config.raw("", opt.key), config.environ) for opt in GLOBAL_OPTIONS}


def _resolve(option: Option, given: Sequence[Setting], environ: Mapping[str, str], label: str = "") -> Setting:
    ranked = sorted(given, key=lambda s: _LEVELS.index(s.source.level))
    if ranked:
        top = ranked[-1]
        return Setting(_coerce(option, top, environ), top.source)
    default = Setting(option.default, Source("default", "default"))
    if option.default is None:
        return default
    # A default that can't be used is reported under the setting's name, which is what a user can set.
    named = Setting(option.default, Source("default", f"{label or option.name} (not set; its default)",
                                           label or option.name))
    return Setting(_coerce(option, named, environ), default.source)


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
                f"{where}: backend {backend.name!r} has no option {shown!r}{did_you_mean(key, names, 3)}; "
                f"its options are: {', '.join(names) or '(none)'}"
            )
        given.setdefault(option.name, []).extend(settings)
    resolved = {}
    for option in backend.options:
        setting = _resolve(option, given.get(option.name, ()), config.environ, f"{backend.name}.{option.name}")
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


def resolve_migration(config: Config) -> dict[str, Setting]:
    """The ``[migration]`` table's keys (``from``, ``phase``), typed, each from its highest level."""
    given = _table(config, MIGRATION, MIGRATION_OPTIONS)
    return {o.name: _resolve(o, given.get(o.name, ()), config.environ) for o in MIGRATION_OPTIONS}


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
        value = _coerce(switch, setting, config.environ)
        given.setdefault("enabled", []).append(Setting(value == "on", setting.source))
    resolved = {o.name: _resolve(o, given.get(o.name, ()), config.environ, f"mounts.{o.name}") for o in MOUNTS_OPTIONS}
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


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "tb": 1000**4}


def parse_size(value: Any, where: str) -> int:
    """A size in bytes from a whole number or text such as ``512MiB`` or ``2 GB``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    if isinstance(value, str) and match and match.group(2).lower() in _UNITS and float(match.group(1)) > 0:
        return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    raise ConfigError(f"{where} = {value!r}: expected a size above 0: bytes, or a number with KiB, MiB, GiB, KB, "
                      "MB or GB")


def env_name(backend: str, option: str) -> str:
    """The environment variable that sets one backend option."""
    return f"{ENV_PREFIX}{backend.upper().replace('-', '_')}__{option.upper().replace('-', '_')}"


def default_cache_home(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME``, or ``~/.cache``."""
    base = environ.get("XDG_CACHE_HOME")
    return Path(base) if base else Path(environ.get("HOME") or os.path.expanduser("~")) / ".cache"

"""One setting's value, from what was written to its type: ``${VAR}`` in file values, text (a variable, a flag)
as true/false or a whole number, sizes with units, and which level wins (CLI > environment > file > default).

Nothing here knows where a value was read from, or a backend: :mod:`cacheport.config` hands it the settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from cacheport.entry import REDACTED
from cacheport.errors import ConfigError
from cacheport.options import env_name
from cacheport.records import Option, Setting, Source

_LEVELS = ("default", "file", "env", "cli")
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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


def coerce(option: Option, setting: Setting, environ: Mapping[str, str]) -> Any:
    """``setting``'s value as ``option`` types it: text from a variable or a flag parsed, ``${VAR}`` in a file's
    (or a default's) expanded, the type and choices checked; a bad value is one ``ConfigError`` naming where."""
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
        if isinstance(value, bool) and not option.secret:  # as the file spells it, not as Python does
            shown = str(value).lower()
        kind = {str: "a string", bool: "true or false", int: "a whole number"}[option.type]
        if option.choices:
            kind = f"one of {', '.join(repr(c) for c in option.choices)}"
        raise ConfigError(f"{where} = {shown}: expected {kind}")
    if option.choices and str(value) not in option.choices:
        raise ConfigError(f"{where} = {shown}: allowed values are {', '.join(option.choices)}")
    return value


def resolve(option: Option, given: Sequence[Setting], environ: Mapping[str, str], label: str = "") -> Setting:
    """``option``'s value from the highest level in ``given``, typed, else its default; ``label`` names the
    setting (``backend.option``) in the error of a default that can't be used."""
    ranked = sorted(given, key=lambda s: _LEVELS.index(s.source.level))
    if ranked:
        top = ranked[-1]
        return Setting(coerce(option, top, environ), top.source)
    default = Setting(option.default, Source("default", "default"))
    if option.default is None:
        return default
    # A default that can't be used is reported under the setting's name, which is what a user can set.
    named = Setting(option.default, Source("default", f"{label or option.name} (not set; its default)",
                                           label or option.name))
    return Setting(coerce(option, named, environ), default.source)


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

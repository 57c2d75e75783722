"""Editing the config file for ``cacheport switch`` and writing a new one for ``cacheport init``.

Edits keep the user's comments and layout byte for byte (tomlkit); a new file is plain data (tomli-w).
Functions here compute text; the CLI checks the result and writes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cacheport.config import MIGRATION, PHASES, parse_text
from cacheport.errors import ConfigError
from cacheport.records import Backend


def _table(doc: Any, pyproject: bool, create: bool) -> Any:
    import tomlkit

    if not pyproject:
        return doc
    tool = doc.get("tool")
    if tool is None:
        if not create:
            return None
        tool = tomlkit.table(is_super_table=True)
        doc["tool"] = tool
    table = tool.get("cacheport")
    if table is None and create:
        table = tomlkit.table()
        tool["cacheport"] = table
    return table


def switched(text: str, *, pyproject: bool, current: str, new: str | None, phase: str | None, finish: bool) -> str:
    """The config text after a switch.

    - ``new`` (a backend name): ``backend = new``; if it differs from ``current``, ``[migration] from = current``
      and ``phase`` (default dual-read). The same as ``current`` where the text names no backend: only that.
    - ``phase`` alone: move an ongoing migration to another phase.
    - ``finish``: drop the ``[migration]`` table; the backend stays.
    """
    import tomlkit

    doc = tomlkit.parse(text)
    table = _table(doc, pyproject, create=True)
    migration = table.get(MIGRATION)
    if finish:
        if migration is None:
            raise ConfigError("no migration to finish: the config has no [migration] table")
        del table[MIGRATION]
        return tomlkit.dumps(doc)
    if phase is not None and phase not in PHASES:
        raise ConfigError(f"--phase {phase!r}: allowed values are {', '.join(PHASES)}")
    if new is not None and new != current:
        ongoing = migration.get("phase", "dual-read") if migration is not None else "cutover"
        if ongoing != "cutover":
            raise ConfigError(
                f"a migration from {migration.get('from')!r} to {current!r} is still in {ongoing}; "
                "finish it first (`cacheport switch --finish`), or its cache would stop being read"
            )
        table["backend"] = new
        fresh = tomlkit.table()
        fresh["from"] = current
        fresh["phase"] = phase or "dual-read"
        if migration is not None:
            del table[MIGRATION]
        table[MIGRATION] = fresh
        return tomlkit.dumps(doc)
    if new is not None and phase is None and migration is None and "backend" not in table:
        # Nothing names the backend yet: naming it is the whole switch, since the cache is already there.
        table["backend"] = new
        return tomlkit.dumps(doc)
    if phase is None:
        raise ConfigError(f"{current!r} is already the backend; give --phase to move a migration on, or --finish")
    if migration is None:
        raise ConfigError(f"there is no migration to move to {phase}: `cacheport switch NEW` starts one")
    migration["phase"] = phase
    return tomlkit.dumps(doc)


def typed(backend: Backend, sets: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``--set`` values as the option's type, so the file says ``insecure = true``, not ``"true"``."""
    out: dict[str, Any] = {}
    for key, value in sets:
        option = backend.option(key)
        if option is None:
            out[key] = value  # the result's check names the unknown option
        else:
            out[option.name] = parse_text(option, value, f"--set {key}")
    return out


def with_options(text: str, *, pyproject: bool, backend: str, options: Mapping[str, Any]) -> str:
    """The config text with options written into the backend's table (created when missing)."""
    import tomlkit

    doc = tomlkit.parse(text)
    table = _table(doc, pyproject, create=True)
    section = table.setdefault(backend, tomlkit.table())
    for key, value in options.items():
        section[key] = value
    return tomlkit.dumps(doc)


def starter(backend: str, options: Mapping[str, Any]) -> str:
    """A new cacheport.toml."""
    import tomli_w

    data: dict[str, Any] = {"backend": backend}
    if options:
        data[backend] = dict(options)
    return tomli_w.dumps(data)


def diff(old: str, new: str, path: Path) -> str:
    import difflib

    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"{path} (now)", f"{path} (after)"))

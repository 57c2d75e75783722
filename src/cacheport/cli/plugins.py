"""``cacheport plugins``: every installed plugin, its version and source, and what it provides."""

from __future__ import annotations

from typing import Any

import click

from cacheport.cli.common import format_option
from cacheport.cli.output import table
from cacheport.cli.session import load_plugins
from cacheport.errors import CacheportError


@click.command("plugins", epilog="""\b
Examples:
  cacheport plugins
  cacheport plugins --format json
  CACHEPORT_LOAD_PLUGINS= cacheport plugins        # built-ins only
""")
@format_option(["table", "json"], "table")
@click.option("-v", "--verbose", count=True, help="Show tracebacks of plugins that failed to load.")
def command(fmt: str, verbose: int) -> None:
    """List installed plugins: name, version, the plugin API version each was written against (its
    cacheport_api; '-' when it declares none, which means 0.1), source, and the backends and output formats each
    provides; then the API version this cacheport implements.
    """
    import json

    loaded = load_plugins(verbose)
    provided: dict[str, list[str]] = {}
    try:
        for backend, info in loaded.backend_owners().items():
            provided.setdefault(info.name, []).append(backend)
        for name, renderer_info in loaded.renderer_owners().items():
            provided.setdefault(renderer_info.name, []).append(f"--format {name}")
    except CacheportError:
        pass
    load_plugins(verbose)  # plugins whose hooks failed just now
    rows: list[dict[str, Any]] = [
        {
            "name": i.name,
            "distribution": i.distribution,
            "version": i.version,
            "source": i.source,
            "module": i.module,
            "api": i.api,
            "backends": sorted(p for p in provided.get(i.name, []) if not p.startswith("--")),
            "formats": sorted(p[len("--format "):] for p in provided.get(i.name, []) if p.startswith("--")),
            "error": i.error,
        }
        for i in loaded.infos
    ]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    cells = [
        [r["name"], f"{r['distribution']} {r['version']}".strip(), r["api"] or "-", r["source"],
         ", ".join([*r["backends"], *(["--format " + "|".join(r["formats"])] if r["formats"] else [])])
         or ("FAILED" if r["error"] else "-")]
        for r in rows
    ]
    from cacheport import API_VERSION

    click.echo(table(cells, ["plugin", "distribution", "api", "source", "provides"]), nl=False)
    click.echo(f"plugin API {API_VERSION} (a plugin says which it targets with cacheport_api; '-': none, so 0.1)")

"""``cacheport backends``: the installed backends, and one backend's options in detail."""

from __future__ import annotations

from typing import Any

import click

from cacheport.cli.common import format_option
from cacheport.cli.output import table
from cacheport.cli.session import load_plugins


@click.command("backends", epilog="""\b
Examples:
  cacheport backends
  cacheport backends gitlab
  cacheport backends --format json
""")
@click.argument("name", required=False)
@format_option(["table", "json"], "table")
def command(name: str | None, fmt: str) -> None:
    """List backends and their options; with NAME, one backend in detail."""
    import json

    from cacheport.config import env_name
    from cacheport.records import OPTION_TYPES

    loaded = load_plugins()
    found = loaded.backends()
    chosen = [loaded.backend(name)] if name else list(found.values())
    owners = loaded.backend_owners()
    docs: list[dict[str, Any]] = [
        {
            "name": b.name,
            "description": b.description,
            "cache_type": b.cache_type,
            "store": b.store is not None,
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
        click.echo(table([[d["name"], d["cache_type"], d["description"]] for d in docs],
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
    click.echo(table(rows, ["option", "type", "default", "help"]), nl=False)
    click.echo(f"\nSet in [tool.cacheport.{d['name']}], as {env_name(d['name'], 'OPTION')}, "
               "or with --set OPTION=VALUE.")

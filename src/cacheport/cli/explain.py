"""``cacheport explain``: the plan, and where every setting came from."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cacheport.cli.common import format_option, plan_options

if TYPE_CHECKING:
    from cacheport.cli.session import Session
    from cacheport.report.record import BuildRecord


@click.command("explain", epilog="""\b
Examples:
  cacheport explain
  cacheport explain --backend registry --set ref=registry.example.com/app/cache
  CACHEPORT_KEY=arm64 cacheport explain --format json
  cacheport explain --history     # what the branch's build records make of each export
""")
@click.option("--history", "from_history", is_flag=True, help="Read this branch's build records and say what "
              "exports = \"auto\" makes of each export: kept, held back or narrowed (reads the backend's store).")
@format_option(["text", "json"], "text")
@plan_options
def command(fmt: str, from_history: bool, session: Session) -> None:
    """Show the plan, and where every setting came from (file and key, env var, flag, default), the [mounts]
    table's too (what cacheport build and cacheport mounts use); it ends with the export rule in force, and with
    --history why each export is kept, held back or narrowed."""
    import attrs

    from cacheport import render
    from cacheport.config import resolve_mounts
    from cacheport.ops.exports import rule_doc, why_rule
    from cacheport.records import ShownSetting

    # Not the plan's: only the commands that restore or save mounts need them (and stop for a bad one).
    mounts = [ShownSetting(f"mounts.{name}", setting) for name, setting in resolve_mounts(session.config).items()]
    plan = attrs.evolve(session.plan, settings=(*session.plan.settings, *mounts))
    records: list[BuildRecord] | None = None
    unread: list[str] = []  # why the records were not gone by: the build would say the same
    if from_history:
        from cacheport.cli.history import recent_records

        records = recent_records(session, unread)()
    if fmt == "json":
        import json

        doc = {**render.as_dict(plan), "export_rule": rule_doc(plan, records, unread[0] if unread else None)}
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    rule = why_rule(plan, records, unread[0] if unread else None)
    click.echo(render.explain(plan) + (f"export rule:\n  {rule}\n" if rule else ""), nl=False)

"""``cacheport status``: the caches in the backend's store, and during a migration, in the old one's too."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from cacheport.cli.common import format_option, jobs_option, plan_options
from cacheport.cli.output import table

if TYPE_CHECKING:
    from cacheport.cli.session import Session
    from cacheport.ops.inventory import CacheTag
    from cacheport.records import CacheStore, Plan


@click.command("status", epilog="""\b
Examples:
  cacheport status
  cacheport status --format json
  cacheport status --backend local
""")
@format_option(["table", "json"], "table")
@jobs_option("Manifests read", lookups=True)
@plan_options
def command(fmt: str, jobs: int, session: Session) -> None:
    """Show the cache in its backend: every tag, its format, size, last update and branch.

    For a local cache directory, also its size, the blobs no build uses any more, and whether builds can
    import from it (`cacheport prune --broken` removes one they can't).
    Works for every backend with a store (registry, gitlab, pulp, local, and plugins built on cacheport.kit).
    """
    from cacheport.errors import RegistryError
    from cacheport.ops.inventory import directory_usage, list_caches, roles
    from cacheport.ops.preflight import store_problem
    from cacheport.render import human_size

    plan = session.plan
    store = session.store()
    with store.open() as opened:
        usage = directory_usage(opened)
        problem = store_problem(store) if usage is not None else None
        try:
            tags = list_caches(opened, roles(plan.context, store), jobs)
        except RegistryError:
            if problem is None or not problem.broken:
                raise
            tags = []  # the problem line says what is wrong
    if usage is not None:
        usage["problem"] = problem.reason if problem is not None and problem.broken else None
    if plan.migration is not None:
        _migration_status(session, store, tags, fmt, jobs)
        return
    if fmt == "json":
        click.echo(json.dumps({"repository": store.location, "format": store.format,
                               "tags": [t.as_dict() for t in tags], "directory": usage}, indent=2))
        return
    if usage is not None and not usage["exists"]:
        click.echo(f"{store.location}: no such directory yet (the first build that exports the cache makes it)")
        return
    # A directory's format is BuildKit's to choose unless image-manifest is set: its FORMAT column says which.
    exported = f", exported as {store.format}" if usage is None else ""
    from cacheport.signing import is_signature_tag

    caches = [t for t in tags if not is_signature_tag(t.tag)]  # a signature is listed, but is no cache
    click.echo(f"{store.location}: {len(caches)} cache(s){exported}")
    if problem is not None and problem.broken:
        click.echo(f"  builds can't import from it: {problem.reason}; they leave it out and run without it. "
                   f"Fix: {problem.fix}")
    if usage is not None and usage["exists"]:
        click.echo(f"  {human_size(usage['size'])} in {usage['blobs']} blobs, of which {usage['stale_blobs']} "
                   f"({human_size(usage['stale_size'])}) are stale: no cache uses them any more")
    if tags:
        from cacheport.signing import is_signature_tag

        rows = [[t.tag, t.format or ("(signature)" if is_signature_tag(t.tag) else "(not a cache)"),
                 human_size(t.size), _when(t), _mounts(t), t.role] for t in tags]
        click.echo(table(rows, ["tag", "format", "size", "updated", "mounts", "branch"]), nl=False)


def _when(tag: CacheTag) -> str:
    return tag.updated.strftime("%Y-%m-%d %H:%M") if tag.updated else "-"


def _mounts(tag: CacheTag) -> str:
    """The cache mounts stored beside a cache: their size and when they were saved."""
    from cacheport.render import human_size

    return f"{human_size(tag.mounts.size)}, {_when(tag.mounts)}" if tag.mounts else "-"


def _migration_status(session: Session, store: CacheStore, new_tags: list[CacheTag], fmt: str, jobs: int) -> None:
    """Which branches have cache in the old and in the new backend."""
    from cacheport.ops.inventory import list_caches, roles
    from cacheport.render import human_size

    plan = session.plan
    assert plan.migration is not None
    old = session.plugins.backend(plan.migration.old)
    old_store = session.store(old, plan.migration.request)
    with old_store.open() as opened:
        old_tags = list_caches(opened, roles(plan.context, old_store), jobs)
    # One row per cache: an old cache under the name seeding gives it in the new backend (a local directory's
    # one cache, `latest`, is the default branch's there), beside what the new backend holds under that name.
    renamed = _seed_names(plan, (old.name, old_store), store, old_tags)
    by_tag: dict[str, dict[str, Any]] = {}
    for t in new_tags:
        by_tag[t.tag] = {"tag": t.tag, "role": t.role, "old": None, "new": t.as_dict(), "old_tag": None}
    for t in old_tags:
        name = (renamed or {}).get(t.tag, t.tag)
        row = by_tag.setdefault(name, {"tag": name, "role": t.role, "old": None, "new": None, "old_tag": None})
        row.update(old=t.as_dict(), old_tag=t.tag)
    rows = sorted(by_tag.values(), key=lambda r: r["tag"])
    if fmt == "json":
        click.echo(json.dumps({"migration": {"from": old.name, "to": plan.backend, "phase": plan.migration.phase},
                               "old": old_store.location, "new": store.location, "tags": rows}, indent=2))
        return
    click.echo(f"migrating {old.name} → {plan.backend} ({plan.migration.phase})\n"
               f"  old: {old_store.location}\n  new: {store.location}")

    def cell(info: dict[str, Any] | None, name: str | None = None) -> str:
        return f"{info['format']} {human_size(info['size'])}" + (f" ({name})" if name else "") if info else "-"

    click.echo(table([[r["tag"], cell(r["old"], r["old_tag"] if r["old_tag"] != r["tag"] else None),
                       cell(r["new"]), r["role"] or ""] for r in rows],
                     ["tag", f"old ({old.name})", f"new ({plan.backend})", "branch"]), nl=False)
    have = {n for t in new_tags for n in (t.tag, t.mounts.tag if t.mounts else None) if n}
    missing = ([t.tag for t in old_tags if t.tag not in have] if renamed is None  # seed --all would refuse too
               else [source for source, target in renamed.items() if target not in have])
    if missing:
        click.echo(f"{len(missing)} tag(s) only in {old.name}: `cacheport seed --from {old.name} --to {plan.backend} "
                   "--all` copies them")


def _seed_names(plan: Plan, old: tuple[str, CacheStore], new_store: CacheStore,
                old_tags: list[CacheTag]) -> dict[str, str] | None:
    """Each old cache's name -> the name `seed --all` would give it in the new backend (a local directory's one
    cache, ``latest``, is the default branch's tag there); None when seed --all would refuse (and say why)."""
    from cacheport.errors import CacheportError
    from cacheport.ops.seed import name_pairs

    try:
        pairs = name_pairs(old, (plan.backend, new_store), [t.tag for t in old_tags], plan.context.default_branch)
    except CacheportError:
        return None
    return {p.source.name: p.target.name for p in pairs}

"""``cacheport prune``: delete stale caches from the backend's store; a dry run unless ``--yes``."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import attrs
import click

from cacheport.cli.common import format_option, jobs_option, plan_options
from cacheport.cli.output import say

if TYPE_CHECKING:
    from cacheport.cli.session import Session

if TYPE_CHECKING:
    from cacheport.records import CacheStore, StoreSession


@click.command("prune", epilog="""\b
Examples:
  cacheport prune --older-than 14d              # show what would go
  cacheport prune --older-than 14d --yes        # delete it
  cacheport prune --branches-gone --yes         # caches of branches no longer on origin
  cacheport prune feature-x --yes               # one tag, by name (the default branch's too)
  cacheport prune --broken --yes -b local       # a local cache directory builds can't import from
""")
@click.argument("tags_named", nargs=-1, metavar="[TAG]...")
@click.option("--older-than", metavar="AGE", help="Tags not updated for AGE (14d, 12h, 2w).")
@click.option("--branches-gone", is_flag=True, help="Tags of branches that no longer exist on origin.")
@click.option("--broken", is_flag=True, help="Remove a local cache directory that builds can't import from (an "
              "empty or unreadable index.json, a missing manifest).")
@click.option("--keep", multiple=True, metavar="NAME", help="Never delete this branch's (or tag's) cache.")
@click.option("--yes", is_flag=True, help="Delete; without it, only show what would be deleted.")
@format_option(["text", "json"], "text")
@jobs_option("Manifests read, and tags deleted,", lookups=True)
@plan_options
def command(tags_named: tuple[str, ...], older_than: str | None, branches_gone: bool, broken: bool,
            keep: tuple[str, ...], yes: bool, fmt: str, jobs: int, session: Session) -> None:
    """Delete stale caches from the backend's store (a registry's manifest DELETE; a directory's index entry and
    the blobs only it used).

    Nothing is deleted without --yes. The default branch's cache is kept unless named as a TAG.
    """
    from cacheport.errors import ConfigError, RegistryError
    from cacheport.ops import inventory
    from cacheport.render import human_size

    if broken and (tags_named or older_than or branches_gone):
        raise ConfigError("--broken goes alone: it removes a whole directory, not tags")
    if broken:
        _prune_broken(attrs.evolve(session, command="prune --broken"), yes, fmt)
        return
    if not (tags_named or older_than or branches_gone):
        raise ConfigError("say what to prune: TAG names, --older-than AGE, --branches-gone or --broken")
    age = inventory.parse_age(older_than) if older_than else None
    plan = session.plan
    default = plan.context.default_branch
    store = session.store()
    # A store with one cache for every branch (a local directory) holds the default branch's cache whatever
    # its name: it is protected without knowing which branch that is.
    if (older_than or branches_gone) and not default and not keep and not store.fixed:
        raise ConfigError("the default branch is unknown here (no CI, no origin/HEAD, no single main or master), "
                          "so its cache can't be protected; name it: --keep BRANCH")
    live = None
    if branches_gone:
        live = inventory.branch_names(store, inventory.remote_branches(session.cwd))
    keep_tags = inventory.branch_names(store, keep) | set(keep)
    deleted: list[str] = []
    with store.open() as opened:
        try:
            tags = inventory.list_caches(opened, inventory.roles(plan.context, store), jobs)
        except RegistryError as exc:
            raise RegistryError(f"{exc}{_broken_hint(store, opened)}") from None
        unknown = set(tags_named) - {n for t in tags for n in (t.tag, t.mounts.tag if t.mounts else None) if n}
        if unknown:
            raise ConfigError(f"TAG {', '.join(sorted(unknown))}: no such tag in {store.location} "
                              f"(`cacheport status` lists what is there){_broken_hint(store, opened)}")
        decisions = inventory.choose(tags, named=tags_named, older_than=age, live_branch_tags=live, keep=keep_tags,
                                     default_tag=store.name_for(default or "") if default or store.fixed else None)
        doomed = [d for d in decisions if d.delete]
        if yes:
            deleted = inventory.delete_each(opened, [d.tag for d in doomed], jobs)
    if fmt == "json":
        click.echo(json.dumps([{**d.tag.as_dict(), "delete": d.delete, "reason": d.reason,
                                "deleted": d.tag.tag in deleted} for d in decisions], indent=2))
        return
    verb = "deleted" if yes else "would delete"
    for d in decisions:
        size = d.tag.size + (d.tag.mounts.size if d.tag.mounts else 0)
        if yes and d.delete and d.tag.tag not in deleted:
            click.echo(f"{'not deleted':12s} {d.tag.tag:40s} {human_size(size):>9s}  still there afterwards "
                       "(written again while prune ran?)")
            continue
        mounts = ", with its cache mounts" if d.tag.mounts else ""
        click.echo(f"{verb if d.delete else 'keep':12s} {d.tag.tag:40s} {human_size(size):>9s}  {d.reason}{mounts}")
    if yes:
        doomed = [d for d in doomed if d.tag.tag in deleted]
    total = sum(d.tag.size + (d.tag.mounts.size if d.tag.mounts else 0) for d in doomed)
    click.echo(f"{verb} {len(doomed)} of {len(decisions)} tag(s), {human_size(total)}"
               + ("" if yes or not doomed else "; run again with --yes to delete"))


def _broken_hint(store: CacheStore, session: StoreSession) -> str:
    """For a local cache directory builds can't import from: why, and how to remove it; else nothing."""
    from cacheport.oci.layout import Layout
    from cacheport.ops.preflight import store_problem

    problem = store_problem(store) if isinstance(session, Layout) else None
    if problem is None or not problem.removable:
        return ""
    return f"; builds can't import from the directory ({problem.reason}): `cacheport prune --broken --yes` removes it"


def _prune_broken(session: Session, yes: bool, fmt: str) -> None:
    """Remove the backend's cache directory when builds can't import from it."""
    import contextlib

    from cacheport.errors import ConfigError
    from cacheport.oci.layout import Layout
    from cacheport.ops.preflight import store_problem
    from cacheport.ops.rotate import held

    store = session.store()
    with store.open() as opened:
        if not isinstance(opened, Layout):
            raise ConfigError(f"--broken is for a local cache directory; {store.location} is not one")
        problem = store_problem(store)
        doomed = problem is not None and problem.removable
        if doomed and yes:
            # A build moving its finished export into place holds this lock: look again under it, so a cache
            # that became good meanwhile is never removed.
            with held(opened.directory) as mine:
                if not mine:
                    say(f"error: a build is moving a cache into {store.location} right now: nothing removed; run "
                        "again once it is done")
                    sys.exit(1)
                problem = store_problem(store)
                doomed = problem is not None and problem.removable
                if doomed:
                    opened.clear()
                    with contextlib.suppress(OSError):  # empty now, unless someone keeps other files there
                        opened.directory.rmdir()
    reason = problem.reason if problem is not None else "builds can import from it"
    if fmt == "json":
        click.echo(json.dumps({"directory": store.location, "broken": bool(problem and problem.broken),
                               "reason": reason, "delete": doomed, "deleted": doomed and yes}, indent=2))
    elif not doomed:
        click.echo(f"nothing to remove: {reason}" if problem is None or not problem.broken
                   else f"can't remove it: {reason}; fix: {problem.fix}")
    else:
        click.echo(f"{'removed' if yes else 'would remove'} {store.location}: {reason}"
                   + ("" if yes else "; run again with --yes to remove it"))

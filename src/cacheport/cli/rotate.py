"""``cacheport rotate``: swap a finished local cache export into place, for builds run by hand."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cacheport.cli.common import plan_options

if TYPE_CHECKING:
    from cacheport.cli.session import Session


@click.command("rotate", epilog="""\b
Examples:
  cacheport rotate                 # after docker buildx build $(cacheport args) succeeded
""")
@plan_options
def command(session: Session) -> None:
    """Swap a finished local cache export into place (for builds you run yourself).

    BuildKit only ever adds to a local cache directory, so cacheport exports to DIR.new and moves it
    over DIR after the build. `cacheport build` does this itself; `cacheport args` does it before printing.
    """
    from cacheport.ops.rotate import moved, promote

    plan = session.plan
    if not plan.swaps:
        click.echo("nothing to rotate: this backend keeps no local directory", err=True)
    said = False
    for swap in plan.swaps:
        done = promote(swap)
        if not swap.replace:  # a cache moving in from an older place: news only when it moved
            if done:
                click.echo(moved(swap))
                said = True
            continue
        click.echo(f"rotated {swap.current}" if done else f"no finished export at {swap.new}")
        said = True
    if plan.swaps and not said:  # only moves from older places, and none had anything to move
        click.echo(f"nothing to move: no cache waits at {', '.join(s.new for s in plan.swaps)}")

"""Read-only overviews for supervisors: counts, campaigns and their result codes, the
callback queue, and the appointments waiting for an admin."""

from __future__ import annotations

from typing import Any

import click

from .calls import call, optional_fields
from .output import (
    callbacks_table,
    campaign_tables,
    console,
    emit_json,
    resolution_table,
    stats_table,
)


@click.command()
@click.option("--campaign")
@click.pass_context
def stats(ctx: click.Context, campaign: str | None) -> None:
    """Counts by campaign and state."""
    ans = call(ctx, "stats", **optional_fields(campaign=campaign or None))
    if not emit_json(ctx, ans):
        console.print(stats_table(ans))


@click.command()
@click.pass_context
def campaigns(ctx: click.Context) -> None:
    """Campaigns and their result codes."""
    ans = call(ctx, "campaigns")
    if emit_json(ctx, ans):
        return
    for table in campaign_tables(ans):
        console.print(table)


@click.command()
@click.option("--campaign")
@click.pass_context
def resolution(ctx: click.Context, campaign: str | None) -> None:
    """Records whose appointment has passed, waiting for an admin."""
    ans = call(ctx, "resolution", **optional_fields(campaign=campaign or None))
    if not emit_json(ctx, ans):
        console.print(resolution_table(ans))


@click.command("callbacks")
@click.option("--agent", help="The callbacks AGENT may get: its own, its teams', its "
                               "campaigns' anyone-callbacks (agents must give this).")
@click.option("--team")
@click.option("--campaign")
@click.option("--from", "from_", metavar="ISO", help="Due at or after (UTC unless offset).")
@click.option("--to", metavar="ISO", help="Due at or before (UTC unless offset).")
@click.option("--state", "states", multiple=True,
              type=click.Choice(["upcoming", "due", "overdue"]),
              help="Only these (repeatable); default all.")
@click.option("--limit", default=1000, show_default=True)
@click.pass_context
def callbacks_(ctx: click.Context, agent: str | None, team: str | None,
               campaign: str | None, from_: str | None, to: str | None,
               states: tuple[str, ...], limit: int) -> None:
    """The callback queue: upcoming, due and overdue callbacks, earliest first."""
    fields: dict[str, Any] = {"limit": limit, **optional_fields(
        agent=agent, team=team, campaign=campaign, **{"from": from_}, to=to)}
    if states:
        fields["states"] = list(states)
    ans = call(ctx, "callbacks", **fields)
    if not emit_json(ctx, ans):
        console.print(callbacks_table(ans))


COMMANDS = (stats, campaigns, resolution, callbacks_)

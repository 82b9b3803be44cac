"""Read-only overviews for supervisors: counts, campaigns and their result codes, the
callback queue, the appointments waiting for an admin, and reports over the history."""

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
from .reporting import figures_table, orders_table, quotes_table, write_csv


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


@click.command()
@click.option("--from", "from_", required=True, metavar="DATE",
              help="First local day (YYYY-MM-DD).")
@click.option("--to", required=True, metavar="DATE", help="Last local day (YYYY-MM-DD).")
@click.option("--timezone", default="UTC", show_default=True,
              help="IANA zone whose local days the range and the day groups are.")
@click.option("--by", "group_by", multiple=True,
              type=click.Choice(["campaign", "list", "agent", "code", "day"]),
              help="Group by (repeatable, in order); default campaign.")
@click.option("--campaign")
@click.option("--agent")
@click.option("--list", "list_name")
@click.option("--csv", "csv_path", metavar="FILE",
              help="Also write the figures per group to FILE as CSV, with a header.")
@click.pass_context
def report(ctx: click.Context, from_: str, to: str, timezone: str,
           group_by: tuple[str, ...], campaign: str | None, agent: str | None,
           list_name: str | None, csv_path: str | None) -> None:
    """Results from the contact history over a range of local days: attempts, contacts,
    presentations, successes, rates and revenue; the quote pipeline; orders won and lost."""
    fields: dict[str, Any] = {"from": from_, "to": to, "timezone": timezone,
                              **optional_fields(campaign=campaign, agent=agent,
                                                list=list_name)}
    if group_by:
        fields["group_by"] = list(group_by)
    ans = call(ctx, "report", **fields)
    if csv_path is not None:
        n = write_csv(csv_path, ans)
        if not ctx.obj.get("json"):
            console.print(f"{n} rows written to {csv_path}")
    if emit_json(ctx, ans):
        return
    for table in (figures_table(ans), quotes_table(ans), orders_table(ans)):
        console.print(table)


COMMANDS = (stats, campaigns, resolution, callbacks_, report)

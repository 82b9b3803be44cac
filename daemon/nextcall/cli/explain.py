"""``nextcall explain``: why a record is or is not handed out, or why a campaign hands
out nothing (the daemon's ``explain`` op, rendered as rich tables)."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from .calls import call, optional_fields
from .output import console, emit_json


def _when(iso: str | None) -> str:
    return iso if iso is not None else "-"


def record_table(e: dict[str, Any]) -> Table:
    """One record's facts, label: value, then its blockers."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    who = f" for agent {e['agent']}" if e.get("agent") else ""
    verdict = "eligible now" if e["eligible"] else (
        f"eligible at {e['eligible_at']}" if e["eligible_at"] else "not eligible by itself")
    t.add_row("record", f"{e['record']} ({e['campaign']}): {verdict}{who}")
    t.add_row("state", f"{e['state']} / {e['slot']}" if e["slot"] else e["state"])
    if "due_at" in e:
        t.add_row("due", f"{e['due_at']} ({e['due_local']})" if e["due_at"]
                  else "at once (not scheduled since its import)")
        t.add_row("local time", f"{e['local_time']} ({e['timezone']})")
        for label, w in (("calling window", e["window"]),
                         (f"legal window {e['legal_window']['hours']}", e["legal_window"])):
            state = "open" if w["open"] else f"closed, opens {_when(w['next_open'])}"
            t.add_row(label, f"{state}; holds until {_when(w['until'])}")
        t.add_row("attempts", f"{e['attempts']['made']} of {e['attempts']['max']}")
        for n in e["numbers"]:
            mark = " (next)" if n["next"] else ""
            listed = f", on the {n['list']} list" if n["list"] else ""
            t.add_row("number", f"{n['number']} {n['status']}{listed}{mark}")
        if e["lease"]:
            lz = e["lease"]
            t.add_row("lease", f"{lz['lease']} held by {lz['agent']} until "
                      f"{lz['expires_at']}")
        if e["callback"]:
            cb = e["callback"]
            t.add_row("callback", f"{cb['scope']}, owner {cb['owner']}, team {cb['team']}, "
                      f"grace ends {_when(cb['grace_ends'])}")
        t.add_row("for", ", ".join(e["eligible_for"]))
    for b in e["blockers"]:
        t.add_row(f"blocked: {b['reason']}", f"{b['detail']} (until {_when(b['until'])})")
    return t


def campaign_table(e: dict[str, Any]) -> Table:
    """A campaign's open records by what holds them back, and the next to be eligible."""
    nxt = e["next"]
    caption = (f"next: {nxt['record']} at {nxt['at']} ({nxt['reason']})" if nxt
               else "next: nothing becomes eligible by itself")
    t = Table(title=f"{e['campaign']}: {e['open']} open records at {e['now']}"
              + ("" if e["enabled"] else " (disabled)"), caption=caption)
    t.add_column("")
    t.add_column("records", justify="right")
    t.add_row("available: pool", str(e["available"]["pool"]))
    t.add_row("available: callbacks", str(e["available"]["callbacks"]))
    for reason, n in e["blocked"].items():
        t.add_row(f"blocked: {reason}", str(n))
    return t


@click.command()
@click.argument("record", required=False)
@click.option("--campaign", help="Explain a campaign instead of one record (supervisors).")
@click.option("--agent", help="As seen by AGENT (its own and its teams' callbacks).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.pass_context
def explain(ctx: click.Context, record: str | None, campaign: str | None,
            agent: str | None, as_json: bool) -> None:
    """Why RECORD is or is not handed out now, or why --campaign hands out nothing."""
    if (record is None) == (campaign is None):
        raise click.UsageError("give RECORD or --campaign (one of them)")
    if as_json:
        ctx.obj["json"] = True
    ans = call(ctx, "explain", **optional_fields(record=record, campaign=campaign,
                                                 agent=agent))
    if emit_json(ctx, ans):
        return
    e = ans["explain"]
    console.print(record_table(e) if record is not None else campaign_table(e))


COMMANDS = (explain,)

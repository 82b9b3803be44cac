"""Commands on records themselves: import a CSV file, look at one record, and changes to
one record outside the call cycle (reopen it, give it a callback)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..client import Client, ClientError
from .calls import (
    EXIT_NO_DAEMON,
    EXIT_REFUSED,
    SCOPE_CHOICE,
    call,
    connect,
    optional_fields,
    window_end,
)
from .csvfile import NumberedRecord, read_csv
from .output import audit_table, console, emit_json, err_console, record_line, record_tables

#: import batches are cut by encoded size, to stay well inside the daemon's line limit
CSV_BATCH_BYTES = 48 * 1024


def batches(rows: list[NumberedRecord],
            max_bytes: int = CSV_BATCH_BYTES) -> list[list[NumberedRecord]]:
    """``rows`` cut into batches of at most ``max_bytes`` encoded (one row may exceed
    it alone), in order: the daemon stages them and applies them with the last."""
    out: list[list[NumberedRecord]] = [[]]
    size = 0
    for row in rows:
        n = len(json.dumps(row[1], separators=(",", ":"))) + 1
        if out[-1] and size + n > max_bytes:
            out.append([])
            size = 0
        out[-1].append(row)
        size += n
    return out


def _send_batch(c: Client, file: str, batch: list[NumberedRecord], campaign: str,
                list_: str, **staging: Any) -> dict[str, Any]:
    """Stage one batch; any refusal ends the command, and the daemon drops what was
    staged with the connection, so nothing is imported."""
    try:
        ans = c.call("records.import", timeout=600, campaign=campaign, list=list_,
                     records=[r for _, r in batch], **staging)
    except ClientError as exc:
        err_console.print(f"[red]{exc.code}[/red]: {exc.message}; nothing imported")
        sys.exit(EXIT_REFUSED)
    except OSError as exc:
        err_console.print(f"[red]lost the daemon[/red] ({exc}); nothing imported")
        sys.exit(EXIT_NO_DAEMON)
    if ans["rejected"]:
        for rej in ans["rejected"]:
            index = rej.get("index")
            line = batch[index][0] if index is not None and index < len(batch) else "?"
            err_console.print(f"{file}:{line}: {rej.get('field')}: {rej['message']}")
        err_console.print("[red]rejected by the daemon; nothing imported[/red]")
        sys.exit(EXIT_REFUSED)
    return ans


def _import(ctx: click.Context, file: str, rows: list[NumberedRecord], campaign: str,
            list_: str, reload: bool) -> dict[str, int]:
    """Send the rows in staged batches, the last one applying them all; the counts."""
    stage = f"csv-{os.getpid()}-{time.time_ns()}"
    total = {"inserted": 0, "updated": 0}
    parts = batches(rows)
    with connect(ctx) as c, Progress(TextColumn("importing"), BarColumn(),
                                     MofNCompleteColumn(), TimeRemainingColumn(),
                                     console=err_console, disable=ctx.obj["json"]) as bar:
        task = bar.add_task("import", total=len(rows))
        for k, batch in enumerate(parts):
            final = k == len(parts) - 1
            ans = _send_batch(c, file, batch, campaign, list_, stage=stage, final=final,
                              reload=reload and final)
            bar.advance(task, len(batch))
            if final:
                total = {"inserted": ans["inserted"], "updated": ans["updated"],
                         "reopened": ans.get("reopened", 0)}
    return total


@click.command("import")
@click.argument("file")
@click.option("--campaign", required=True)
@click.option("--list", "list_", required=True)
@click.option("--reload", is_flag=True,
              help="Also reopen the list's records closed until reload.")
@click.pass_context
def import_(ctx: click.Context, file: str, campaign: str, list_: str, reload: bool) -> None:
    """Import a CSV file: all rows or none.

    Columns: id; phone, phone2, phone3... (one number each) and/or phones (numbers
    separated by ';'); optional timezone, priority, team; every other column goes into
    the record's data.
    """
    rows, problems = read_csv(file)
    if problems:
        for p in problems:
            err_console.print(p)
        err_console.print(f"[red]{len(problems)} bad rows; nothing imported[/red]")
        sys.exit(EXIT_REFUSED)
    total = _import(ctx, file, rows, campaign, list_, reload)
    if not emit_json(ctx, {"ok": True, **total, "rows": len(rows)}):
        console.print(f"imported {len(rows)} rows: {total['inserted']} new, "
                      f"{total['updated']} updated"
                      + (f", {total['reopened']} reopened by the reload" if reload else ""))


@click.command()
@click.argument("record")
@click.option("--audit", is_flag=True,
              help="Also show each hand-out's facts: local time, windows, attempts, list "
              "versions, selection.")
@click.pass_context
def get(ctx: click.Context, record: str, audit: bool) -> None:
    """Show a record and its history."""
    ans = call(ctx, "record.get", record=record)
    if emit_json(ctx, ans):
        return
    for table in record_tables(ans["record"]):
        console.print(table)
    if audit:
        console.print(audit_table(ans["record"]))


@click.command()
@click.argument("record")
@click.option("--at", help="Due time (ISO, the record's local time unless --tz).")
@click.option("--tz", help="Timezone of --at.")
@click.option("--note")
@click.pass_context
def reopen(ctx: click.Context, record: str, at: str | None, tz: str | None,
           note: str | None) -> None:
    """Put a closed, held or resolution record back into the pool (admin; a closed record
    also by the roles its closing code's reopen_roles name)."""
    ans = call(ctx, "record.reopen", record=record,
               **optional_fields(at=at, timezone=tz, note=note))
    if not emit_json(ctx, ans):
        console.print(record_line(ans["record"]))


@click.command("schedule-callback")
@click.argument("record")
@click.argument("at")
@click.option("--tz", help="Timezone of AT (default: the record's).")
@click.option("--owner")
@click.option("--team")
@click.option("--scope", type=SCOPE_CHOICE)
@click.option("--agent", help="Acting agent: needed from an agent (campaigns with "
              "agent_schedule; special closures); the history names it.")
@click.option("--reason", default="")
@click.option("--override-window", is_flag=True)
@click.option("--until", help="A callback window's end (ISO, or HH:MM on AT's day): due "
              "at AT, promised until this.")
@click.pass_context
def schedule_callback(ctx: click.Context, record: str, at: str, tz: str | None,
                      owner: str | None, team: str | None, scope: str | None,
                      agent: str | None, reason: str, override_window: bool,
                      until: str | None) -> None:
    """Give RECORD a callback at AT (supervisor; an agent logged in to a campaign with
    agent_schedule, for a ready record or their own callback; a special team's agent)."""
    ans = call(ctx, "callback.schedule", record=record, at=at, reason=reason,
               override_window=override_window,
               **optional_fields(timezone=tz, owner=owner, team=team, scope=scope,
                                 agent=agent, until=window_end(at, until)))
    if not emit_json(ctx, ans):
        console.print(record_line(ans["record"]))


COMMANDS = (import_, get, reopen, schedule_callback)

"""``nextcall records``: a campaign's records found by state, last result, close reason,
list, owner or the time of the last disposition; one page as a table or JSON, or every
page as a CSV file."""

from __future__ import annotations

import csv
import json
import os
import sys
from typing import Any, TextIO

import click
from rich.table import Table

from ..client import Client, ClientError
from .calls import EXIT_NO_DAEMON, EXIT_REFUSED, call, connect, optional_fields
from .output import console, emit_json, err_console

#: the CSV file's columns, in order (``phones`` separated by ';', a number that is not
#: active followed by its status, as ``+31612345678:removed``; ``data`` as JSON)
CSV_COLUMNS = ("id", "list", "state", "reason", "attempts", "due_at", "owner", "team",
               "timezone", "phones", "last_code", "last_at", "last_agent", "data")
#: rows per request while exporting (the op's maximum)
EXPORT_PAGE = 1000
STATES = ("ready", "callback", "leased", "held", "resolution", "closed")
REASONS = ("final", "until_reload", "dnc", "special", "exhausted", "no_numbers", "admin")


def csv_cells(r: dict[str, Any]) -> list[str]:
    """One found record as CSV cells (empty for null)."""
    out = []
    for col in CSV_COLUMNS:
        v = r.get(col)
        if col == "phones":
            v = ";".join(p["number"] if p["status"] == "active"
                         else f"{p['number']}:{p['status']}" for p in v or ())
        elif col == "data":
            v = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
        out.append("" if v is None else str(v))
    return out


def records_table(ans: dict[str, Any], title: str) -> Table:
    """One page of found records."""
    t = Table(title=title)
    for col in ("id", "list", "state", "reason", "attempts", "due_at", "owner",
                "last_code", "last_at", "last_agent"):
        t.add_column(col, no_wrap=col == "id")
    for r in ans["records"]:
        t.add_row(r["id"], r["list"], r["state"], r["reason"] or "", str(r["attempts"]),
                  r["due_at"] or "", r["owner"] or "", r["last_code"] or "",
                  r["last_at"] or "", r["last_agent"] or "")
    return t


def export_pages(c: Client, out: TextIO, fields: dict[str, Any]) -> int:
    """Every page into ``out`` as CSV with a header; the number of records.

    Raises:
        ClientError, OSError.
    """
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    n = 0
    cursor = None
    while True:
        page = c.call("records", timeout=600, limit=EXPORT_PAGE,
                      **fields, **optional_fields(cursor=cursor))
        w.writerows(csv_cells(r) for r in page["records"])
        n += int(page["count"])
        cursor = page["next_cursor"]
        if cursor is None:
            return n


def export_csv(ctx: click.Context, path: str, fields: dict[str, Any]) -> int:
    """Write every page to ``path`` ('-': standard output); a refusal or a lost daemon
    removes the partial file and exits (1 or 3)."""
    to_stdout = path == "-"
    with connect(ctx) as c:
        out = sys.stdout if to_stdout else open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        try:
            return export_pages(c, out, fields)
        except (ClientError, OSError) as exc:
            if not to_stdout:
                out.close()
                os.unlink(path)
            if isinstance(exc, ClientError):
                err_console.print(f"[red]{exc.code}[/red]: {exc.message}; nothing exported")
                sys.exit(EXIT_REFUSED)
            err_console.print(f"[red]lost the daemon[/red] ({exc}); nothing exported")
            sys.exit(EXIT_NO_DAEMON)
        finally:
            if not to_stdout and not out.closed:
                out.close()


@click.command("records")
@click.argument("campaign")
@click.option("--state", type=click.Choice(STATES))
@click.option("--code", help="The last result code.")
@click.option("--category", help="The last result code is one of this category's.")
@click.option("--reason", type=click.Choice(REASONS), help="The close reason.")
@click.option("--list", "list_", help="The list the record was imported with.")
@click.option("--owner", help="The callback's owner.")
@click.option("--last-agent", help="The agent of the last disposition.")
@click.option("--since", metavar="ISO", help="Last disposed at or after (UTC unless offset).")
@click.option("--until", metavar="ISO", help="Last disposed at or before (UTC unless offset).")
@click.option("--limit", default=100, show_default=True, help="Rows of the page (max 1000).")
@click.option("--cursor", help="The page after the one that gave this cursor.")
@click.option("--csv", "csv_file", metavar="FILE",
              help="Write every page to FILE as CSV with a header ('-': standard output).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.pass_context
def records(ctx: click.Context, campaign: str, state: str | None, code: str | None,
            category: str | None, reason: str | None, list_: str | None,
            owner: str | None, last_agent: str | None, since: str | None, until: str | None,
            limit: int, cursor: str | None, csv_file: str | None, as_json: bool) -> None:
    """Find CAMPAIGN's records by state, last result code (or its category), close
    reason, list, owner or the time of the last disposition, in import order
    (supervisor)."""
    if as_json:
        ctx.obj["json"] = True
    fields = {"campaign": campaign, **optional_fields(
        state=state, code=code, category=category, reason=reason, list=list_,
        owner=owner, last_agent=last_agent, since=since, until=until)}
    if csv_file is not None:
        n = export_csv(ctx, csv_file, fields)
        if csv_file != "-" and not emit_json(ctx, {"ok": True, "exported": n,
                                                   "file": csv_file}):
            err_console.print(f"exported {n} records to {csv_file}")
        return
    ans = call(ctx, "records", limit=limit, **fields, **optional_fields(cursor=cursor))
    if emit_json(ctx, ans):
        return
    console.print(records_table(ans, f"{campaign}: {ans['count']} records"))
    if ans["next_cursor"]:
        console.print(f"more: --cursor {ans['next_cursor']}")


COMMANDS = (records,)

"""The ``nextcall`` command: the daemon, admin commands and a thin client.

Human output is rich tables; ``--json`` prints the daemon's answer as JSON for scripts.
Exit status: 0 ok, 1 refused by the daemon or invalid input, 2 usage, 3 cannot connect.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .client import DEFAULT_SOCKET, Client, ClientError
from .config import DEFAULT_CONFIG, load
from .core.errors import ConfigError, NextcallError

console = Console()
err_console = Console(stderr=True)

#: import batches are cut by encoded size, to stay well inside the daemon's line limit
CSV_BATCH_BYTES = 48 * 1024


def _config_path(value: str | None) -> str:
    return value or os.environ.get("NEXTCALL_CONFIG") or DEFAULT_CONFIG


def _load_or_exit(path: str) -> Any:
    try:
        return load(path)
    except ConfigError as exc:
        for where, msg in exc.problems:
            err_console.print(f"[red]{where}[/red]: {msg}")
        sys.exit(1)


def _socket_path(socket_opt: str | None, config_opt: str | None) -> str:
    if socket_opt:
        return socket_opt
    if os.environ.get("NEXTCALL_SOCKET"):
        return os.environ["NEXTCALL_SOCKET"]
    path = _config_path(config_opt)
    if Path(path).exists():
        try:
            return str(load(path).daemon.socket)
        except ConfigError:
            pass
    return DEFAULT_SOCKET


def _client(ctx: click.Context) -> Client:
    path = _socket_path(ctx.obj.get("socket"), ctx.obj.get("config"))
    try:
        return Client(path).connect()
    except OSError as exc:
        err_console.print(f"[red]cannot connect to {path}[/red]: {exc.strerror or exc}. "
                          "Is the daemon running (make run)?")
        sys.exit(3)


def _call(ctx: click.Context, op: str, *, timeout: float | None = None,
          **fields: Any) -> dict[str, Any]:
    with _client(ctx) as c:
        try:
            return c.call(op, timeout=timeout, **fields)
        except ClientError as exc:
            if ctx.obj.get("json"):
                print(json.dumps({"ok": False, "error": {"code": exc.code,
                                                         "message": exc.message,
                                                         "field": exc.field}}))
            else:
                err_console.print(f"[red]{exc.code}[/red]: {exc.message}"
                                  + (f" [dim](field {exc.field})[/dim]" if exc.field else ""))
            sys.exit(1)


def _emit_json(ctx: click.Context, answer: dict[str, Any]) -> bool:
    if ctx.obj.get("json"):
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return True
    return False


@click.group()
@click.option("--config", "config", envvar="NEXTCALL_CONFIG", default=None,
              help=f"Daemon config file (default {DEFAULT_CONFIG}).")
@click.option("--socket", "socket_", envvar="NEXTCALL_SOCKET", default=None,
              help="Daemon socket (default: from the config).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.version_option(package_name="nextcall")
@click.pass_context
def main(ctx: click.Context, config: str | None, socket_: str | None, as_json: bool) -> None:
    """nextcall: which record should this agent call next?"""
    ctx.ensure_object(dict)
    ctx.obj.update(config=config, socket=socket_, json=as_json)


# ---------------------------------------------------------------------- daemon and admin
@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the daemon in the foreground (migrates and rebuilds first)."""
    settings = _load_or_exit(_config_path(ctx.obj["config"]))
    # the records are read while the daemon's modules load (storage/prefetch.py); the
    # entry point (launch.py) began before the command line's own imports
    from . import launch
    from .storage import prefetch
    path = launch.sqlite_file(settings.daemon.database)
    early = launch.EARLY if launch.EARLY_PATH == path and path is not None else \
        (prefetch.start(path) if path else None)
    from .app import serve as run_daemon
    console.print(f"nextcall: socket [bold]{settings.daemon.socket}[/bold], database "
                  f"{settings.daemon.database}; Ctrl-C stops", highlight=False)
    sys.exit(run_daemon(settings, early))



@main.command("check-config")
@click.argument("file", required=False)
@click.pass_context
def check_config(ctx: click.Context, file: str | None) -> None:
    """Validate a config file and its includes: print every problem, or "ok"."""
    path = file or _config_path(ctx.obj["config"])
    try:
        s = load(path)
    except ConfigError as exc:
        for where, msg in exc.problems:
            click.echo(f"{where}: {msg}")
        sys.exit(1)
    click.echo(f"ok ({len(s.campaigns)} campaigns, {len(s.files)} files)")


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create or upgrade the database schema."""
    from .storage.sql import SqlStore
    settings = _load_or_exit(_config_path(ctx.obj["config"]))

    async def run() -> list[str]:
        store = SqlStore(settings.daemon.database)
        await store.open()
        try:
            return await store.migrate()
        finally:
            await store.close()
    try:
        steps = asyncio.run(run())
    except NextcallError as exc:
        err_console.print(f"[red]{exc.message}[/red]")
        sys.exit(1)
    click.echo("schema up to date" if not steps else "migrated: " + ", ".join(steps))


@main.command()
@click.option("--campaign", default="demo", show_default=True)
@click.option("--records", "count", default=5000, show_default=True)
@click.pass_context
def demo(ctx: click.Context, campaign: str, count: int) -> None:
    """Fill the database with synthetic records for a campaign (once; idempotent)."""
    from .demo import load_demo
    settings = _load_or_exit(_config_path(ctx.obj["config"]))
    if campaign not in settings.campaigns:
        err_console.print(f"[red]no campaign {campaign!r} in the config[/red]")
        sys.exit(1)
    added = asyncio.run(load_demo(settings, campaign, count, console))
    click.echo(f"demo campaign {campaign!r}: {added} records added")


# ---------------------------------------------------------------------- import
def _read_csv(path: str) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """Rows as import records with their line numbers, and per-line problems."""
    from . import phones as phonelib
    from .protocol import ImportRecord, validation_error
    from pydantic import ValidationError
    rows: list[tuple[int, dict[str, Any]]] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        return [], [f"{path}: {exc.strerror}"]
    with f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        if "id" not in header or not any(h.startswith("phone") for h in header):
            return [], [f"{path}:1: the header needs an 'id' column and a 'phone' column "
                        "(phone, phone2, ... or phones separated by ';')"]
        try:
            for row in reader:
                line = reader.line_num
                if None in row:
                    problems.append(f"{path}:{line}: more fields than the header has")
                    continue
                phones: list[str] = []
                data: dict[str, Any] = {}
                rec: dict[str, Any] = {}
                for key, value in row.items():
                    value = (value or "").strip()
                    if key == "phones":
                        phones += [p.strip() for p in value.split(";") if p.strip()]
                    elif key.startswith("phone"):
                        if value:
                            phones.append(value)
                    elif key in ("id", "timezone", "team"):
                        if value:
                            rec[key] = value
                    elif key == "priority":
                        if value:
                            try:
                                rec["priority"] = int(value)
                            except ValueError:
                                problems.append(f"{path}:{line}: priority: not an integer: "
                                                f"{value!r}")
                                continue
                    else:
                        data[key] = value
                rec["phones"] = phones
                rec["data"] = data
                try:
                    ImportRecord.model_validate(rec)
                    for p in phones:
                        phonelib.normalise(p, "phone")
                except ValidationError as exc:
                    problems.append(f"{path}:{line}: {validation_error(exc).message}")
                    continue
                except NextcallError as exc:
                    problems.append(f"{path}:{line}: {exc.field}: {exc.message}")
                    continue
                if rec.get("id") in seen:
                    problems.append(f"{path}:{line}: id {rec['id']!r} already on line "
                                    f"{seen[rec['id']]}")
                    continue
                seen[rec["id"]] = line
                rows.append((line, rec))
        except (csv.Error, UnicodeDecodeError) as exc:
            problems.append(f"{path}:{reader.line_num}: {exc}")
    return rows, problems


@main.command("import")
@click.argument("file")
@click.option("--campaign", required=True)
@click.option("--list", "list_", required=True)
@click.option("--reload", is_flag=True,
              help="Also reopen the list's records closed until reload.")
@click.pass_context
def import_(ctx: click.Context, file: str, campaign: str, list_: str, reload: bool) -> None:
    """Import a CSV file: all rows or none.

    Columns: id, phone (and phone2, phone3... or phones separated by ';'), optional
    timezone, priority, team; every other column goes into the record's data.
    """
    rows, problems = _read_csv(file)
    if problems:
        for p in problems:
            err_console.print(p)
        err_console.print(f"[red]{len(problems)} bad rows; nothing imported[/red]")
        sys.exit(1)
    stage = f"csv-{os.getpid()}-{time.time_ns()}"
    total = {"inserted": 0, "updated": 0}
    with _client(ctx) as c, Progress(TextColumn("importing"), BarColumn(),
                                     MofNCompleteColumn(), TimeRemainingColumn(),
                                     console=err_console, disable=ctx.obj["json"]) as bar:
        task = bar.add_task("import", total=len(rows))
        batches: list[list[tuple[int, dict[str, Any]]]] = [[]]
        size = 0
        for row in rows:
            n = len(json.dumps(row[1], separators=(",", ":"))) + 1
            if batches[-1] and size + n > CSV_BATCH_BYTES:
                batches.append([])
                size = 0
            batches[-1].append(row)
            size += n
        for k, batch in enumerate(batches):
            final = k == len(batches) - 1
            try:
                ans = c.call("records.import", timeout=600, campaign=campaign, list=list_,
                             records=[r for _, r in batch], stage=stage, final=final,
                             reload=reload and final)
            except ClientError as exc:
                err_console.print(f"[red]{exc.code}[/red]: {exc.message}; nothing imported")
                sys.exit(1)
            except OSError as exc:
                err_console.print(f"[red]lost the daemon[/red] ({exc}); nothing imported")
                sys.exit(3)
            if ans["rejected"]:
                for rej in ans["rejected"]:
                    line = batch[rej["index"]][0] if rej.get("index") is not None and \
                        rej["index"] < len(batch) else "?"
                    err_console.print(f"{file}:{line}: {rej.get('field')}: {rej['message']}")
                err_console.print("[red]rejected by the daemon; nothing imported[/red]")
                sys.exit(1)
            bar.advance(task, len(batch))
            if final:
                total = {"inserted": ans["inserted"], "updated": ans["updated"],
                         "reopened": ans.get("reopened", 0)}
    if not _emit_json(ctx, {"ok": True, **total, "rows": len(rows)}):
        console.print(f"imported {len(rows)} rows: {total['inserted']} new, "
                      f"{total['updated']} updated"
                      + (f", {total['reopened']} reopened by the reload" if reload else ""))


# ---------------------------------------------------------------------- agent commands
def _lease_table(leases: list[dict[str, Any]]) -> Table:
    # one block per lease, label: value, so the token is never truncated on a narrow
    # terminal (it is what the agent copies into `dispose`)
    t = Table.grid(padding=(0, 2))
    t.add_column(style="dim", no_wrap=True)
    t.add_column(overflow="fold")
    for k, lz in enumerate(leases):
        r = lz["record"]
        if k:
            t.add_row("", "")
        t.add_row("lease", f"[bold]{lz['token']}[/bold]")
        t.add_row("record", f"{r['id']}  ({lz['reason']}, attempt {r['attempts'] + 1})")
        t.add_row("phone", f"{lz['phone']}  {r['timezone']}")
        t.add_row("expires", lz["expires_at"])
        t.add_row("data", json.dumps(r["data"], ensure_ascii=False))
    return t


@main.command()
@click.argument("agent")
@click.option("--campaign", "campaigns", multiple=True, required=True)
@click.option("--team", "teams", multiple=True)
@click.pass_context
def login(ctx: click.Context, agent: str, campaigns: tuple[str, ...],
          teams: tuple[str, ...]) -> None:
    """Log an agent in to campaigns and teams."""
    ans = _call(ctx, "agent.login", agent=agent, campaigns=list(campaigns), teams=list(teams))
    if not _emit_json(ctx, ans):
        console.print(f"{agent} logged in to {', '.join(ans['campaigns'])}")


@main.command()
@click.argument("agent")
@click.pass_context
def logout(ctx: click.Context, agent: str) -> None:
    """Log an agent out."""
    ans = _call(ctx, "agent.logout", agent=agent)
    if not _emit_json(ctx, ans):
        console.print(f"{agent} logged out")


@main.command("next")
@click.option("--agent", required=True)
@click.option("--campaign", "campaigns", multiple=True)
@click.option("--count", default=1, show_default=True)
@click.option("--wait", default=0.0, show_default=True, help="Long-poll up to S seconds.")
@click.pass_context
def next_(ctx: click.Context, agent: str, campaigns: tuple[str, ...], count: int,
          wait: float) -> None:
    """Lease the next record(s) for an agent."""
    fields: dict[str, Any] = {"agent": agent, "count": count, "wait": wait}
    if campaigns:
        fields["campaigns"] = list(campaigns)
    ans = _call(ctx, "next", timeout=wait + 30, **fields)
    if _emit_json(ctx, ans):
        return
    if not ans["leases"]:
        console.print("nothing to call now")
        sys.exit(1)
    console.print(_lease_table(ans["leases"]))


@main.command()
@click.argument("lease")
@click.argument("code")
@click.option("--phone")
@click.option("--note")
@click.option("--revenue", type=float)
@click.option("--agent")
@click.option("--appointment-at", help="hold codes: the appointment (ISO, record's time).")
@click.option("--field", "extra", multiple=True, metavar="NAME=VALUE",
              help="A typed result-code field (numbers are sent as numbers).")
@click.option("--callback-at", help="ISO time, local to --callback-tz (or the record's).")
@click.option("--callback-tz")
@click.option("--scope", type=click.Choice(["personal", "personal_then_team", "team",
                                            "anyone"]))
@click.option("--owner")
@click.option("--team")
@click.option("--reason", default="")
@click.option("--override-window", is_flag=True)
@click.pass_context
def dispose(ctx: click.Context, lease: str, code: str, phone: str | None, note: str | None,
            revenue: float | None, agent: str | None, appointment_at: str | None,
            extra: tuple[str, ...], callback_at: str | None,
            callback_tz: str | None, scope: str | None, owner: str | None,
            team: str | None, reason: str, override_window: bool) -> None:
    """Report how the call on LEASE ended, with result CODE."""
    fields: dict[str, Any] = {"lease": lease, "code": code}
    for k, v in (("phone", phone), ("note", note), ("revenue", revenue), ("agent", agent)):
        if v is not None:
            fields[k] = v
    if appointment_at:
        fields["appointment"] = {"at": appointment_at}
    if extra:
        typed: dict[str, Any] = {}
        for item in extra:
            name, sep, value = item.partition("=")
            if not sep:
                raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--field")
            try:
                typed[name] = json.loads(value) if value[:1] in "-0123456789" else value
            except ValueError:
                typed[name] = value
        fields["fields"] = typed
    if callback_at:
        cb: dict[str, Any] = {"at": callback_at, "reason": reason,
                              "override_window": override_window}
        for k, v in (("timezone", callback_tz), ("scope", scope), ("owner", owner),
                     ("team", team)):
            if v is not None:
                cb[k] = v
        fields["callback"] = cb
    ans = _call(ctx, "dispose", **fields)
    if not _emit_json(ctx, ans):
        until = f" until {ans['due_at']}" if ans.get("due_at") else ""
        console.print(f"{ans['record']}: {ans['code']} -> {ans['state']}"
                      f"{' (' + ans['reason'] + ')' if ans.get('reason') else ''}{until}, "
                      f"attempt {ans['attempts']}")


@main.command()
@click.argument("lease")
@click.pass_context
def release(ctx: click.Context, lease: str) -> None:
    """Give a leased record back unchanged."""
    ans = _call(ctx, "release", lease=lease)
    if not _emit_json(ctx, ans):
        console.print(f"{ans['record']} released")


@main.command()
@click.argument("lease")
@click.option("--seconds", type=int)
@click.pass_context
def extend(ctx: click.Context, lease: str, seconds: int | None) -> None:
    """Renew a lease."""
    fields: dict[str, Any] = {"lease": lease}
    if seconds:
        fields["seconds"] = seconds
    ans = _call(ctx, "extend", **fields)
    if not _emit_json(ctx, ans):
        console.print(f"lease renewed until {ans['expires_at']}")


@main.command()
@click.argument("record")
@click.pass_context
def get(ctx: click.Context, record: str) -> None:
    """Show a record and its history."""
    ans = _call(ctx, "record.get", record=record)
    if _emit_json(ctx, ans):
        return
    r = ans["record"]
    t = Table(title=f"record {r['id']}", show_header=False)
    for key in ("campaign", "list", "state", "reason", "due_at", "attempts", "timezone",
                "priority", "owner", "team", "score"):
        t.add_row(key, "" if r.get(key) is None else str(r[key]))
    t.add_row("phones", ", ".join(f"{p['number']} ({p['status']})" for p in r["phones"]))
    t.add_row("data", json.dumps(r["data"], ensure_ascii=False))
    console.print(t)
    h = Table(title="history")
    for col in ("at", "agent", "code", "phone", "state", "due_at", "note"):
        h.add_column(col)
    for e in r["history"]:
        h.add_row(e["at"], e["agent"], e["code"], e["phone"] or "", e["state"],
                  e["due_at"] or "", e["note"] or "")
    console.print(h)


@main.command()
@click.option("--campaign")
@click.pass_context
def stats(ctx: click.Context, campaign: str | None) -> None:
    """Counts by campaign and state."""
    fields: dict[str, Any] = {"campaign": campaign} if campaign else {}
    ans = _call(ctx, "stats", **fields)
    if _emit_json(ctx, ans):
        return
    t = Table(title=f"{ans['leases']} active leases, {ans['agents_logged_in']} agents "
                    "logged in")
    cols = ("due", "dormant", "callback_due", "callback_upcoming", "leased")
    heads = ("due", "later", "cb due", "cb later", "leased")
    t.add_column("campaign", no_wrap=True)
    for head in heads:
        t.add_column(head, justify="right")
    t.add_column("closed", justify="right")
    t.add_column("zones open")
    for name, c in ans["campaigns"].items():
        zones = c.get("zones", {})
        t.add_row(name, *(str(c.get(col, 0)) for col in cols),
                  str(sum(c.get("closed", {}).values())),
                  f"{sum(1 for z in zones.values() if z['open'])}/{len(zones)}")
    console.print(t)


@main.command()
@click.pass_context
def campaigns(ctx: click.Context) -> None:
    """Campaigns and their result codes."""
    ans = _call(ctx, "campaigns")
    if _emit_json(ctx, ans):
        return
    for c in ans["campaigns"]:
        t = Table(title=f"{c['name']}: {c['description']}")
        for col in ("code", "description", "action", "category", "requires"):
            t.add_column(col)
        for rc in c["codes"]:
            req = rc["requires"]
            needs = [k for k in ("callback", "appointment") if req[k]]
            needs += [f"{k} ({req[k]})" for k in ("note", "revenue") if req[k] != "none"]
            t.add_row(rc["code"], rc["description"], rc["action"], rc["category"],
                      ", ".join(needs))
        console.print(t)


def _record_line(r: dict[str, Any]) -> str:
    due = f" due {r['due_at']}" if r.get("due_at") else ""
    owner = f" for {r['owner']}" if r.get("owner") else ""
    return f"{r['id']}: {r['state']}{due}{owner} ({r['campaign']})"


@main.command()
@click.argument("record")
@click.option("--at", help="Due time (ISO, the record's local time unless --tz).")
@click.option("--tz", help="Timezone of --at.")
@click.option("--note")
@click.pass_context
def reopen(ctx: click.Context, record: str, at: str | None, tz: str | None,
           note: str | None) -> None:
    """Put a closed, held or resolution record back into the pool (admin)."""
    fields: dict[str, Any] = {"record": record}
    for k, v in (("at", at), ("timezone", tz), ("note", note)):
        if v is not None:
            fields[k] = v
    ans = _call(ctx, "record.reopen", **fields)
    if not _emit_json(ctx, ans):
        console.print(_record_line(ans["record"]))


@main.command("schedule-callback")
@click.argument("record")
@click.argument("at")
@click.option("--tz", help="Timezone of AT (default: the record's).")
@click.option("--owner")
@click.option("--team")
@click.option("--scope", type=click.Choice(["personal", "personal_then_team", "team",
                                            "anyone"]))
@click.option("--agent", help="Acting agent (special closures).")
@click.option("--reason", default="")
@click.option("--override-window", is_flag=True)
@click.pass_context
def schedule_callback(ctx: click.Context, record: str, at: str, tz: str | None,
                      owner: str | None, team: str | None, scope: str | None,
                      agent: str | None, reason: str, override_window: bool) -> None:
    """Give RECORD a callback at AT (supervisor, or a special team's agent)."""
    fields: dict[str, Any] = {"record": record, "at": at, "reason": reason,
                              "override_window": override_window}
    for k, v in (("timezone", tz), ("owner", owner), ("team", team), ("scope", scope),
                 ("agent", agent)):
        if v is not None:
            fields[k] = v
    ans = _call(ctx, "callback.schedule", **fields)
    if not _emit_json(ctx, ans):
        console.print(_record_line(ans["record"]))


@main.command()
@click.option("--campaign")
@click.pass_context
def resolution(ctx: click.Context, campaign: str | None) -> None:
    """Records whose appointment has passed, waiting for an admin."""
    fields: dict[str, Any] = {"campaign": campaign} if campaign else {}
    ans = _call(ctx, "resolution", **fields)
    if _emit_json(ctx, ans):
        return
    t = Table(title=f"{len(ans['records'])} records waiting for resolution")
    for col in ("record", "campaign", "appointment", "waiting", "data"):
        t.add_column(col)
    for r in ans["records"]:
        t.add_row(r["id"], r["campaign"], r["appointment_at"],
                  f"{r['waiting_s'] / 3600:.1f} h", json.dumps(r["data"], ensure_ascii=False))
    console.print(t)


def _span(seconds: float) -> str:
    """A duration people read at a glance: 45s, 12m, 3h05m, 2d04h."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86_400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86_400}d{s % 86_400 // 3600:02d}h"


@main.command("callbacks")
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
    fields: dict[str, Any] = {"limit": limit}
    for k, v in (("agent", agent), ("team", team), ("campaign", campaign), ("from", from_),
                 ("to", to)):
        if v is not None:
            fields[k] = v
    if states:
        fields["states"] = list(states)
    ans = _call(ctx, "callbacks", **fields)
    if _emit_json(ctx, ans):
        return
    c = ans["counts"]
    t = Table(title=f"{ans['count']} callbacks at {ans['now']}: {c['overdue']} overdue, "
                    f"{c['due']} due, {c['upcoming']} upcoming"
                    + (f" (first {len(ans['callbacks'])} shown)" if ans["truncated"] else ""))
    # few columns, so the table stays readable in an 80-column terminal; --json has all
    for col in ("state", "late", "record", "for", "local time", "campaign", "notes"):
        t.add_column(col, justify="right" if col == "late" else "left",
                     no_wrap=col in ("state", "late", "record"))
    style = {"overdue": "red", "due": "yellow", "upcoming": ""}
    for e in ans["callbacks"]:
        who = e["owner"] if e["scope"] != "team" and e["owner"] else f"team {e['team']}"
        if e["scope"] == "personal_then_team" and e["team"]:
            who += f" then {e['team']}"
        rem = e["reminder"]
        notes = [f"{e['code']} p{e['contact_priority']}"]
        if e["leased_to"]:
            notes.append(f"leased to {e['leased_to']}")
        if rem is not None:
            notes.append(f"reminded {rem['sent_at']}" if rem["sent_at"]
                         else f"reminder {rem['minutes']}m before")
        if e["reason"]:
            notes.append(e["reason"])
        t.add_row(e["state"],
                  _span(e["late_s"]) if e["state"] != "upcoming" else f"in {_span(e['in_s'])}",
                  e["record"], who, f"{e['local']} {e['timezone']}", e["campaign"],
                  "; ".join(notes), style=style[e["state"]])
    console.print(t)


@main.command()
@click.option("--dry-run", is_flag=True, help="Only say what would change.")
@click.pass_context
def reload(ctx: click.Context, dry_run: bool) -> None:
    """Re-read campaigns and result codes in the running daemon (admin)."""
    ans = _call(ctx, "config.reload", dry_run=dry_run)
    if _emit_json(ctx, ans):
        return
    t = Table(title="would change" if dry_run else "changed")
    for col in ("campaign", "status", "settings", "codes +", "codes -", "eligibility",
                "order"):
        t.add_column(col)
    for c in ans["campaigns"]:
        t.add_row(c["campaign"], c["status"], ", ".join(c["settings"]),
                  ", ".join(c["codes_added"]), ", ".join(c["codes_removed"]),
                  str(c["eligibility_changed"]), str(c["order_changed"]))
    console.print(t)
    if ans["restart_required"]:
        console.print("needs a restart: " + ", ".join(ans["restart_required"]))
    console.print("applied" if ans["applied"] else "nothing applied (dry run)")


@main.command()
@click.pass_context
def ping(ctx: click.Context) -> None:
    """Check the daemon answers."""
    ans = _call(ctx, "ping")
    if not _emit_json(ctx, ans):
        console.print(f"nextcall {ans['version']}: {ans['records']} records, "
                      f"you are {ans['role']}")


if __name__ == "__main__":
    main()

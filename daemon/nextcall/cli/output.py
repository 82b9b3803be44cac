"""How the command line shows the daemon's answers: rich tables and lines for people, JSON
for scripts.

The renderers here only turn an answer into something printable; the commands decide what
to print and when, so a table can be changed without touching how it is fetched.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click
from rich.console import Console, ConsoleDimensions
from rich.table import Table

#: width used when the output is a pipe or a file: rich's default there is 80 columns,
#: which cut table headers and wrapped lines that scripts and logs read as one line
PIPE_WIDTH_COLS = 1000


class OutputConsole(Console):
    """A rich console that lays out for a terminal's width only when it writes to one.

    Written to a pipe or a file (``nextcall stats | less``, a cron job's log), rich would
    assume 80 columns (or the width of whatever terminal stdin happens to be) and squeeze
    table headers to fit; nobody reads that output on an 80-column screen, so it gets
    ``PIPE_WIDTH_COLS`` instead. An explicit ``COLUMNS`` still wins.
    """

    @property
    def size(self) -> ConsoleDimensions:
        """The terminal's size, or ``PIPE_WIDTH_COLS`` wide when not writing to one."""
        dims = super().size
        if self.is_terminal or os.environ.get("COLUMNS", "").isdigit():
            return dims
        return ConsoleDimensions(PIPE_WIDTH_COLS, dims.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console = OutputConsole()
err_console = OutputConsole(stderr=True)

#: callback states, most urgent first, and how the callback table colours them
CALLBACK_STYLES = {"overdue": "red", "due": "yellow", "upcoming": ""}


def emit_json(ctx: click.Context, answer: dict[str, Any]) -> bool:
    """Print ``answer`` as JSON if ``--json`` was given; True when it was (nothing else to
    print), so every command can start with ``if emit_json(...): return``."""
    if ctx.obj.get("json"):
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return True
    return False


def lease_table(leases: list[dict[str, Any]]) -> Table:
    """One block per lease, label: value, so the token is never truncated on a narrow
    terminal (it is what the agent copies into ``dispose``)."""
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


def dispose_line(ans: dict[str, Any]) -> str:
    """The outcome of a disposition on one line. ``due_at`` is when the record comes back
    (a retry, a callback, an appointment), so it reads "due at", never "until"."""
    reason = f" ({ans['reason']})" if ans.get("reason") else ""
    due = f", due at {ans['due_at']}" if ans.get("due_at") else ""
    return (f"{ans['record']}: {ans['code']} -> {ans['state']}{reason}{due}, "
            f"attempt {ans['attempts']}")


def record_line(r: dict[str, Any]) -> str:
    """A record's state after an admin change, on one line."""
    due = f" due {r['due_at']}" if r.get("due_at") else ""
    owner = f" for {r['owner']}" if r.get("owner") else ""
    return f"{r['id']}: {r['state']}{due}{owner} ({r['campaign']})"


def record_tables(r: dict[str, Any]) -> tuple[Table, Table]:
    """A record's fields, and its history oldest first."""
    t = Table(title=f"record {r['id']}", show_header=False)
    for key in ("campaign", "list", "state", "reason", "due_at", "attempts", "timezone",
                "priority", "owner", "team", "score"):
        t.add_row(key, "" if r.get(key) is None else str(r[key]))
    t.add_row("phones", ", ".join(f"{p['number']} ({p['status']})" for p in r["phones"]))
    cb = r.get("callback")
    if cb:
        t.add_row("callback", f"{_callback_when(cb)} {cb['timezone']} ({cb['scope']}, "
                              f"{cb['code']} p{cb['contact_priority']})")
    t.add_row("data", json.dumps(r["data"], ensure_ascii=False))
    h = Table(title="history")
    for col in ("#", "at", "agent", "code", "phone", "state", "due_at", "note"):
        h.add_column(col)
    for e in r["history"]:
        note = e["note"] or ""
        if e.get("amends"):
            note = f"amended: {e.get('amend_reason') or ''}" + (f"; {note}" if note else "")
        h.add_row(_entry(e), e["at"], e["agent"], e["code"], e["phone"] or "", e["state"],
                  e["due_at"] or "", note)
    return t, h


def _entry(e: dict[str, Any]) -> str:
    """A history entry's number, with what amends it or what it amends."""
    n = "" if e.get("entry") is None else str(e["entry"])
    if e.get("replaced_by"):
        n += f" → {e['replaced_by']}"
    if e.get("amends"):
        n += f" ← {e['amends']}"
    return n


def audit_table(r: dict[str, Any]) -> Table:
    """Each hand-out of the record with the facts that allowed it."""
    t = Table(title="hand-outs (audit)")
    for col in ("lease", "agent", "local time", "zone", "window", "legal", "attempts",
                "dnc v", "block v", "selection", "end", "code"):
        t.add_column(col)
    for x in r["leases"]:
        a = x.get("audit") or {}
        t.add_row(str(x["lease"]), x["agent"], a.get("local_time", "-"),
                  a.get("timezone", "-"), a.get("calling_window", "-"),
                  a.get("legal_window", "-"),
                  f"{a['attempts']}/{a['max_attempts']}" if a else "-",
                  str(a.get("dnc_list_version", "-")), str(a.get("block_list_version", "-")),
                  x["reason"], x["end"], x["code"] or "")
    return t


def stats_table(ans: dict[str, Any]) -> Table:
    """Counts by campaign and state, with how many of each campaign's zones are open."""
    t = Table(title=f"{ans['leases']} active leases, {ans['agents_logged_in']} agents "
                    "logged in")
    cols = ("due", "dormant", "callback_due", "callback_upcoming", "leased", "budget")
    heads = ("due", "later", "cb due", "cb later", "leased", "budget")
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
    return t


def campaign_tables(ans: dict[str, Any]) -> list[Table]:
    """One table per campaign: its result codes and what each one requires."""
    tables = []
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
        tables.append(t)
    return tables


def resolution_table(ans: dict[str, Any]) -> Table:
    """Records whose appointment has passed, with how long each has waited."""
    t = Table(title=f"{len(ans['records'])} records waiting for resolution")
    for col in ("record", "campaign", "appointment", "waiting", "data"):
        t.add_column(col)
    for r in ans["records"]:
        t.add_row(r["id"], r["campaign"], r["appointment_at"],
                  f"{r['waiting_s'] / 3600:.1f} h", json.dumps(r["data"], ensure_ascii=False))
    return t


def span(seconds: float) -> str:
    """A duration people read at a glance: 45s, 12m, 3h05m, 2d04h."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86_400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86_400}d{s % 86_400 // 3600:02d}h"


def _callback_who(e: dict[str, Any]) -> str:
    """Who may take the callback: its owner, its team, or the owner then the team."""
    who = e["owner"] if e["scope"] != "team" and e["owner"] else f"team {e['team']}"
    if e["scope"] == "personal_then_team" and e["team"]:
        who += f" then {e['team']}"
    return str(who)


def _callback_when(e: dict[str, Any]) -> str:
    """The promised local time, or a window as ``start-HH:MM`` (its end's local clock;
    the whole end when it falls on another day)."""
    end = e.get("until_local")
    if not end:
        return str(e["local"])
    return f"{e['local']}-{end[11:16] if end[:10] == e['local'][:10] else end}"


def _callback_notes(e: dict[str, Any]) -> str:
    """The rest of a callback squeezed into one column: code, priority, lease, reminder."""
    notes = [f"{e['code']} p{e['contact_priority']}"]
    if e.get("until") is not None and e.get("priority_now") != e["contact_priority"]:
        notes[0] += f" (now p{e['priority_now']})"
    if e["leased_to"]:
        notes.append(f"leased to {e['leased_to']}")
    rem = e["reminder"]
    if rem is not None:
        notes.append(f"reminded {rem['sent_at']}" if rem["sent_at"]
                     else f"reminder {rem['minutes']}m before")
    if e["reason"]:
        notes.append(e["reason"])
    return "; ".join(notes)


def callbacks_table(ans: dict[str, Any]) -> Table:
    """The callback queue, earliest first, coloured by how urgent each callback is."""
    c = ans["counts"]
    t = Table(title=f"{ans['count']} callbacks at {ans['now']}: {c['overdue']} overdue, "
                    f"{c['due']} due, {c['upcoming']} upcoming"
                    + (f" (first {len(ans['callbacks'])} shown)" if ans["truncated"] else ""))
    # few columns, so the table stays readable in an 80-column terminal; --json has all
    for col in ("state", "late", "record", "for", "local time", "campaign", "notes"):
        t.add_column(col, justify="right" if col == "late" else "left",
                     no_wrap=col in ("state", "late", "record"))
    for e in ans["callbacks"]:
        late = span(e["late_s"]) if e["state"] != "upcoming" else f"in {span(e['in_s'])}"
        t.add_row(e["state"], late, e["record"], _callback_who(e),
                  f"{_callback_when(e)} {e['timezone']}", e["campaign"], _callback_notes(e),
                  style=CALLBACK_STYLES[e["state"]])
    return t


def reload_table(ans: dict[str, Any], dry_run: bool) -> Table:
    """What a config reload changed (or would change), campaign by campaign."""
    t = Table(title="would change" if dry_run else "changed")
    for col in ("campaign", "status", "settings", "codes +", "codes -", "eligibility",
                "order"):
        t.add_column(col)
    for c in ans["campaigns"]:
        t.add_row(c["campaign"], c["status"], ", ".join(c["settings"]),
                  ", ".join(c["codes_added"]), ", ".join(c["codes_removed"]),
                  str(c["eligibility_changed"]), str(c["order_changed"]))
    return t

"""An agent's working day on the command line: log in, lease the next record, report how
the call ended (or give the record back, or ask for more time), log out."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .calls import EXIT_REFUSED, SCOPE_CHOICE, call, optional_fields, window_end
from .output import console, dispose_line, emit_json, lease_table


@click.command()
@click.argument("agent")
@click.option("--campaign", "campaigns", multiple=True, required=True)
@click.option("--team", "teams", multiple=True)
@click.pass_context
def login(ctx: click.Context, agent: str, campaigns: tuple[str, ...],
          teams: tuple[str, ...]) -> None:
    """Log an agent in to campaigns and teams."""
    ans = call(ctx, "agent.login", agent=agent, campaigns=list(campaigns), teams=list(teams))
    if not emit_json(ctx, ans):
        console.print(f"{agent} logged in to {', '.join(ans['campaigns'])}")


@click.command()
@click.argument("agent")
@click.pass_context
def logout(ctx: click.Context, agent: str) -> None:
    """Log an agent out."""
    ans = call(ctx, "agent.logout", agent=agent)
    if not emit_json(ctx, ans):
        console.print(f"{agent} logged out")


@click.command("next")
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
    # the daemon may hold the answer for the whole long poll before it replies
    ans = call(ctx, "next", timeout=wait + 30, **fields)
    if emit_json(ctx, ans):
        return
    if not ans["leases"]:
        console.print("nothing to call now")
        sys.exit(EXIT_REFUSED)
    console.print(lease_table(ans["leases"]))


def typed_fields(items: tuple[str, ...]) -> dict[str, Any]:
    """``--field NAME=VALUE`` options as a result code's typed fields.

    A value that looks like a number is sent as one (JSON), so a numeric field is checked
    as a number by the daemon; anything else, or a number JSON cannot read, is a string.

    Raises:
        click.BadParameter: an item without '='.
    """
    typed: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--field")
        try:
            typed[name] = json.loads(value) if value[:1] in "-0123456789" else value
        except ValueError:
            typed[name] = value
    return typed


def callback_request(at: str, tz: str | None, scope: str | None, owner: str | None,
                     team: str | None, reason: str, override_window: bool,
                     until: str | None = None) -> dict[str, Any]:
    """The ``callback`` object of a dispose request; options left out take the result
    code's defaults in the daemon."""
    return {"at": at, "reason": reason, "override_window": override_window,
            **optional_fields(timezone=tz, scope=scope, owner=owner, team=team,
                              until=window_end(at, until))}


@click.command()
@click.argument("lease")
@click.argument("code")
@click.option("--phone")
@click.option("--note")
@click.option("--revenue", type=float)
@click.option("--agent")
@click.option("--appointment-at", help="hold codes: the appointment (ISO, record's time).")
@click.option("--campaign", help="roll codes with roll_targets: the campaign to roll to.")
@click.option("--field", "extra", multiple=True, metavar="NAME=VALUE",
              help="A typed result-code field (numbers are sent as numbers).")
@click.option("--callback-at", help="ISO time, local to --callback-tz (or the record's).")
@click.option("--callback-tz")
@click.option("--callback-until", help="A callback window's end (ISO, or HH:MM on the "
              "day of --callback-at): due at --callback-at, promised until this.")
@click.option("--scope", type=SCOPE_CHOICE)
@click.option("--owner")
@click.option("--team")
@click.option("--reason", default="")
@click.option("--override-window", is_flag=True)
@click.pass_context
def dispose(ctx: click.Context, lease: str, code: str, phone: str | None, note: str | None,
            revenue: float | None, agent: str | None, appointment_at: str | None,
            campaign: str | None, extra: tuple[str, ...], callback_at: str | None,
            callback_tz: str | None, callback_until: str | None, scope: str | None,
            owner: str | None, team: str | None, reason: str,
            override_window: bool) -> None:
    """Report how the call on LEASE ended, with result CODE."""
    fields: dict[str, Any] = {"lease": lease, "code": code,
                              **optional_fields(phone=phone, note=note, revenue=revenue,
                                                agent=agent, campaign=campaign)}
    if appointment_at:
        fields["appointment"] = {"at": appointment_at}
    if extra:
        fields["fields"] = typed_fields(extra)
    if callback_at:
        fields["callback"] = callback_request(callback_at, callback_tz, scope, owner, team,
                                              reason, override_window, callback_until)
    ans = call(ctx, "dispose", **fields)
    if not emit_json(ctx, ans):
        console.print(dispose_line(ans))


@click.command()
@click.argument("lease")
@click.pass_context
def release(ctx: click.Context, lease: str) -> None:
    """Give a leased record back unchanged."""
    ans = call(ctx, "release", lease=lease)
    if not emit_json(ctx, ans):
        console.print(f"{ans['record']} released")


@click.command()
@click.argument("lease")
@click.option("--seconds", type=int)
@click.pass_context
def extend(ctx: click.Context, lease: str, seconds: int | None) -> None:
    """Renew a lease."""
    fields: dict[str, Any] = {"lease": lease}
    if seconds:
        fields["seconds"] = seconds
    ans = call(ctx, "extend", **fields)
    if not emit_json(ctx, ans):
        console.print(f"lease renewed until {ans['expires_at']}")


COMMANDS = (login, logout, next_, dispose, release, extend)

"""``nextcall amend``: replace a committed disposition's result code (supervisors at any
time; the agent who disposed within the campaign's ``amend_grace_s``)."""

from __future__ import annotations

import re
from typing import Any

import click

from .agent import callback_request, typed_fields
from .calls import SCOPE_CHOICE, call, optional_fields
from .output import console, emit_json, record_line

#: a lease number, or a lease token (``<number>.<secret>``)
_LEASE = re.compile(r"^\d{1,18}(\.\S+)?$")


def target(text: str, is_record: bool) -> dict[str, str]:
    """The request field naming what to amend: a lease number or token, else a record
    id (``--record`` makes it a record id whatever it looks like)."""
    if not is_record and _LEASE.match(text):
        return {"lease": text}
    return {"record": text}


@click.command()
@click.argument("target_", metavar="LEASE|RECORD")
@click.argument("code")
@click.option("--reason", required=True, help="Why the disposition is amended (history).")
@click.option("--record", "is_record", is_flag=True,
              help="TARGET is a record id (its latest disposition), even if numeric.")
@click.option("--agent", help="Acting agent (an agent amends only its own dispositions).")
@click.option("--phone")
@click.option("--note")
@click.option("--revenue", type=float)
@click.option("--appointment-at", help="hold codes: the appointment (ISO, record's time).")
@click.option("--campaign", help="roll codes with roll_targets: the campaign to roll to.")
@click.option("--field", "extra", multiple=True, metavar="NAME=VALUE",
              help="A typed result-code field (numbers are sent as numbers).")
@click.option("--callback-at", help="ISO time, local to --callback-tz (or the record's).")
@click.option("--callback-tz")
@click.option("--scope", type=SCOPE_CHOICE)
@click.option("--owner")
@click.option("--team")
@click.option("--callback-reason", default="")
@click.option("--override-window", is_flag=True)
@click.pass_context
def amend(ctx: click.Context, target_: str, code: str, reason: str, is_record: bool,
          agent: str | None, phone: str | None, note: str | None, revenue: float | None,
          appointment_at: str | None, campaign: str | None, extra: tuple[str, ...],
          callback_at: str | None, callback_tz: str | None, scope: str | None,
          owner: str | None, team: str | None, callback_reason: str,
          override_window: bool) -> None:
    """Give the disposition of LEASE (or RECORD's latest) result CODE instead, as if CODE
    had been given; the history keeps both."""
    fields: dict[str, Any] = {**target(target_, is_record), "code": code, "reason": reason,
                              **optional_fields(agent=agent, phone=phone, note=note,
                                                revenue=revenue, campaign=campaign)}
    if appointment_at:
        fields["appointment"] = {"at": appointment_at}
    if extra:
        fields["fields"] = typed_fields(extra)
    if callback_at:
        fields["callback"] = callback_request(callback_at, callback_tz, scope, owner, team,
                                              callback_reason, override_window)
    ans = call(ctx, "amend", **fields)
    if not emit_json(ctx, ans):
        was, rec = ans["amended"], ans["record"]
        now = f"{rec['id']}: closed ({rec['reason']})" if rec["state"] == "closed" \
            else record_line(rec)
        console.print(f"lease {was['lease']}: {was['code']} -> {ans['code']}; {now}")


COMMANDS = (amend,)

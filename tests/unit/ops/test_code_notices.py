"""Per-code callback assignment (``allow_assign``) and the notice a ``notify`` code hands
to the notifications once its disposition is committed, on the in-memory store."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from icalendar import Calendar

from nextcall.notify.notices import notice_message
from nextcall.observer import Disposed
from tests.unit.ops.harness import Ops, numbers

ALL_DAY = "\n".join(f'{d} = ["00:00-24:00"]' for d in
                    ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
CAMPAIGNS = textwrap.dedent("""
    [resultsets.cm]
    [[resultsets.cm.codes]]
    code = "MINE"
    action = "callback"
    allow_assign = false
    [[resultsets.cm.codes]]
    code = "ANYONE"
    action = "callback"
    [[resultsets.cm.codes]]
    code = "MEET"
    action = "hold"
    description = "Afspraak"
    notify = ["sales@example.com", "boss@example.com"]
    [[resultsets.cm.codes.fields]]
    name = "manager"
    type = "text"
    [[resultsets.cm.codes]]
    code = "NO"
    action = "close"

    [campaigns.t]
    resultset = "cm"
    legal_window = "00:00-24:00"
    timezone = "UTC"
    [campaigns.t.window]
    {all_day}
""").replace("{all_day}", ALL_DAY)


async def _ops(tmp_path: Path) -> Ops:
    ops = await Ops(tmp_path, campaigns=CAMPAIGNS).start()
    await ops.ok("records.import", campaign="t", list="l", records=numbers(2))
    for agent in ("ann", "bo"):
        await ops.ok("agent.login", agent=agent, campaigns=["t"], teams=[])
    return ops


async def _lease(ops: Ops, agent: str = "ann") -> str:
    ans = await ops.ok("next", agent=agent, campaigns=["t"])
    return str(ans["leases"][0]["token"])


def _tomorrow(ops: Ops) -> str:
    return datetime.fromtimestamp(ops.clock.t + 86_400, UTC).strftime("%Y-%m-%dT%H:%M")


async def test_allow_assign_false_refuses_another_owner_and_changes_nothing(
        tmp_path: Path) -> None:
    ops = await _ops(tmp_path)
    token = await _lease(ops)
    at = _tomorrow(ops)
    err = await ops.refused("dispose", "assign_not_allowed", lease=token, code="MINE",
                            callback={"at": at, "owner": "bo"})
    assert err["field"] == "callback.owner" and "allow_assign" in err["message"]
    assert ops.store.history == []
    # naming oneself is no assignment; the same lease still disposes
    ans = await ops.ok("dispose", lease=token, code="MINE", callback={"at": at,
                                                                       "owner": "ann"})
    assert ans["owner"] == "ann"


async def test_allow_assign_by_default_gives_the_callback_to_another_agent(
        tmp_path: Path) -> None:
    ops = await _ops(tmp_path)
    ans = await ops.ok("dispose", lease=await _lease(ops), code="ANYONE",
                       callback={"at": _tomorrow(ops), "owner": "bo"})
    assert ans["owner"] == "bo"


async def test_notify_code_hands_its_notice_over_after_the_commit(tmp_path: Path) -> None:
    ops = await _ops(tmp_path)
    got: list[tuple[Disposed, int]] = []
    # the history row is written by the commit: seeing it proves "after", not "before"
    ops.svc.disposition_listeners.append(lambda n: got.append((n, len(ops.store.history))))
    at = _tomorrow(ops)
    await ops.ok("dispose", lease=await _lease(ops), code="MEET",
                 appointment={"at": at}, fields={"manager": "Pieter"}, note="koffie")
    await ops.ok("dispose", lease=await _lease(ops), code="NO")
    assert len(got) == 1
    notice, history_rows = got[0]
    assert history_rows == 1
    assert (notice.record, notice.campaign, notice.agent, notice.state) == \
        ("r0", "t", "ann", "held")
    assert notice.code.notify == ("sales@example.com", "boss@example.com")
    assert notice.appointment_at == ops.clock.t + 86_400  # the clock is on a whole minute
    assert notice.fields == {"manager": "Pieter"} and notice.note == "koffie"


async def test_notice_message_and_invite(tmp_path: Path) -> None:
    """The e-mail names the record, its fields and the appointment; the invite is a
    REQUEST with both addresses as attendees."""
    ops = await _ops(tmp_path)
    got: list[Disposed] = []
    ops.svc.disposition_listeners.append(got.append)
    await ops.ok("dispose", lease=await _lease(ops), code="MEET",
                 appointment={"at": _tomorrow(ops)}, fields={"manager": "Pieter"})
    msg = notice_message(got[0], "nextcall@example.com", ops.clock.t)
    assert msg["To"] == "sales@example.com, boss@example.com"
    assert msg["Subject"].startswith("Afspraak: r0 (t) on ")
    (ics,) = [p for p in msg.iter_attachments() if p.get_content_type() == "text/calendar"]
    cal: Any = Calendar.from_ical(ics.get_payload(decode=True))
    (ev,) = cal.walk("VEVENT")
    assert ev.decoded("dtstart").timestamp() == got[0].appointment_at
    assert sorted(str(a) for a in ev["attendee"]) == [
        "mailto:boss@example.com", "mailto:sales@example.com"]

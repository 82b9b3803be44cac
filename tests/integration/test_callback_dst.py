"""Callbacks across DST, over the socket, on real 2027 transition dates.

The documented rule (docs/protocol.md ``dispose.callback.at``, docs/result-codes.md):
a wall time without an offset is read in ``callback.timezone`` (default: the record's);
a time inside a DST gap does not exist and is refused with ``invalid_time``; a time inside
a fold means its first occurrence; an explicit offset picks either occurrence (any offset
is an absolute instant). The callback keeps the wall-clock intent: set before a change for
a time after it, it is due at that wall time in the new offset.

The campaign is open around the clock (legal window 00:00-24:00), so the 01:30 and 02:30
cases test the time rules, not the windows. Zones: America/New_York, Europe/Amsterdam,
Europe/Dublin (negative DST in the tz database), Australia/Lord_Howe (a 30-minute shift),
Australia/Adelaide (a half-hour zone with DST) and Asia/Kolkata (half-hour, no DST).
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_config
from tests.integration.shipped import Clock, Running, instant, ok, refused, shipped_settings

ALL_DAY = "\n".join(f'{d} = ["00:00-24:00"]'
                    for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
CAMPAIGN = textwrap.dedent("""
    [resultsets.dst]
    [[resultsets.dst.codes]]
    code = "CB"
    action = "callback"
    scope = "personal"
    contact_priority = 6
    [[resultsets.dst.codes]]
    code = "APPT"
    action = "hold"

    [campaigns.night]
    resultset = "dst"
    legal_window = "00:00-24:00"
    timezone = "UTC"
    [campaigns.night.window]
""") + ALL_DAY

#: (zone, requested text, expected local ISO with offset, expected UTC instant)
ACCEPTED = [
    # America/New_York: 2027-03-14 02:00 EST -> 03:00 EDT; 2027-11-07 02:00 EDT -> 01:00 EST
    ("America/New_York", "2027-03-14T01:59:00", "2027-03-14T01:59:00-05:00",
     "2027-03-14T06:59:00Z"),
    ("America/New_York", "2027-03-14T03:00:00", "2027-03-14T03:00:00-04:00",
     "2027-03-14T07:00:00Z"),
    ("America/New_York", "2027-11-07T01:30:00", "2027-11-07T01:30:00-04:00",
     "2027-11-07T05:30:00Z"),
    ("America/New_York", "2027-11-07T01:30:00-04:00", "2027-11-07T01:30:00-04:00",
     "2027-11-07T05:30:00Z"),
    ("America/New_York", "2027-11-07T01:30:00-05:00", "2027-11-07T01:30:00-05:00",
     "2027-11-07T06:30:00Z"),
    # Europe/Amsterdam: 2027-03-28 02:00 -> 03:00; 2027-10-31 03:00 -> 02:00
    ("Europe/Amsterdam", "2027-03-28T03:00:00", "2027-03-28T03:00:00+02:00",
     "2027-03-28T01:00:00Z"),
    ("Europe/Amsterdam", "2027-10-31T02:30:00", "2027-10-31T02:30:00+02:00",
     "2027-10-31T00:30:00Z"),
    ("Europe/Amsterdam", "2027-10-31T02:30:00+01:00", "2027-10-31T02:30:00+01:00",
     "2027-10-31T01:30:00Z"),
    # Europe/Dublin: 2027-03-28 01:00 GMT -> 02:00 IST; 2027-10-31 02:00 IST -> 01:00 GMT
    ("Europe/Dublin", "2027-03-28T02:00:00", "2027-03-28T02:00:00+01:00",
     "2027-03-28T01:00:00Z"),
    ("Europe/Dublin", "2027-10-31T01:30:00", "2027-10-31T01:30:00+01:00",
     "2027-10-31T00:30:00Z"),
    ("Europe/Dublin", "2027-10-31T01:30:00+00:00", "2027-10-31T01:30:00+00:00",
     "2027-10-31T01:30:00Z"),
    # Australia/Lord_Howe: 2027-04-04 02:00 (+11:00) -> 01:30 (+10:30);
    # 2027-10-03 02:00 (+10:30) -> 02:30 (+11:00)
    ("Australia/Lord_Howe", "2027-04-04T01:45:00", "2027-04-04T01:45:00+11:00",
     "2027-04-03T14:45:00Z"),
    ("Australia/Lord_Howe", "2027-04-04T01:45:00+10:30", "2027-04-04T01:45:00+10:30",
     "2027-04-03T15:15:00Z"),
    ("Australia/Lord_Howe", "2027-04-04T02:00:00", "2027-04-04T02:00:00+10:30",
     "2027-04-03T15:30:00Z"),
    ("Australia/Lord_Howe", "2027-10-03T02:30:00", "2027-10-03T02:30:00+11:00",
     "2027-10-02T15:30:00Z"),
    # Australia/Adelaide: 2027-04-04 03:00 (+10:30) -> 02:00 (+09:30);
    # 2027-10-03 02:00 (+09:30) -> 03:00 (+10:30)
    ("Australia/Adelaide", "2027-04-04T02:30:00", "2027-04-04T02:30:00+10:30",
     "2027-04-03T16:00:00Z"),
    ("Australia/Adelaide", "2027-04-04T02:30:00+09:30", "2027-04-04T02:30:00+09:30",
     "2027-04-03T17:00:00Z"),
    ("Australia/Adelaide", "2027-10-03T03:00:00", "2027-10-03T03:00:00+10:30",
     "2027-10-02T16:30:00Z"),
    # Asia/Kolkata: +05:30 all year, no gap on other zones' transition dates
    ("Asia/Kolkata", "2027-03-14T02:30:00", "2027-03-14T02:30:00+05:30",
     "2027-03-13T21:00:00Z"),
]

#: (zone, wall time inside the spring-forward gap)
GAPS = [
    ("America/New_York", "2027-03-14T02:30:00"),
    ("America/New_York", "2027-03-14T02:00:00"),
    ("Europe/Amsterdam", "2027-03-28T02:30:00"),
    ("Europe/Dublin", "2027-03-28T01:30:00"),
    ("Australia/Lord_Howe", "2027-10-03T02:15:00"),
    ("Australia/Adelaide", "2027-10-03T02:30:00"),
]

NUMBERS = {"America/New_York": "+12125550100", "Europe/Amsterdam": "+31201234567",
           "Europe/Dublin": "+35312345678", "Australia/Lord_Howe": "+61255501234",
           "Australia/Adelaide": "+61885501234", "Asia/Kolkata": "+912240001234"}


def z_instant(text: str) -> float:
    return instant(text.rstrip("Z"), "UTC")


@pytest.fixture
async def night(tmp_path: Path) -> AsyncIterator[Running]:
    """The always-open campaign ``night``, clock at 2027-01-04 12:00 UTC."""
    cfg = write_config(tmp_path, campaigns=CAMPAIGN)
    r = Running(shipped_settings(tmp_path, cfg), Clock(instant("2027-01-04T12:00", "UTC")))
    await r.start()
    await r.login("alice", ["night"])
    try:
        yield r
    finally:
        await r.stop()


async def leased(r: Running, tz: str, rid: str = "R") -> dict[str, Any]:
    """A record in ``tz`` imported and leased to alice."""
    await r.import_records("night", "l", [{"id": rid, "phones": [NUMBERS[tz]],
                                           "timezone": tz}])
    return await r.lease("alice", rid)


@pytest.mark.parametrize(("tz", "text", "local", "utc"), ACCEPTED,
                         ids=[f"{a[0]}-{a[1]}" for a in ACCEPTED])
async def test_callback_instant(night: Running, tz: str, text: str, local: str, utc: str
                                ) -> None:
    """The stored wall time, offset and UTC instant, in the answer and after a restart;
    the record is handed out at exactly that instant."""
    r = night
    ans = await r.dispose(await leased(r, tz), "CB", callback={"at": text})
    cb = ans["callback"]
    assert (cb["local"], cb["timezone"], ans["due_at"]) == (local, tz, utc)
    assert cb["at"] == z_instant(utc)
    await r.restart()
    rec = await r.get("R")
    assert (rec["callback"]["local"], rec["callback"]["at"], rec["due_at"]) == \
        (local, z_instant(utc), utc)
    r.clock.t = z_instant(utc) - 1
    assert await r.next("alice") == []
    r.clock.t = z_instant(utc)
    assert (await r.lease("alice", "R"))["reason"] == "personal_callback"


@pytest.mark.parametrize(("tz", "text"), GAPS, ids=[f"{g[0]}-{g[1]}" for g in GAPS])
async def test_gap_is_refused_with_invalid_time(night: Running, tz: str, text: str) -> None:
    """A wall time that does not exist is refused, never shifted; nothing changes, and the
    same lease takes a valid time."""
    r = night
    lease = await leased(r, tz)
    err = refused(await r.admin.call("dispose", lease=lease["token"], code="CB",
                                     callback={"at": text}), "invalid_time", "callback.at")
    assert text in err["message"] and tz in err["message"]
    # the same wall time given in another zone's terms is fine: callback.timezone
    refused(await r.admin.call("dispose", lease=lease["token"], code="CB",
                               callback={"at": text, "timezone": tz}),
            "invalid_time", "callback.at")
    assert (await r.get("R"))["history"] == []
    ans = await r.dispose(lease, "CB", callback={"at": text, "timezone": "UTC"})
    assert ans["due_at"] == text[:19] + "Z"


async def test_gap_in_appointment_and_schedule_and_reopen(night: Running) -> None:
    """The same rule for hold appointments, callback.schedule and record.reopen."""
    r = night
    lease = await leased(r, "America/New_York")
    refused(await r.admin.call("dispose", lease=lease["token"], code="APPT",
                               appointment={"at": "2027-03-14T02:30"}),
            "invalid_time", "appointment.at")
    held = await r.dispose(lease, "APPT", appointment={"at": "2027-11-07T01:30"})
    assert held["due_at"] == "2027-11-07T05:30:00Z", "a fold: the first occurrence"
    refused(await r.admin.call("record.reopen", record="R", at="2027-03-14T02:30"),
            "invalid_time", "at")
    refused(await r.admin.call("callback.schedule", record="R", at="2027-03-14T02:30",
                               owner="alice"), "invalid_time", "at")
    ans = await ok(r.admin, "callback.schedule", record="R", at="2027-11-07T01:30:00-05:00",
                   owner="alice")
    assert ans["record"]["due_at"] == "2027-11-07T06:30:00Z"
    assert ans["record"]["callback"]["local"] == "2027-11-07T01:30:00-05:00"


async def test_wall_clock_intent_across_the_change(night: Running) -> None:
    """Set in winter time for a day in summer time (and back): due at the promised wall
    time in the new offset, not 24 h multiples of the old one."""
    r = night
    r.clock.t = instant("2027-03-10T10:00", "America/New_York")  # EST, -05:00
    await r.login("bob", ["night"])
    ans = await r.dispose(await leased(r, "America/New_York"), "CB",
                          callback={"at": "2027-03-15T09:00", "owner": "bob"})
    assert ans["due_at"] == "2027-03-15T13:00:00Z"  # EDT, -04:00
    assert ans["callback"]["local"] == "2027-03-15T09:00:00-04:00"
    r.clock.t = instant("2027-10-29T10:00", "Europe/Amsterdam")  # CEST, +02:00
    ans = await r.dispose(await leased(r, "Europe/Amsterdam", "A"), "CB",
                          callback={"at": "2027-11-01T09:00"})
    assert ans["due_at"] == "2027-11-01T08:00:00Z"  # CET, +01:00
    r.clock.t = z_instant("2027-11-01T07:59:59Z")
    assert [lz["record"]["id"] for lz in await r.next("alice", count=2)] == []
    r.clock.t = z_instant("2027-11-01T08:00:00Z")
    assert [lz["record"]["id"] for lz in await r.next("alice", count=2)] == ["A"]


async def test_agent_timezone_differs_from_the_callee(night: Running) -> None:
    """An agent in Amsterdam books 07:30 her time for a New York donor on the night New
    York falls back: the instant is 06:30Z (01:30 EST, the second occurrence there)."""
    r = night
    ans = await r.dispose(await leased(r, "America/New_York"), "CB", callback={
        "at": "2027-11-07T07:30", "timezone": "Europe/Amsterdam"})
    assert ans["due_at"] == "2027-11-07T06:30:00Z"
    assert (ans["callback"]["local"], ans["callback"]["timezone"]) == \
        ("2027-11-07T07:30:00+01:00", "Europe/Amsterdam")
    refused(await r.admin.call("dispose", lease=(await leased(r, "Europe/Dublin", "D"))
                               ["token"], code="CB", callback={"at": "2027-11-07T07:30",
                                                               "timezone": "Mars/Base"}),
            "bad_request", "callback.timezone")


async def test_legal_window_is_judged_in_the_callee_zone(tmp_path: Path) -> None:
    """On the shipped Soft Recruit campaign (legal 08:00-21:00): 21:30 in Amsterdam is
    15:30 in New York and allowed; 08:30 Amsterdam is 02:30 New York and refused."""
    r = Running(shipped_settings(tmp_path), Clock(instant("2027-06-15T10:00",
                                                          "America/New_York")))
    await r.start()
    try:
        await r.import_records("softrecruit", "l", [{"id": "R", "phones": ["+12125550100"],
                                                     "timezone": "America/New_York"}])
        await r.login("alice", ["softrecruit"])
        lease = await r.lease("alice", "R")
        refused(await r.admin.call("dispose", lease=lease["token"], code="CB", callback={
            "at": "2027-06-16T08:30", "timezone": "Europe/Amsterdam",
            "override_window": True}), "outside_legal_window", "callback.at")
        ans = await r.dispose(lease, "CB", callback={"at": "2027-06-16T21:30",
                                                     "timezone": "Europe/Amsterdam"})
        assert ans["due_at"] == "2027-06-16T19:30:00Z"
    finally:
        await r.stop()

"""Every SPEC §2 action survives a restart: dispose, stop the daemon, start a new one on the
same database, and the record (and the lists, logins and queues around it) is the same and
behaves the same.

Each test runs the shipped configuration (``tests/integration/shipped.py``) with a clock
the test moves; the new daemon generation gets the same clock, so "after the restart" and
"when the date passes" are exact instants, not sleeps. ``record.get`` before and after
must be equal: state, reason, due time, attempts, owner, team, score, numbers and their
statuses, callback (owner, scope, timezone, local wall time) and the history.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.shipped import Clock, Running, instant, ok, refused, shipped_settings, utc_z
from tests.integration.test_seed_scenarios import (
    LOST,
    MON,
    NOTE,
    ORDER,
    SEEDS,
    TUE,
    WED,
    Seed,
    nobody_gets_anything,
    parse_z,
    staff,
)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Running]:
    r = Running(shipped_settings(tmp_path), Clock(instant(f"{TUE}T10:00", "UTC")))
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def setup(r: Running, seed: Seed, *records: dict[str, Any]) -> None:
    """Tuesday 10:00 in the seed's zone; ``records`` imported; the staff logged in."""
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "spring", list(records))
    await staff(r, seed)


async def same_after_restart(r: Running, *records: str) -> dict[str, dict[str, Any]]:
    """Restart; assert each record reads the same before and after; the views after."""
    before = {rid: await r.get(rid) for rid in records}
    stats_before = {c: await r.stats(c) for c in {v["campaign"] for v in before.values()}}
    await r.restart()
    after = {rid: await r.get(rid) for rid in records}
    assert after == before
    for campaign, st in stats_before.items():
        st_after = await r.stats(campaign)
        for key in ("due", "dormant", "callback_upcoming", "callback_due", "held",
                    "resolution", "no_number"):
            assert st_after[key] == st[key], (campaign, key)
        # a reopened reason may be kept as 0 in memory; the database has no zero rows
        assert {k: n for k, n in st_after["closed"].items() if n} == \
            {k: n for k, n in st["closed"].items() if n}, campaign
    return after


# ---------------------------------------------------------------------------- retry


async def test_retry(daemon: Running) -> None:
    """Due time, attempts and the next number to dial survive; exhaustion stays closed."""
    r, seed = daemon, SEEDS["softrecruit"]
    await setup(r, seed, seed.rec("R", 1, 2), seed.rec("X", 3))
    ans = await r.dispose(await r.lease("alice", "R"), "NA")
    due = r.clock.t + 7200
    assert ans["due_at"] == utc_z(due)
    # X reaches max attempts (8) with BUSY, closing as exhausted
    for attempt in range(1, 9):
        last = await r.dispose(await r.lease("bob", "X"), "BUSY")
        if attempt < 8:
            r.clock.t = parse_z(last["due_at"])  # 15 minutes on: 11:45 at the end
    assert (last["state"], last["reason"]) == ("closed", "exhausted")
    after = await same_after_restart(r, "R", "X")
    assert (after["R"]["state"], after["R"]["attempts"], after["R"]["due_at"]) == \
        ("ready", 1, utc_z(due))
    assert (await r.stats(seed.campaign))["closed"] == {"exhausted": 1}
    r.clock.t = due - 1
    await nobody_gets_anything(r, "alice", "bob")
    r.clock.t = due
    assert (await r.lease("bob", "R"))["phone"] == seed.phone(2), "the next number"


# ---------------------------------------------------------------------------- callback


async def test_callback_owner_scope_timezone(daemon: Running) -> None:
    """A personal-then-team callback for another agent, set in the agent's own timezone:
    owner, scope, team, timezone, local time and reason survive, and so does the grace
    period; a logged-out owner stays logged out."""
    r, seed = daemon, SEEDS["evergiving"]
    await setup(r, seed, seed.rec("R", 1), seed.rec("T", 2))
    await r.login("dave", [seed.campaign], [seed.team])
    ans = await r.dispose(await r.lease("alice", "R"), "CB", callback={
        "at": f"{WED}T16:00", "timezone": "Europe/Amsterdam", "owner": "dave",
        "reason": "after her shift"})
    due = instant(f"{WED}T16:00", "Europe/Amsterdam")
    assert ans["due_at"] == utc_z(due)
    # T: for the team's queue at the same instant (15:00 in London)
    team = await r.dispose(await r.lease("alice", "T"), "CBQ", callback={"at": f"{WED}T15:00"})
    await ok(r.admin, "agent.logout", agent="alice")
    after = await same_after_restart(r, "R", "T")
    cb = after["R"]["callback"]
    assert (cb["owner"], cb["scope"], cb["team"], cb["timezone"], cb["local"], cb["reason"]) \
        == ("dave", "personal_then_team", seed.team, "Europe/Amsterdam",
            f"{WED}T16:00:00+02:00", "after her shift")
    assert after["T"]["callback"]["scope"] == "team" == team["callback"]["scope"]
    r.clock.t = due
    await nobody_gets_anything(r, "carol")
    assert [lz["record"]["id"] for lz in await r.next("bob", count=2)] == ["T"]  # R: grace
    assert (await r.lease("dave", "R"))["reason"] == "personal_callback"
    # alice is still logged out after the restart
    assert (await r.admin.call("next", agent="alice"))["error"]["code"] == "not_logged_in"


async def test_callback_owner_logged_out_falls_to_the_team(daemon: Running) -> None:
    r, seed = daemon, SEEDS["evergiving"]
    await setup(r, seed, seed.rec("R", 1))
    await r.dispose(await r.lease("alice", "R"), "CB", callback={"at": f"{WED}T16:00"})
    await ok(r.admin, "agent.logout", agent="alice")
    await same_after_restart(r, "R")
    r.clock.set(f"{WED}T16:00", seed.tz)
    assert (await r.lease("bob", "R"))["reason"] == "team_callback"


async def test_callback_override_window(daemon: Running) -> None:
    r, seed = daemon, SEEDS["evergiving"]
    await setup(r, seed, seed.rec("R", 1))
    await r.dispose(await r.lease("alice", "R"), "CBME", callback={
        "at": f"{WED}T08:15", "override_window": True})
    after = await same_after_restart(r, "R")
    assert after["R"]["callback"]["override_window"] is True
    r.clock.set(f"{WED}T08:15", seed.tz)
    assert (await r.lease("alice", "R"))["reason"] == "personal_callback"


# ---------------------------------------------------------------------------- closes


@pytest.mark.parametrize(("seed_name", "code", "extra"), [
    ("softrecruit", "NI", {}), ("callmonkey", "ORDER", ORDER)], ids=["NI", "ORDER"])
async def test_close(daemon: Running, seed_name: str, code: str, extra: dict[str, Any]
                     ) -> None:
    r, seed = daemon, SEEDS[seed_name]
    await setup(r, seed, seed.rec("R", 1))
    await r.dispose(await r.lease("alice", "R"), code, **extra)
    after = await same_after_restart(r, "R")
    assert (after["R"]["state"], after["R"]["reason"]) == ("closed", "final")
    assert after["R"]["history"][0]["fields"] == extra.get("fields", {})
    assert (await r.stats(seed.campaign))["closed"] == {"final": 1}
    await nobody_gets_anything(r, "alice", "bob", "carol")
    reload = await r.import_records(seed.campaign, "spring", [], reload=True)
    assert reload["reopened"] == 0


async def test_close_until_reload(daemon: Running) -> None:
    r, seed = daemon, SEEDS["intelligentcontacts"]
    await setup(r, seed, seed.rec("R", 1))
    await r.dispose(await r.lease("alice", "R"), "SALE", revenue=50.0)
    after = await same_after_restart(r, "R")
    assert (after["R"]["state"], after["R"]["reason"]) == ("closed", "until_reload")
    assert after["R"]["history"][0]["revenue"] == 50.0
    await nobody_gets_anything(r, "alice")
    assert (await r.import_records(seed.campaign, "spring", [], reload=True))["reopened"] == 1
    assert (await r.lease("alice", "R"))["reason"] == "pool"


# ---------------------------------------------------------------------------- hold


async def test_hold_held_and_resolution(daemon: Running) -> None:
    """A held record stays held and passes to resolution at its date after a restart; one
    already in resolution is still listed there."""
    r, seed = daemon, SEEDS["softrecruit"]
    await setup(r, seed, seed.rec("H", 1), seed.rec("Q", 2))
    await r.dispose(await r.lease("alice", "H"), "APPT", appointment={"at": f"{MON}T10:00"})
    await r.dispose(await r.lease("alice", "Q"), "MGMT", appointment={"at": f"{WED}T09:00"},
                    **NOTE)
    r.clock.set(f"{WED}T12:00", seed.tz)
    assert [w["id"] for w in (await ok(r.admin, "resolution"))["records"]] == ["Q"]
    after = await same_after_restart(r, "H", "Q")
    assert (after["H"]["state"], after["Q"]["state"]) == ("held", "resolution")
    assert [w["id"] for w in (await ok(r.admin, "resolution"))["records"]] == ["Q"]
    r.clock.set(f"{MON}T10:00", seed.tz)
    await r.restart()
    assert [w["id"] for w in (await ok(r.admin, "resolution"))["records"]] == ["Q", "H"]
    await nobody_gets_anything(r, "alice", "bob")
    await ok(r.admin, "record.reopen", record="H")
    await r.restart()
    assert [w["id"] for w in (await ok(r.admin, "resolution"))["records"]] == ["Q"]
    assert (await r.lease("bob", "H"))["reason"] == "pool"


# ---------------------------------------------------------------------------- special


async def test_special(daemon: Running) -> None:
    r, seed = daemon, SEEDS["softrecruit"]
    await setup(r, seed, seed.rec("R", 1))
    await r.login("nurse", [seed.campaign], ["specialty"])
    await r.dispose(await r.lease("alice", "R"), "SPEC-MED", **NOTE)
    after = await same_after_restart(r, "R")
    assert (after["R"]["state"], after["R"]["reason"]) == ("closed", "special")
    agent = await r.agent_connection()
    schedule = {"record": "R", "at": f"{WED}T11:00"}
    refused(await agent.call("callback.schedule", agent="alice", **schedule), "forbidden",
            "agent")
    back = await ok(agent, "callback.schedule", agent="nurse", owner="nurse", **schedule)
    assert back["record"]["state"] == "callback"
    await same_after_restart(r, "R")
    r.clock.set(f"{WED}T11:00", seed.tz)
    assert (await r.lease("nurse", "R"))["reason"] == "personal_callback"


# ---------------------------------------------------------------------------- lists


async def test_dnc_list_still_enforced(daemon: Running) -> None:
    """After a restart the DNC list still keeps the number from every record: one imported
    before, one imported after the restart, and a pending callback on that number."""
    r, seed = daemon, SEEDS["intelligentcontacts"]
    x, y = seed.phone(1), seed.phone(2)
    await setup(r, seed, seed.rec("A", 1), seed.rec("B", 1, 2), seed.rec("CB", 1))
    await r.dispose(await r.lease("alice", "A"), "DNC")
    after = await same_after_restart(r, "A", "B", "CB")
    assert after["A"]["reason"] == "dnc"
    assert after["A"]["phones"] == [{"number": x, "status": "dnc"}]
    await r.import_records(seed.campaign, "later", [seed.rec("C", 1), seed.rec("D", 1)])
    assert (await r.get("C"))["phones"] == [{"number": x, "status": "dnc"}]
    leases = await r.next("bob", count=10)
    assert {lz["record"]["id"]: lz["phone"] for lz in leases} == {"B": y}
    assert (await r.stats(seed.campaign))["no_number"] == 3


async def test_remove_and_block_number(daemon: Running) -> None:
    """Number statuses survive; the record continues with its next number; the block list
    is still enforced on other records."""
    r, seed = daemon, SEEDS["tegsoft"]
    p1, p2, p3, p4 = (seed.phone(n) for n in (1, 2, 3, 4))
    await setup(r, seed, seed.rec("R", 1, 2, 3), seed.rec("S", 4, 2))
    removed = await r.dispose(await r.lease("alice", "R"), "WRONG_NUMBER")
    assert removed["phones"][0]["status"] == "removed"
    # R is due again at once (S, never called, comes first)
    both = {lz["record"]["id"]: lz for lz in await r.next("alice", count=2)}
    await ok(r.admin, "release", lease=both["S"]["token"])
    lease = both["R"]
    assert lease["phone"] == p2
    blocked = await r.dispose(lease, "BLOCK_NUMBER")
    assert blocked["listed"] == [{"number": p2, "list": "block"}]
    after = await same_after_restart(r, "R", "S")
    assert [p["status"] for p in after["R"]["phones"]] == ["removed", "blocked", "active"]
    leases = await r.next("bob", count=10)
    assert {lz["record"]["id"]: lz["phone"] for lz in leases} == {"R": p3, "S": p4}
    s_lease = next(lz for lz in leases if lz["record"]["id"] == "S")
    await r.dispose(s_lease, "WRONG_NUMBER")  # S's last usable number: p2 is blocked
    assert (await r.get("S"))["reason"] == "no_numbers"
    r_lease = next(lz for lz in leases if lz["record"]["id"] == "R")
    assert (await r.dispose(r_lease, "NOT_IN_SERVICE"))["reason"] == "no_numbers"
    after = await same_after_restart(r, "R", "S")
    assert (await r.stats(seed.campaign))["closed"] == {"no_numbers": 2}
    assert p1 not in {lz["phone"] for lz in await r.next("carol", count=5)}


# ---------------------------------------------------------------------------- roll


@pytest.mark.parametrize(("seed_name", "code", "target", "extra"), [
    ("intelligentcontacts", "RET", "ic-retention", {}),
    ("callmonkey", "VERLOREN_TM", "callmonkey-telemarketing", LOST)],
    ids=["RET", "VERLOREN_TM"])
async def test_roll(daemon: Running, seed_name: str, code: str, target: str,
                    extra: dict[str, Any]) -> None:
    r, seed = daemon, SEEDS[seed_name]
    await setup(r, seed, seed.rec("R", 1))
    await r.login("dave", [target], [])
    await r.dispose(await r.lease("alice", "R"), code, **extra)
    after = await same_after_restart(r, "R")
    assert (after["R"]["campaign"], after["R"]["state"], after["R"]["attempts"]) == \
        (target, "ready", 0)
    await nobody_gets_anything(r, "alice", "bob", "carol")
    got = await r.lease("dave", "R")
    assert got["record"]["campaign"] == target

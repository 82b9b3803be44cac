"""record.get, record.reopen, callback.schedule and resolution on the in-memory store."""

from __future__ import annotations

from nextcall.roles import AGENT, SUPERVISOR
from tests.unit.ops.harness import Ops, numbers


async def _closed(ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(1))
    (lease,) = (await ops.ok("next", agent="a", campaigns=["t"]))["leases"]
    await ops.ok("dispose", lease=lease["token"], code="SALE", revenue=3)


async def test_record_get_shows_history_and_leases(ops: Ops) -> None:
    await _closed(ops)
    rec = (await ops.ok("record.get", record="r0"))["record"]
    assert rec["state"] == "closed" and rec["score"] is None
    assert [h["code"] for h in rec["history"]] == ["SALE"]
    assert [x["end"] for x in rec["leases"]] == ["disposed"]
    err = await ops.refused("record.get", "not_found", record="nope")
    assert err["field"] == "record"


async def test_reopen_brings_a_closed_record_back_and_writes_history(ops: Ops) -> None:
    await _closed(ops)
    ans = await ops.ok("record.reopen", record="r0", note="mistake")
    assert ans["record"]["state"] == "ready"
    assert [h["code"] for h in ops.store.history] == ["SALE", "@reopen"]
    assert ops.store.history[-1]["note"] == "mistake"
    assert (await ops.ok("next", agent="a", campaigns=["t"]))["leases"]


async def test_reopen_of_a_leased_record_is_a_conflict(ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(1))
    await ops.ok("next", agent="a", campaigns=["t"])
    err = await ops.refused("record.reopen", "conflict", record="r0")
    assert err["field"] == "record"


async def test_schedule_needs_a_supervisor_and_sets_a_callback(ops: Ops) -> None:
    await _closed(ops)
    await ops.refused("callback.schedule", "forbidden", ops.peer(AGENT), record="r0",
                      at="2027-01-15T10:00:00")
    ans = await ops.ok("callback.schedule", ops.peer(SUPERVISOR), record="r0",
                       at="2027-01-15T10:00:00", timezone="UTC")
    assert ans["record"]["state"] == "callback"
    assert ops.store.history[-1]["code"] == "@callback"
    row = ops.store.records[ops.store.ids["r0"]]
    assert row["state"] == "callback" and row["callback"] is not None


async def test_resolution_lists_nothing_without_passed_appointments(ops: Ops) -> None:
    assert (await ops.ok("resolution"))["records"] == []
    await ops.refused("resolution", "unknown_campaign", campaign="nope")

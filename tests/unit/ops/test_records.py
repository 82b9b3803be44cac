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
    await ops.ok("records.import", campaign="t", list="l", records=numbers(1))
    # campaign t has no agent_schedule: an agent may not, even logged in to it
    await ops.ok("agent.login", agent="a", campaigns=["t"])
    err = await ops.refused("callback.schedule", "forbidden", ops.peer(AGENT), record="r0",
                            at="2027-01-15T10:00:00", agent="a")
    assert "agent_schedule" in err["message"] and err["field"] == "agent"
    ans = await ops.ok("callback.schedule", ops.peer(SUPERVISOR), record="r0",
                       at="2027-01-15T10:00:00", timezone="UTC")
    assert ans["record"]["state"] == "callback"
    assert ops.store.history[-1]["code"] == "@callback"
    row = ops.store.records[ops.store.ids["r0"]]
    assert row["state"] == "callback" and row["callback"] is not None


async def test_resolution_lists_nothing_without_passed_appointments(ops: Ops) -> None:
    assert (await ops.ok("resolution"))["records"] == []
    await ops.refused("resolution", "unknown_campaign", campaign="nope")


async def test_a_record_closed_while_its_row_is_read_is_reopened_from_its_closed_state(
        ops: Ops) -> None:
    """``callback.schedule`` reads the row while a disposition closes the record: the
    reopening must start from the closed state (attempts and all), not the row read
    before the disposition committed."""
    import asyncio
    from typing import Any

    from nextcall.storage.memory import MemoryStore

    class SlowReads(MemoryStore):
        async def get_record(self, record_id: str) -> dict[str, Any] | None:
            seen = await super().get_record(record_id)  # as of the read's start
            await asyncio.sleep(0.05)
            return seen

    ops.store = ops.svc.store = SlowReads()
    await ops.ok("records.import", campaign="t", list="l", records=numbers(1))
    (lease,) = (await ops.ok("next", agent="a", campaigns=["t"]))["leases"]
    schedule = asyncio.ensure_future(ops.call(
        "callback.schedule", ops.peer(), record="r0", at="2027-01-15T10:00:00",
        timezone="UTC"))
    await asyncio.sleep(0.01)  # the schedule's read is under way
    await ops.ok("dispose", lease=lease["token"], code="SALE", revenue=5)
    ans = await schedule
    assert ans["ok"] is True and ans["record"]["attempts"] == 1, ans
    assert [(h["code"], h["attempts"]) for h in ops.store.history] == \
        [("SALE", 1), ("@callback", 1)]

"""``records``: a campaign's records found by state, last result, reason, list, owner and
the time of the last disposition, paged with a cursor (on the memory store)."""

from __future__ import annotations

from typing import Any

from nextcall.roles import AGENT, SUPERVISOR
from tests.unit.ops.harness import Ops, numbers


async def _dispose(ops: Ops, code: str, agent: str = "ann", **fields: Any) -> str:
    (lease,) = (await ops.ok("next", agent=agent, campaigns=["t"]))["leases"]
    await ops.ok("dispose", lease=lease["token"], code=code, **fields)
    return str(lease["record"]["id"])


async def _ids(ops: Ops, **filters: Any) -> list[str]:
    ans = await ops.ok("records", ops.peer(SUPERVISOR), campaign="t", **filters)
    return [r["id"] for r in ans["records"]]


async def test_records_are_found_by_their_last_result_code(ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(5))
    sold = await _dispose(ops, "SALE", revenue=10)
    ni = await _dispose(ops, "NI", note="no", agent="bob")
    na = await _dispose(ops, "NA")
    assert await _ids(ops, code="SALE") == [sold]
    assert await _ids(ops, code="NI") == [ni]
    assert await _ids(ops, code="NA") == [na]
    ans = await ops.ok("records", campaign="t", code="NI")
    (row,) = ans["records"]
    assert row["state"] == "closed" and row["reason"] == "final"
    assert row["last_agent"] == "bob" and row["last_at"] == ans["now"]
    assert await _ids(ops, last_agent="bob") == [ni]
    assert await _ids(ops, state="closed") == sorted([sold, ni])
    assert await _ids(ops, reason="final", code="SALE") == [sold]


async def test_a_reopen_keeps_the_last_result_of_the_last_disposition(ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(1))
    rid = await _dispose(ops, "SALE", revenue=1)
    await ops.ok("record.reopen", record=rid)
    (row,) = (await ops.ok("records", campaign="t", code="SALE"))["records"]
    assert row["state"] == "ready" and row["last_code"] == "SALE"


async def test_derived_states_leased_and_ready_do_not_overlap(ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(3))
    (lease,) = (await ops.ok("next", agent="ann", campaigns=["t"]))["leases"]
    leased = lease["record"]["id"]
    assert await _ids(ops, state="leased") == [leased]
    assert leased not in await _ids(ops, state="ready")
    assert len(await _ids(ops, state="ready")) == 2
    (row,) = [r for r in (await ops.ok("records", campaign="t"))["records"]
              if r["id"] == leased]
    assert row["state"] == "leased"


async def test_filters_by_list_owner_and_time_of_the_last_disposition(ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="a", records=numbers(2))
    await ops.ok("records.import", campaign="t", list="b", records=numbers(2, prefix="s"))
    assert await _ids(ops, list="b") == ["s0", "s1"]
    await ops.ok("agent.login", agent="ann", campaigns=["t"])
    first = await _dispose(ops, "CB", callback={"at": "2027-01-15T10:00:00",
                                                "scope": "personal"})
    assert await _ids(ops, owner="ann") == [first]
    ops.clock.t += 3600
    later = await _dispose(ops, "NA")
    t0 = "2027-01-15T08:00:00Z"  # the clock starts at 2027-01-15T08:00:00Z
    assert await _ids(ops, since=t0, until="2027-01-15T08:30:00Z") == [first]
    assert await _ids(ops, since="2027-01-15T08:30:00Z") == [later]
    err = await ops.refused("records", "bad_request", campaign="t",
                            since="2027-01-15T09:00:00Z", until=t0)
    assert err["field"] == "until"


async def test_pages_follow_the_cursor_to_the_end_and_belong_to_their_filters(
        ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(7))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        more = {"cursor": cursor} if cursor else {}
        ans = await ops.ok("records", campaign="t", limit=3, **more)
        seen += [r["id"] for r in ans["records"]]
        pages += 1
        cursor = ans["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"r{i}" for i in range(7)] and pages == 3
    first = await ops.ok("records", campaign="t", limit=3)
    err = await ops.refused("records", "bad_request", campaign="t", state="ready",
                            cursor=first["next_cursor"])
    assert err["field"] == "cursor"
    err = await ops.refused("records", "bad_request", campaign="t", cursor="garbage!")
    assert err["field"] == "cursor"
    await ops.refused("records", "bad_request", campaign="t", limit=1001)


async def test_agents_may_not_list_and_campaigns_must_exist(ops: Ops) -> None:
    err = await ops.refused("records", "forbidden", ops.peer(AGENT), campaign="t")
    assert "supervisor" in err["message"]
    err = await ops.refused("records", "unknown_campaign", campaign="nope")
    assert err["field"] == "campaign"
    await ops.refused("records", "bad_request", campaign="t", state="gone")
    err = await ops.refused("records", "bad_request", campaign="t", category="nothing")
    assert err["field"] == "category"

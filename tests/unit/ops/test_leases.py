"""The call cycle on the in-memory store: next, dispose, release, extend."""

from __future__ import annotations

import pytest

from nextcall.roles import AGENT
from tests.unit.ops.harness import Ops, numbers


async def _leased(ops: Ops, n: int = 1, agent: str = "ann") -> list[dict[str, object]]:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(n))
    ans = await ops.ok("next", agent=agent, campaigns=["t"], count=n)
    return list(ans["leases"])


async def test_next_commits_the_lease_before_answering(ops: Ops) -> None:
    (lease,) = await _leased(ops)
    lid = int(str(lease["token"]).split(".")[0])
    stored = ops.store.leases[lid]
    assert stored["agent"] == "ann" and stored["end"] is None
    assert lease["record"]["id"] == "r0"


async def test_next_never_hands_one_record_to_two_agents(ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(3))
    got = [await ops.ok("next", agent=a, campaigns=["t"]) for a in ("a", "b", "c", "d")]
    ids = [x["leases"][0]["record"]["id"] for x in got if x["leases"]]
    assert sorted(ids) == ["r0", "r1", "r2"]
    assert got[-1]["leases"] == []


async def test_next_refuses_counts_and_waits_over_the_limits(ops: Ops) -> None:
    err = await ops.refused("next", "bad_request", agent="a", count=10_000)
    assert err["field"] == "count"
    err = await ops.refused("next", "bad_request", agent="a", wait=10_000)
    assert err["field"] == "wait"


async def test_dispose_records_history_ends_lease_and_saves_state(ops: Ops) -> None:
    (lease,) = await _leased(ops)
    ans = await ops.ok("dispose", lease=lease["token"], code="NA")
    assert ans["state"] == "ready" and ans["attempts"] == 1
    (h,) = [h for h in ops.store.history if h["code"] == "NA"]
    assert h["agent"] == "ann" and h["phone"] == "+31612340000"
    lid = int(str(lease["token"]).split(".")[0])
    assert ops.store.leases[lid]["end"] == "disposed"
    rec = ops.store.records[h["rid"]]
    assert rec["attempts"] == 1 and rec["due_at"] == pytest.approx(ops.clock.t + 60)


async def test_a_retried_disposition_gets_the_original_answer(ops: Ops) -> None:
    (lease,) = await _leased(ops)
    first = await ops.ok("dispose", lease=lease["token"], code="SALE", revenue=5)
    again = await ops.ok("dispose", lease=lease["token"], code="SALE", revenue=5)
    assert again.pop("duplicate") is True and again == first
    assert len([h for h in ops.store.history if h["code"] == "SALE"]) == 1
    await ops.refused("dispose", "lease_ended", lease=lease["token"], code="NA")


async def test_a_retry_after_a_restart_is_answered_from_the_stored_lease(ops: Ops) -> None:
    (lease,) = await _leased(ops)
    first = await ops.ok("dispose", lease=lease["token"], code="NA")
    await ops.restart()
    again = await ops.ok("dispose", lease=lease["token"], code="NA")
    assert again.pop("duplicate") is True and again == first


async def test_dispose_by_another_user_is_refused(ops: Ops) -> None:
    (lease,) = await _leased(ops)
    err = await ops.refused("dispose", "not_lease_holder", ops.peer(AGENT, uid=4242),
                            lease=lease["token"], code="NA")
    assert err["field"] == "lease"


async def test_release_gives_the_record_back_unchanged(ops: Ops) -> None:
    (lease,) = await _leased(ops)
    ans = await ops.ok("release", lease=lease["token"])
    assert ans == {"ok": True, "record": "r0", "state": "ready"}
    again = await ops.ok("next", agent="bob", campaigns=["t"])
    assert again["leases"][0]["record"]["id"] == "r0"
    await ops.refused("release", "lease_ended", lease=lease["token"])


async def test_extend_moves_the_stored_expiry(ops: Ops) -> None:
    (lease,) = await _leased(ops)
    ops.clock.t += 30
    ans = await ops.ok("extend", lease=lease["token"], seconds=120)
    assert ans["expires_in_s"] == 120
    lid = int(str(lease["token"]).split(".")[0])
    assert ops.store.leases[lid]["expires_at"] == pytest.approx(ops.clock.t + 120)


async def test_an_expired_lease_is_ended_and_the_record_free(ops: Ops) -> None:
    (lease,) = await _leased(ops)
    ops.clock.t += 61
    await ops.refused("dispose", "lease_expired", lease=lease["token"], code="NA")
    lid = int(str(lease["token"]).split(".")[0])
    await ops.ok("ping")  # lets the background commit of the expiry run
    assert ops.store.leases[lid]["end"] == "expired"
    again = await ops.ok("next", agent="bob", campaigns=["t"])
    assert again["leases"][0]["record"]["id"] == "r0"


async def test_a_failed_commit_answers_unavailable_and_breaks_the_store(ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(2))
    ops.store.fail_next = OSError("disk gone")
    err = await ops.refused("next", "unavailable", agent="a", campaigns=["t"])
    assert "disk gone" in err["message"]
    await ops.refused("next", "unavailable", agent="a", campaigns=["t"])
    assert ops.store.leases == {}


async def test_a_long_poll_is_answered_when_a_record_is_released(ops: Ops) -> None:
    import asyncio
    (lease,) = await _leased(ops)
    waiting = asyncio.ensure_future(ops.call("next", agent="bob", campaigns=["t"], wait=5))
    await asyncio.sleep(0)
    assert ops.svc.waiting["t"] == 1
    await ops.ok("release", lease=lease["token"])
    ans = await asyncio.wait_for(waiting, 5)
    assert ans["leases"][0]["record"]["id"] == "r0"

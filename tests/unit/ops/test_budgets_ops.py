"""Attempt budgets and callback windows through the op handlers: long polls wake at the
instant a budget allows, ``stats`` counts held-back records, a restart keeps the counts,
and the callback queue shows windows."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

from tests.unit.ops.harness import Ops, numbers

ALWAYS = "\n".join(f'{d} = ["00:00-24:00"]' for d in ("mon", "tue", "wed", "thu", "fri",
                                                          "sat", "sun"))
CAMPAIGN = textwrap.dedent("""
    [campaigns.t]
    resultset = "std"
    max_attempts = 30
    grace_s = 60
    legal_window = "00:00-24:00"
    timezone = "UTC"
    [campaigns.t.budgets]
    number_gap_s = 100
    record_per_24h = 3
    [campaigns.t.window]
""") + ALWAYS


async def _ops(tmp: Path) -> Ops:
    return await Ops(tmp, campaigns=CAMPAIGN).start()


async def test_a_long_poll_wakes_at_the_instant_the_budget_allows(tmp_path: Path) -> None:
    ops = await _ops(tmp_path)
    try:
        await ops.ok("records.import", campaign="t", list="l", records=numbers(1))
        t0 = ops.clock.t
        lease = (await ops.ok("next", agent="x", campaigns=["t"]))["leases"][0]
        await ops.ok("release", lease=lease["token"])
        assert (await ops.ok("next", agent="x", campaigns=["t"]))["leases"] == []
        st = (await ops.ok("stats", campaign="t"))["campaigns"]["t"]
        assert (st["budget"], st["due"]) == (1, 0)
        poll = asyncio.create_task(ops.call("next", agent="x", campaigns=["t"], wait=300))
        for _ in range(5):
            await asyncio.sleep(0)
        polls = ops.svc.polls
        assert len(polls.waiters) == 1
        # the timer is armed for the instant the number's gap ends, not the deadline
        assert polls._timer_at == t0 + 100
        ops.clock.t = t0 + 99.5
        polls.serve()
        assert not poll.done() and len(polls.waiters) == 1
        ops.clock.t = t0 + 100
        polls.serve()
        got = await asyncio.wait_for(poll, 5)
        assert [lz["record"]["id"] for lz in got["leases"]] == ["r0"]
    finally:
        ops.svc.stop_waiting()


async def test_a_restart_keeps_the_counts(tmp_path: Path) -> None:
    """Three hand-outs in 24 hours: after a restart the record waits for the first to
    leave the window, because the counts are rebuilt from the leases."""
    ops = await _ops(tmp_path)
    try:
        await ops.ok("records.import", campaign="t", list="l", records=numbers(1))
        t0 = ops.clock.t
        for k in range(3):
            ops.clock.t = t0 + 200 * k
            lease = (await ops.ok("next", agent="x", campaigns=["t"]))["leases"][0]
            await ops.ok("dispose", lease=lease["token"], code="NA0")
        await ops.restart()
        ops.clock.t = t0 + 3600
        assert (await ops.ok("next", agent="x", campaigns=["t"]))["leases"] == []
        assert ops.svc.engine.held_by_budget(1) == (t0 + 86_400, "record_per_24h")
        ops.clock.t = t0 + 86_400
        assert len((await ops.ok("next", agent="x", campaigns=["t"]))["leases"]) == 1
    finally:
        ops.svc.stop_waiting()


async def test_callback_window_over_dispose_and_in_the_queue(tmp_path: Path) -> None:
    ops = await _ops(tmp_path)
    try:
        await ops.ok("records.import", campaign="t", list="l", records=numbers(1))
        ops.clock.t = 1_800_000_000.0  # 2027-01-15T08:00:00Z
        lease = (await ops.ok("next", agent="x", campaigns=["t"]))["leases"][0]
        ans = await ops.ok("dispose", lease=lease["token"], code="CB", callback={
            "at": "2027-01-15T14:00", "until": "2027-01-15T16:00"})
        cb = ans["callback"]
        assert (cb["local"], cb["until_local"]) == ("2027-01-15T14:00:00+00:00",
                                                    "2027-01-15T16:00:00+00:00")
        ops.clock.t = 1_800_000_000.0 + 6 * 3600 + 3600  # 15:00, halfway
        q = await ops.ok("callbacks", campaign="t")
        e = q["callbacks"][0]
        assert (e["until"], e["state"], e["contact_priority"], e["priority_now"]) == \
            ("2027-01-15T16:00:00Z", "due", 4, 6)
        ops.clock.t = 1_800_000_000.0 + 8 * 3600 + 61  # 16:01:01: grace (60 s) over
        e = (await ops.ok("callbacks", campaign="t"))["callbacks"][0]
        assert (e["state"], e["late_s"], e["priority_now"]) == ("overdue", 61.0, 9)
        bad = await ops.refused("callback.schedule", "bad_request", record="r0",
                                at="2027-01-16T10:00", until="2027-01-16T09:00")
        assert bad["field"] == "until"
    finally:
        ops.svc.stop_waiting()


async def test_explain_names_the_budget_and_counts_it(tmp_path: Path) -> None:
    """A record a budget parked: explain names the budget and the instant it allows the
    next call; the campaign counts it under ``budget``, as the blocked gauge does, and
    names it as the next record to become eligible."""
    from nextcall.roles import SUPERVISOR
    ops = await _ops(tmp_path)
    try:
        await ops.ok("records.import", campaign="t", list="l", records=numbers(1))
        t0 = ops.clock.t
        lease = (await ops.ok("next", agent="x", campaigns=["t"]))["leases"][0]
        await ops.ok("release", lease=lease["token"])
        # before any next reaches it again, explaining the record already names the gap
        facts = (await ops.ok("explain", ops.peer(SUPERVISOR), record="r0"))["explain"]
        assert [b["reason"] for b in facts["blockers"]] == ["budget"]
        assert "number_gap" in facts["blockers"][0]["detail"]
        assert (await ops.ok("next", agent="x", campaigns=["t"]))["leases"] == []
        facts = (await ops.ok("explain", ops.peer(SUPERVISOR), record="r0"))["explain"]
        assert [b["reason"] for b in facts["blockers"]] == ["budget"]
        assert facts["eligible_at"] == facts["blockers"][0]["until"]
        camp = (await ops.ok("explain", ops.peer(SUPERVISOR), campaign="t"))["explain"]
        assert camp["blocked"]["budget"] == 1 and camp["gauges"]["budget"] == 1
        assert camp["available"]["pool"] == 0
        assert (camp["next"]["record"], camp["next"]["reason"]) == ("r0", "budget_allows")
        assert camp["next"]["at"] == facts["eligible_at"]
        assert ops.clock.t < t0 + 100
    finally:
        ops.svc.stop_waiting()

"""explain: every blocking reason produced by a scenario, the next eligible instant and
for whom, and a campaign's counts agreeing with the metrics' gauges and with stats."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from nextcall.metrics.collect import EngineCollector, EngineSampler
from nextcall.roles import AGENT, SUPERVISOR
from tests.unit.ops.harness import Ops, numbers

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAY = "\n".join(f'{d} = ["00:00-24:00"]' for d in _DAYS)
OFFICE = "\n".join(f'{d} = ["09:00-17:00"]' for d in _DAYS[:5])
CAMPAIGNS = textwrap.dedent("""
    [resultsets.x]
    [[resultsets.x.codes]]
    code = "NA"
    action = "retry"
    delay_s = 60
    [[resultsets.x.codes]]
    code = "CB"
    action = "callback"
    scope = "personal_then_team"
    [[resultsets.x.codes]]
    code = "MEET"
    action = "hold"
    [[resultsets.x.codes]]
    code = "DNCF"
    action = "close"
    effects = ["dnc"]
    [[resultsets.x.codes]]
    code = "SALE"
    action = "close"

    [campaigns.t]
    resultset = "x"
    legal_window = "00:00-24:00"
    grace_s = 600
    max_attempts = 5
    timezone = "UTC"
    [campaigns.t.window]
    {all_day}

    [campaigns.w]
    resultset = "x"
    legal_window = "08:00-20:00"
    timezone = "UTC"
    [campaigns.w.window]
    {office}

    [campaigns.d]
    resultset = "x"
    enabled = false
    legal_window = "00:00-24:00"
    timezone = "UTC"
    [campaigns.d.window]
    {all_day}
""").replace("{all_day}", ALL_DAY).replace("{office}", OFFICE)

# the harness clock starts at 2027-01-15T08:00:00Z, a Friday


@pytest.fixture
async def x(tmp_path: Path) -> AsyncIterator[Ops]:
    o = await Ops(tmp_path, campaigns=CAMPAIGNS).start()
    yield o
    o.svc.stop_waiting()


async def _explain(ops: Ops, **fields: Any) -> dict[str, Any]:
    return dict((await ops.ok("explain", **fields))["explain"])


def _reasons(ans: dict[str, Any]) -> list[str]:
    return [b["reason"] for b in ans["blockers"]]


async def _lease(ops: Ops, agent: str, campaign: str = "t") -> dict[str, Any]:
    (lease,) = (await ops.ok("next", agent=agent, campaigns=[campaign]))["leases"]
    return dict(lease)


async def test_a_due_record_is_eligible_now_for_the_campaign(x: Ops) -> None:
    await x.ok("records.import", campaign="t", list="l", records=numbers(1))
    ans = await _explain(x, record="r0")
    assert ans["blockers"] == [] and ans["eligible"] is True
    assert ans["eligible_at"] == ans["now"] == "2027-01-15T08:00:00Z"
    assert ans["eligible_for"] == ["campaign:t"]
    assert ans["numbers"] == [{"number": "+31612340000", "status": "active", "list": None,
                               "dialable": True, "next": True}]
    assert ans["attempts"] == {"made": 0, "max": 5}
    assert ans["window"]["open"] and ans["legal_window"]["hours"] == "00:00-24:00"


async def test_leased_names_the_holder_and_lifts_at_expiry(x: Ops) -> None:
    await x.ok("records.import", campaign="t", list="l", records=numbers(1))
    lease = await _lease(x, "ann")
    ans = await _explain(x, record="r0")
    (b,) = ans["blockers"]
    assert b["reason"] == "leased" and "ann" in b["detail"]
    assert b["until"] == ans["lease"]["expires_at"] == lease["expires_at"]
    assert ans["lease"]["agent"] == "ann" and ans["eligible_at"] == lease["expires_at"]


async def test_dormant_until_its_retry_is_due(x: Ops) -> None:
    await x.ok("records.import", campaign="t", list="l", records=numbers(1))
    lease = await _lease(x, "ann")
    await x.ok("dispose", lease=lease["token"], code="NA")
    ans = await _explain(x, record="r0")
    assert _reasons(ans) == ["dormant"]
    assert ans["eligible_at"] == ans["due_at"] == "2027-01-15T08:01:00Z"
    assert ans["attempts"]["made"] == 1
    assert (await x.ok("next", agent="ann", campaigns=["t"]))["leases"] == []
    x.clock.t += 60
    assert (await _explain(x, record="r0"))["eligible"] is True


async def test_callback_for_someone_else_until_the_grace_period_ends(x: Ops) -> None:
    await x.ok("records.import", campaign="t", list="l", records=numbers(1, team="red"))
    await x.ok("agent.login", agent="ann", campaigns=["t"], teams=["red"])
    await x.ok("agent.login", agent="bob", campaigns=["t"], teams=["red"])
    lease = await _lease(x, "ann")
    await x.ok("dispose", lease=lease["token"], code="CB",
               callback={"at": "2027-01-15T09:00:00"})
    x.clock.t += 3600  # due now; ann is logged in, so bob waits for the grace period
    bob = await _explain(x, record="r0", agent="bob")
    assert _reasons(bob) == ["callback_other"]
    assert bob["eligible_at"] == bob["callback"]["grace_ends"] == "2027-01-15T09:10:00Z"
    assert bob["eligible_for"] == ["agent:ann", "team:red"]
    assert (await x.ok("next", agent="bob"))["leases"] == []
    ann = await _explain(x, record="r0", agent="ann")
    assert ann["eligible"] is True and ann["callback"]["scope"] == "personal_then_team"
    camp = await _explain(x, campaign="t", agent="bob")
    assert camp["blocked"]["callback_other"] == 1 and camp["available"]["callbacks"] == 0
    assert camp["next"] == {"at": "2027-01-15T09:10:00Z", "record": "r0",
                           "reason": "callback_other"}
    x.clock.t += 600
    assert (await _explain(x, record="r0", agent="bob"))["eligible"] is True
    assert len((await x.ok("next", agent="bob"))["leases"]) == 1


async def test_held_for_an_appointment_never_lifts_by_itself(x: Ops) -> None:
    await x.ok("records.import", campaign="t", list="l", records=numbers(1))
    lease = await _lease(x, "ann")
    await x.ok("dispose", lease=lease["token"], code="MEET",
               appointment={"at": "2027-01-16T10:00:00"})
    ans = await _explain(x, record="r0")
    assert _reasons(ans) == ["held"] and ans["eligible_at"] is None
    assert (await _explain(x, campaign="t"))["blocked"]["held"] == 1


async def test_no_number_when_its_one_number_is_on_the_dnc_list(x: Ops) -> None:
    recs = [{"id": i, "phones": ["+31612340000"], "timezone": "UTC"} for i in ("a", "b")]
    await x.ok("records.import", campaign="t", list="l", records=recs)
    lease = await _lease(x, "ann")
    await x.ok("dispose", lease=lease["token"], code="DNCF")
    other = "b" if lease["record"]["id"] == "a" else "a"
    ans = await _explain(x, record=other)
    assert _reasons(ans) == ["no_number"] and ans["eligible_at"] is None
    assert ans["numbers"][0]["list"] == "dnc" and ans["numbers"][0]["dialable"] is False
    await x.ok("next", agent="ann", campaigns=["t"])  # parks it, as selection does
    assert (await _explain(x, campaign="t"))["blocked"]["no_number"] == 1


async def test_outside_the_calling_window_and_outside_the_legal_window(x: Ops) -> None:
    recs = [{"id": "utc", "phones": ["+31612340001"], "timezone": "UTC"},
            {"id": "akl", "phones": ["+31612340002"], "timezone": "Pacific/Auckland"}]
    await x.ok("records.import", campaign="w", list="l", records=recs)
    utc = await _explain(x, record="utc")  # 08:00: legal (08-20) open, window (09-17) not
    assert _reasons(utc) == ["outside_window"] and utc["legal_window"]["open"] is True
    assert utc["eligible_at"] == utc["window"]["next_open"] == "2027-01-15T09:00:00Z"
    akl = await _explain(x, record="akl")  # 21:00 local on Friday
    assert _reasons(akl) == ["legal_window"] and akl["local_time"].startswith("2027-01-15T21")
    # Saturday and Sunday are closed: Monday 09:00 in Auckland
    assert akl["eligible_at"] == "2027-01-17T20:00:00Z"
    camp = await _explain(x, campaign="w")
    assert camp["blocked"]["outside_window"] == 1 and camp["blocked"]["legal_window"] == 1
    assert camp["gauges"]["window"] == 2 and camp["available"]["pool"] == 0
    assert camp["next"] == {"at": "2027-01-15T09:00:00Z", "record": "utc",
                           "reason": "window_opens"}


async def test_a_disabled_campaign_hands_out_nothing(x: Ops) -> None:
    await x.ok("records.import", campaign="d", list="l", records=numbers(2))
    ans = await _explain(x, record="r0")
    assert _reasons(ans) == ["disabled"] and ans["eligible_at"] is None
    camp = await _explain(x, campaign="d")
    assert camp["blocked"]["disabled"] == 2 and camp["gauges"]["disabled"] == 2


async def test_a_closed_record_says_so(x: Ops) -> None:
    await x.ok("records.import", campaign="t", list="l", records=numbers(1))
    lease = await _lease(x, "ann")
    await x.ok("dispose", lease=lease["token"], code="SALE")
    ans = await _explain(x, record="r0")
    assert ans["state"] == "closed" and _reasons(ans) == ["closed"]


async def test_campaign_counts_agree_with_the_gauges_and_stats(x: Ops) -> None:
    await x.ok("records.import", campaign="t", list="l", records=numbers(8, team="red"))
    await x.ok("agent.login", agent="ann", campaigns=["t"], teams=["red"])
    leases = (await x.ok("next", agent="ann", campaigns=["t"], count=4))["leases"]
    await x.ok("dispose", lease=leases[0]["token"], code="NA")
    await x.ok("dispose", lease=leases[1]["token"], code="MEET",
               appointment={"at": "2027-01-16T10:00:00"})
    await x.ok("dispose", lease=leases[2]["token"], code="CB",
               callback={"at": "2027-01-15T12:00:00"})
    camp = await _explain(x, campaign="t")
    stats = (await x.ok("stats", campaign="t"))["campaigns"]["t"]
    open_ = sum(stats[s] for s in ("dormant", "due", "callback_upcoming", "callback_due",
                                   "leased", "no_number", "held", "resolution"))
    assert camp["open"] == open_ == 8
    assert sum(camp["blocked"].values()) + sum(camp["available"].values()) == open_
    assert camp["available"]["pool"] == stats["due"] == 4
    assert camp["blocked"]["leased"] == stats["leased"] == 1
    assert camp["blocked"]["dormant"] == stats["dormant"] + stats["callback_upcoming"] == 2
    sampler, collector = EngineSampler(600.0), EngineCollector()
    collector.snapshot = sampler.sample(x.svc.engine, x.clock.t, {})
    gauges = {s.labels["reason"]: int(s.value) for m in collector.collect()
              if m.name == "nextcall_records_blocked" for s in m.samples
              if s.labels["campaign"] == "t"}
    assert camp["gauges"] == gauges
    assert camp["next"]["reason"] == "falls_due" and camp["next"]["at"] == \
        "2027-01-15T08:01:00Z"


async def test_who_may_ask(tmp_path: Path) -> None:
    x = await Ops(tmp_path, campaigns=CAMPAIGNS, auth='record_get = "held"').start()
    try:
        await x.ok("records.import", campaign="t", list="l", records=numbers(2))
        err = await x.refused("explain", "forbidden", x.peer(AGENT), campaign="t")
        assert "supervisor" in err["message"]
        await x.ok("explain", x.peer(SUPERVISOR), campaign="t")
        await x.refused("explain", "forbidden", x.peer(AGENT, uid=4242), record="r0")
        ans = await x.ok("next", x.peer(AGENT, uid=4242), agent="ann", campaigns=["t"])
        rid = ans["leases"][0]["record"]["id"]
        mine = (await x.ok("explain", x.peer(AGENT, uid=4242), record=rid))["explain"]
        assert mine["lease"]["agent"] == "ann"
        await x.refused("explain", "bad_request")
        await x.refused("explain", "bad_request", record="r0", campaign="t")
        await x.refused("explain", "not_found", record="nope")
        await x.refused("explain", "unknown_campaign", campaign="nope")
    finally:
        x.svc.stop_waiting()


async def test_a_record_never_scheduled_is_due_at_once(ops: Ops) -> None:
    """An imported record's due time is 0 (due at once): explain shows none, as
    ``record.get`` does, not the epoch."""
    await ops.ok("records.import", campaign="t", list="l", records=numbers(1))
    got = (await ops.ok("explain", ops.peer(SUPERVISOR), record="r0"))["explain"]
    assert (got["due_at"], got["due_local"]) == (None, None)
    assert (await ops.ok("record.get", record="r0"))["record"]["due_at"] is None

"""ping, campaigns, stats and the callbacks queue, answered from memory."""

from __future__ import annotations

from nextcall.roles import AGENT
from tests.unit.ops.harness import Ops, numbers


async def test_ping_names_the_role_and_counts_records(ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(4))
    ans = await ops.ok("ping", ops.peer(AGENT))
    assert ans["role"] == "agent" and ans["records"] == 4


async def test_campaigns_lists_codes_and_follows_the_agents_login(ops: Ops) -> None:
    ans = await ops.ok("campaigns")
    (camp,) = ans["campaigns"]
    codes = {c["code"]: c for c in camp["codes"]}
    assert codes["SALE"]["action"] == "close" and codes["CB"]["scope"] == "personal_then_team"
    assert (await ops.ok("campaigns", agent="ann"))["campaigns"] == []
    await ops.ok("agent.login", agent="ann", campaigns=["t"])
    assert [c["name"] for c in (await ops.ok("campaigns", agent="ann"))["campaigns"]] == ["t"]


async def test_stats_count_slots_leases_and_closed_reasons(ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(3))
    (lease,) = (await ops.ok("next", agent="a", campaigns=["t"]))["leases"]
    await ops.ok("dispose", lease=lease["token"], code="SALE", revenue=1)
    await ops.ok("next", agent="a", campaigns=["t"])
    ans = await ops.ok("stats", campaign="t")
    t = ans["campaigns"]["t"]
    assert ans["leases"] == 1 and t["closed"] == {"final": 1}
    assert t["zones"]["UTC"]["open"] is True
    await ops.refused("stats", "unknown_campaign", campaign="nope")


async def test_an_agent_must_name_itself_to_see_callbacks(ops: Ops) -> None:
    err = await ops.refused("callbacks", "forbidden", ops.peer(AGENT))
    assert err["field"] == "agent"


async def test_callbacks_show_whose_queue_a_callback_is_in(ops: Ops) -> None:
    await ops.ok("records.import", campaign="t", list="l", records=numbers(2, team="red"))
    await ops.ok("agent.login", agent="ann", campaigns=["t"], teams=["red"])
    await ops.ok("agent.login", agent="bob", campaigns=["t"], teams=["blue"])
    (lease,) = (await ops.ok("next", agent="ann", campaigns=["t"]))["leases"]
    at = "2027-01-15T10:00:00"
    await ops.ok("dispose", lease=lease["token"], code="CBT", callback={"at": at})
    ann = await ops.ok("callbacks", agent="ann")
    assert ann["count"] == 1 and ann["callbacks"][0]["record"] == "r0"
    assert (await ops.ok("callbacks", agent="bob"))["count"] == 0
    err = await ops.refused("callbacks", "bad_request", to="2020-01-01T00:00:00",
                            **{"from": "2021-01-01T00:00:00"})
    assert err["field"] == "to"

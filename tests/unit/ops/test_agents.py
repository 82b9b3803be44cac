"""Logins, logouts and event subscriptions on the in-memory store."""

from __future__ import annotations

import orjson

from tests.unit.ops.harness import Ops


async def test_login_is_durable_and_survives_a_restart(ops: Ops) -> None:
    ans = await ops.ok("agent.login", agent="ann", campaigns=["t"], teams=["red"])
    assert ans["campaigns"] == ["t"] and ans["teams"] == ["red"]
    row = ops.store.agents["ann"]
    assert row["logged_in"] is True and orjson.loads(row["teams"]) == ["red"]
    await ops.restart()
    assert ops.svc.engine.agents["ann"].teams == ("red",)


async def test_logout_is_stored_and_an_unknown_agent_is_not_found(ops: Ops) -> None:
    await ops.ok("agent.login", agent="ann", campaigns=["t"])
    await ops.ok("agent.logout", agent="ann")
    assert ops.store.agents["ann"]["logged_in"] is False
    err = await ops.refused("agent.logout", "not_found", agent="zed")
    assert err["field"] == "agent"


async def test_login_to_an_unknown_campaign_is_refused(ops: Ops) -> None:
    err = await ops.refused("agent.login", "unknown_campaign", agent="ann",
                            campaigns=["nope"])
    assert err["field"] == "campaigns[0]"
    assert "ann" not in ops.store.agents


async def test_subscribe_needs_a_connection_that_carries_events(ops: Ops) -> None:
    await ops.refused("subscribe", "unavailable", agent="ann")
    peer = ops.peer()
    sent: list[bytes] = []

    async def send(line: bytes) -> None:
        sent.append(line)
    peer.send = send
    ans = await ops.ok("subscribe", peer, agent="ann")
    assert ans["subscribed"] is True and ans["connections"] == 1
    ops.svc.discard_connection(peer.conn_id)
    assert ops.svc.subscriptions.connections("ann") == 0

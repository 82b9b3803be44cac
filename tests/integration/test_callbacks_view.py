"""The ``callbacks`` op and ``nextcall callbacks``: the callback queue by agent, team and
campaign, with how late each callback is; and who may own a callback.

The daemon runs in-process on a real socket with a controllable clock (``Service.clock``)
starting at ``T0``, so due times, ``late_s`` and the upcoming / due / overdue split are
exact. Campaign ``t`` (tests/conftest.py) has ``grace_s = 60``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nextcall.app import Daemon
from nextcall.cli import main as cli_main
from nextcall.config import load
from tests.conftest import AsyncClient, write_config

#: a Monday noon, far from now: the reminder scheduler (real clock) never fires here
T0 = datetime(2030, 1, 7, 12, 0, tzinfo=UTC).timestamp()


@dataclass
class Clock:
    """The service's clock, moved by the test."""

    t: float = T0

    def __call__(self) -> float:
        return self.t


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


async def ok(c: AsyncClient, op: str, **fields: Any) -> dict[str, Any]:
    ans = await c.call(op, **fields)
    assert ans["ok"] is True, ans
    return ans


def refused(ans: dict[str, Any], code: str, field: str | None) -> None:
    assert ans["ok"] is False, ans
    assert (ans["error"]["code"], ans["error"].get("field")) == (code, field), ans


@dataclass
class World:
    daemon: Daemon
    client: AsyncClient
    clock: Clock


async def start(root: Path, clock: Clock, auth: str = "") -> Daemon:
    d = Daemon(load(write_config(root, auth=auth)))
    d.service.clock = clock
    await d.start()
    return d


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """Agents alice and bob (team north), carol (south), dave (north, other campaign
    only); five callbacks:

    =====  =====================  ==========================  ==========
    rec    code / scope           for                         due
    =====  =====================  ==========================  ==========
    r1     CB personal_then_team  alice (record team north)   T0 + 3600
    r2     CB personal_then_team  bob (north)                 T0 + 600
    r3     CBT team               team north                  T0 + 1200
    r4     CBT team               team south                  T0 + 1800
    r5     CB personal_then_team  alice (north)               T0 + 60
    =====  =====================  ==========================  ==========
    """
    clock = Clock()
    d = await start(tmp_path, clock)
    c = await AsyncClient.connect(d.settings.daemon.socket)
    try:
        await ok(c, "agent.login", agent="alice", campaigns=["t"], teams=["north"])
        await ok(c, "agent.login", agent="bob", campaigns=["t"], teams=["north"])
        await ok(c, "agent.login", agent="carol", campaigns=["t"], teams=["south"])
        recs = [{"id": f"r{i}", "phones": [f"+3161234{i:04d}"], "timezone":
                 "Europe/Amsterdam", "team": "north"} for i in range(1, 6)]
        await ok(c, "records.import", campaign="t", list="l", records=recs)
        leases = (await ok(c, "next", agent="alice", count=5))["leases"]
        token = {lz["record"]["id"]: lz["token"] for lz in leases}
        plan = {"r1": ("CB", 3600, {}), "r2": ("CB", 600, {"owner": "bob"}),
                "r3": ("CBT", 1200, {}), "r4": ("CBT", 1800, {"team": "south"}),
                "r5": ("CB", 60, {"reason": "after lunch"})}
        for rec, (code, dt, extra) in plan.items():
            await ok(c, "dispose", lease=token[rec], code=code,
                     callback={"at": iso(T0 + dt), "timezone": "Europe/Amsterdam", **extra})
        yield World(d, c, clock)
    finally:
        await c.close()
        await d.stop()


def ids(ans: dict[str, Any]) -> list[str]:
    return [e["record"] for e in ans["callbacks"]]


async def test_queue_sorted_by_due_time_with_every_field(world: World) -> None:
    ans = await ok(world.client, "callbacks")
    assert ids(ans) == ["r5", "r2", "r3", "r4", "r1"]
    assert ans["count"] == 5 and ans["truncated"] is False
    assert ans["counts"] == {"upcoming": 5, "due": 0, "overdue": 0}
    assert ans["now"] == "2030-01-07T12:00:00Z"
    first = ans["callbacks"][0]
    assert first == {
        "record": "r5", "campaign": "t", "owner": "alice", "team": "north",
        "scope": "personal_then_team", "due_at": "2030-01-07T12:01:00Z",
        # wall time in the timezone the agent gave, and in the callee's
        "local": "2030-01-07T13:01:00+01:00", "timezone": "Europe/Amsterdam",
        "callee_local": "2030-01-07T13:01:00+01:00", "callee_timezone": "Europe/Amsterdam",
        "contact_priority": 4, "reason": "after lunch", "code": "CB", "state": "upcoming",
        "late_s": 0, "in_s": 60, "leased": False, "leased_to": None, "reminder": None,
        # a callback at one instant: no window, ordered by its own contact priority
        "until": None, "until_local": None, "priority_now": 4,
    }
    by_id = {e["record"]: e for e in ans["callbacks"]}
    assert (by_id["r3"]["scope"], by_id["r3"]["owner"], by_id["r3"]["team"]) == \
        ("team", None, "north")
    assert (by_id["r4"]["team"], by_id["r2"]["owner"]) == ("south", "bob")
    assert by_id["r3"]["contact_priority"] == 6


async def test_late_s_and_states_follow_the_clock(world: World) -> None:
    c = world.client
    world.clock.t = T0 + 100  # r5 due 40 s ago: inside grace (60 s)
    ans = await ok(c, "callbacks")
    r5 = ans["callbacks"][0]
    assert (r5["record"], r5["state"], r5["late_s"], r5["in_s"]) == ("r5", "due", 40, 0)
    assert ans["counts"] == {"upcoming": 4, "due": 1, "overdue": 0}
    assert ans["callbacks"][1]["in_s"] == 500  # r2
    world.clock.t = T0 + 700  # r5 140 s late: overdue; r2 100 s late: overdue too
    ans = await ok(c, "callbacks")
    states = {e["record"]: (e["state"], e["late_s"]) for e in ans["callbacks"]}
    assert states["r5"] == ("overdue", 640) and states["r2"] == ("overdue", 100)
    assert states["r3"] == ("upcoming", 0)
    world.clock.t = T0 + 1230  # r3 30 s late
    ans = await ok(c, "callbacks", states=["due"])
    assert [(e["record"], e["late_s"]) for e in ans["callbacks"]] == [("r3", 30)]
    ans = await ok(c, "callbacks", states=["overdue", "upcoming"])
    assert ids(ans) == ["r5", "r2", "r4", "r1"]
    assert ans["counts"] == {"upcoming": 2, "due": 0, "overdue": 2}


async def test_leased_callback_is_shown_as_leased(world: World) -> None:
    c = world.client
    world.clock.t = T0 + 61
    lz = (await ok(c, "next", agent="alice"))["leases"][0]
    assert (lz["record"]["id"], lz["reason"]) == ("r5", "personal_callback")
    r5 = (await ok(c, "callbacks", agent="alice"))["callbacks"][0]
    assert (r5["record"], r5["leased"], r5["leased_to"], r5["state"], r5["late_s"]) == \
        ("r5", True, "alice", "due", 1)
    # disposed: it leaves the queue
    await ok(c, "dispose", lease=lz["token"], code="NA")
    assert "r5" not in ids(await ok(c, "callbacks"))


async def test_filters_by_agent_team_campaign_and_time(world: World) -> None:
    c = world.client
    # alice: her own (r1, r5), bob's personal-then-team callback of her team (r2), the
    # team callback of north (r3); not south's (r4)
    assert ids(await ok(c, "callbacks", agent="alice")) == ["r5", "r2", "r3", "r1"]
    assert ids(await ok(c, "callbacks", agent="carol")) == ["r4"]
    # an agent nobody knows sees only what it owns: nothing
    assert ids(await ok(c, "callbacks", agent="zed")) == []
    assert ids(await ok(c, "callbacks", team="north")) == ["r5", "r2", "r3", "r1"]
    assert ids(await ok(c, "callbacks", team="south")) == ["r4"]
    assert ids(await ok(c, "callbacks", campaign="t", team="north", agent="bob")) == \
        ["r5", "r2", "r3", "r1"]
    assert ids(await ok(c, "callbacks", **{"from": iso(T0 + 600), "to": iso(T0 + 1200)})) \
        == ["r2", "r3"]
    # no offset: UTC
    assert ids(await ok(c, "callbacks", **{"from": "2030-01-07T12:30:01"})) == ["r1"]
    assert ids(await ok(c, "callbacks", limit=2)) == ["r5", "r2"]
    ans = await ok(c, "callbacks", limit=2)
    assert (ans["count"], ans["truncated"]) == (5, True)
    refused(await c.call("callbacks", campaign="nope"), "unknown_campaign", "campaign")
    refused(await c.call("callbacks", **{"from": "tomorrow"}), "bad_request", "from")
    refused(await c.call("callbacks", **{"from": iso(T0 + 10), "to": iso(T0)}),
            "bad_request", "to")
    refused(await c.call("callbacks", states=["late"]), "bad_request", "states[0]")


async def test_agents_must_name_themselves(tmp_path: Path) -> None:
    d = await start(tmp_path, Clock(), auth="trust_own_uid = false")
    c = await AsyncClient.connect(d.settings.daemon.socket)
    try:
        assert (await ok(c, "ping"))["role"] == "agent"
        refused(await c.call("callbacks"), "forbidden", "agent")
        refused(await c.call("callbacks", team="north"), "forbidden", "agent")
        assert (await ok(c, "callbacks", agent="alice"))["callbacks"] == []
    finally:
        await c.close()
        await d.stop()


async def test_callback_owner_must_be_an_agent_of_the_campaign(tmp_path: Path) -> None:
    clock = Clock()
    d = await start(tmp_path, clock)
    c = await AsyncClient.connect(d.settings.daemon.socket)
    try:
        await ok(c, "agent.login", agent="alice", campaigns=["t"])
        await ok(c, "agent.login", agent="bob", campaigns=["t"])
        await ok(c, "agent.logout", agent="bob")  # logged out: still an agent of t
        await ok(c, "records.import", campaign="t", list="l", records=[
            {"id": "a", "phones": ["+31612340001"], "timezone": "UTC"},
            {"id": "b", "phones": ["+31612340002"], "timezone": "UTC"}])
        lz = (await ok(c, "next", agent="alice", count=2))["leases"]
        tok = {x["record"]["id"]: x["token"] for x in lz}
        at = iso(T0 + 3600)
        refused(await c.call("dispose", lease=tok["a"], code="CB",
                             callback={"at": at, "owner": "ghost"}),
                "bad_request", "callback.owner")
        # refused without a trace: the lease is still live and the record unchanged
        ans = await ok(c, "dispose", lease=tok["a"], code="CB",
                       callback={"at": at, "owner": "bob"})
        assert (ans["owner"], ans["callback"]["owner"]) == ("bob", "bob")
        # the disposing agent itself needs no check; a team callback has no owner
        await ok(c, "dispose", lease=tok["b"], code="CB", callback={"at": at})
        # callback.schedule (supervisor) names an owner: the same rule (its fields are
        # top-level, so the error names "owner")
        refused(await c.call("callback.schedule", record="b", at=at, owner="ghost"),
                "bad_request", "owner")
        # an agent of another campaign only is no owner here
        await ok(c, "agent.login", agent="dave", campaigns=["t"])
        d.service.engine.agents["dave"].campaigns = ("elsewhere",)
        refused(await c.call("callback.schedule", record="b", at=at, owner="dave"),
                "bad_request", "owner")
        ans = await ok(c, "callback.schedule", record="b", at=at, owner="bob",
                       reminder_min=5)
        assert ans["record"]["owner"] == "bob"
        view = {e["record"]: e for e in (await ok(c, "callbacks"))["callbacks"]}
        assert view["a"]["owner"] == view["b"]["owner"] == "bob"
        # callback.schedule with reminder_min: the queue shows when it will remind
        assert view["b"]["reminder"] == {"at": "2030-01-07T12:55:00Z", "minutes": 5,
                                         "sent_at": None, "pending": True}
        assert view["a"]["reminder"] is None  # code CB asks for no reminder
    finally:
        await c.close()
        await d.stop()


def run_cli(socket_path: str, *args: str) -> str:
    result = CliRunner().invoke(cli_main, ["--socket", socket_path, *args],
                                env={"COLUMNS": "250"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def test_cli_table_and_json(world: World) -> None:
    world.clock.t = T0 + 700
    path = str(world.daemon.settings.daemon.socket)
    out = await asyncio.to_thread(run_cli, path, "callbacks")
    lines = out.splitlines()
    assert "5 callbacks at 2030-01-07T12:11:40Z: 2 overdue, 0 due, 3 upcoming" in out
    # rows in due order, each with its state and lateness
    rows = [ln for ln in lines if " r" in ln and ("overdue" in ln or "upcoming" in ln)]
    assert [next(w for w in ln.split() if w.startswith("r") and w[1:].isdigit())
            for ln in rows] == ["r5", "r2", "r3", "r4", "r1"]
    assert "10m" in rows[0] and "overdue" in rows[0]  # r5: 640 s late
    assert "1m" in rows[1] and "overdue" in rows[1]  # r2: 100 s late
    assert "in 8m" in rows[2]  # r3 due in 500 s
    assert "team north" in rows[2] and "team south" in rows[3]
    out = await asyncio.to_thread(run_cli, path, "callbacks", "--agent", "carol")
    assert "1 callbacks" in out and "r4" in out and "r5" not in out
    out = await asyncio.to_thread(run_cli, path, "--json", "callbacks", "--team", "north",
                                  "--state", "overdue")
    ans = json.loads(out)
    assert [e["record"] for e in ans["callbacks"]] == ["r5", "r2"]
    assert [e["late_s"] for e in ans["callbacks"]] == [640, 100]

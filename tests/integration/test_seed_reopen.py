"""Who brings a record back, as the seed pages say, over the socket on the shipped config.

- Soft Recruit, "Closes Donor Record": "it will stay closed unless there is an extenuating
  circumstance and an administrator reopens it". Its close codes say
  ``reopen_roles = ["admin"]`` (the default of every close code, which the other seeds'
  close codes get): a supervisor reopens none, on any path (``record.reopen``,
  ``callback.schedule``); its special codes let supervisors reopen them.
- Evergiving: "An agent sets a Callback ... while on a call or viewing a donor record".
  ``agent_schedule = true``: an agent logged in to the campaign gives a ready record, or a
  callback of theirs, a callback; closed and leased records stay out of reach, and a
  campaign without it refuses.

Both also through the CLI (``nextcall reopen``, ``nextcall schedule-callback --agent``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from nextcall.cli import main as cli_main
from nextcall.config import AuthCfg, load
from tests.conftest import AsyncClient
from tests.integration.shipped import (
    SHIPPED,
    Clock,
    Running,
    instant,
    ok,
    refused,
    shipped_settings,
    utc_z,
)
from tests.integration.test_seed_scenarios import CLOSE, SEEDS, TUE, WED

SOFT, EVER = SEEDS["softrecruit"], SEEDS["evergiving"]
#: Soft Recruit's "Closes Donor Record" codes (seeds/000, course 03)
SOFT_CLOSE = [code for seed, code, _ in CLOSE if seed == "softrecruit"]


@pytest.fixture
async def shipped(tmp_path: Path) -> AsyncIterator[Running]:
    """A daemon on the shipped config, on a Tuesday morning."""
    r = Running(shipped_settings(tmp_path), Clock(instant(f"{TUE}T10:00", "UTC")))
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


@contextmanager
def accepting_as(r: Running, role: str) -> Iterator[None]:
    """Connections accepted meanwhile get ``role`` (the daemon's own uid is admin): the
    role is decided when a connection is accepted, from ``[auth]``."""
    assert r.daemon is not None
    if role == "admin":
        yield
        return
    server = r.daemon.server
    saved = server.settings
    auth = AuthCfg(trust_own_uid=False,
                   supervisor_uids=[os.getuid()] if role == "supervisor" else [])
    server.settings = dataclasses.replace(saved, auth=auth)
    try:
        yield
    finally:
        server.settings = saved


async def connection(r: Running, role: str) -> AsyncClient:
    """A connection with ``role``."""
    with accepting_as(r, role):
        c = await r.connect()
        assert (await ok(c, "ping"))["role"] == role
    return c


async def cli(r: Running, role: str, *args: str) -> Result:
    """``nextcall ARGS`` on a connection with ``role``."""
    sock = r.settings.daemon.socket

    def run() -> Result:
        return CliRunner().invoke(cli_main, ["--socket", sock, *args],
                                  env={"COLUMNS": "250"}, catch_exceptions=False)

    with accepting_as(r, role):
        return await asyncio.to_thread(run)


async def closed_by(r: Running, code: str, extra: dict[str, Any], seed: Any = SOFT
                    ) -> None:
    """Record R of ``seed``, leased by alice and disposed with ``code``."""
    r.clock.set(f"{TUE}T10:00", seed.tz)
    await r.import_records(seed.campaign, "spring", [seed.rec("R", 1)])
    await r.login("alice", [seed.campaign], [seed.team])
    lease = (await r.next("alice"))[0]
    ans = await r.dispose(lease, code, **extra)
    assert ans["state"] == "closed", ans


# ---------------------------------------------------------------------------- Soft Recruit


def test_soft_recruit_close_codes_say_admin_only() -> None:
    """The shipped set says it, rather than leaving it to the default."""
    s = load(SHIPPED)
    said = {rc.code: rc.reopen_roles for rc in s.resultsets["softrecruit"].codes
            if rc.action == "close"}
    assert said == dict.fromkeys(SOFT_CLOSE, ["admin"])
    codes = s.campaigns[SOFT.campaign].codes
    assert {c: codes[c].reopen_roles for c in SOFT_CLOSE} == dict.fromkeys(SOFT_CLOSE,
                                                                          ("admin",))


@pytest.mark.parametrize(("seed_name", "code", "extra"), CLOSE,
                         ids=[f"{c[0]}-{c[1]}" for c in CLOSE])
async def test_a_supervisor_reopens_no_closed_record_an_admin_does(
        shipped: Running, seed_name: str, code: str, extra: dict[str, Any]) -> None:
    """Every path that reopens asks the closing code: the supervisor is refused by
    ``record.reopen`` and by ``callback.schedule`` (which used to let them), naming the
    record; the admin's callback brings it back."""
    r, seed = shipped, SEEDS[seed_name]
    await closed_by(r, code, extra, seed)
    sup = await connection(r, "supervisor")
    err = refused(await sup.call("record.reopen", record="R"), "forbidden", "record")
    assert f"'{code}'" in err["message"] and "admin" in err["message"]
    refused(await sup.call("callback.schedule", record="R", at=f"{WED}T11:00",
                           owner="alice"), "forbidden", "record")
    rec = await r.get("R")
    assert (rec["state"], [h["code"] for h in rec["history"]]) == ("closed", [code])
    back = await ok(r.admin, "callback.schedule", record="R", at=f"{WED}T11:00",
                    owner="alice", scope="personal", reason="extenuating circumstance")
    assert (back["record"]["state"], back["record"]["owner"]) == ("callback", "alice")


async def test_soft_recruit_special_is_reopened_by_a_supervisor(shipped: Running) -> None:
    """SPEC-* say ``reopen_roles = ["supervisor", "admin"]``: besides the specialty team,
    a supervisor reopens them, by a callback or by ``record.reopen``."""
    r = shipped
    await closed_by(r, "SPEC-MED", {"note": "nurse"})
    sup = await connection(r, "supervisor")
    back = await ok(sup, "callback.schedule", record="R", at=f"{WED}T11:00",
                    owner="alice", scope="personal")
    assert back["record"]["state"] == "callback"
    rec = await r.get("R")
    assert [h["code"] for h in rec["history"]] == ["SPEC-MED", "@callback"]


async def test_soft_recruit_reopen_from_the_cli(shipped: Running) -> None:
    """``nextcall reopen``: refused to a supervisor for NI, done by an admin."""
    r = shipped
    await closed_by(r, "NI", {})
    res = await cli(r, "supervisor", "reopen", "R")
    assert res.exit_code == 1 and "forbidden" in res.output and "'NI'" in res.output
    assert (await r.get("R"))["state"] == "closed"
    res = await cli(r, "admin", "reopen", "R", "--note", "extenuating circumstance")
    assert res.exit_code == 0 and "R: ready" in res.output, res.output


# ---------------------------------------------------------------------------- Evergiving


@pytest.fixture
async def viewing(shipped: Running) -> Running:
    """Evergiving on Tuesday 10:00 London: donors R (ready), Q (leased by bob) and C
    (closed WELCOMED); alice and bob work team north; dave works Soft Recruit only."""
    r = shipped
    r.clock.set(f"{TUE}T10:00", EVER.tz)
    await r.import_records(EVER.campaign, "f2f-june", [EVER.rec("C", 3)])
    await r.login("bob", [EVER.campaign], [EVER.team])
    await r.dispose((await r.next("bob"))[0], "WELCOMED", revenue=10.0)
    await r.import_records(EVER.campaign, "f2f-june", [EVER.rec("Q", 2)])
    assert [lz["record"]["id"] for lz in await r.next("bob")] == ["Q"]
    await r.import_records(EVER.campaign, "f2f-june", [EVER.rec("R", 1)])
    await r.login("alice", [EVER.campaign], [EVER.team])
    await r.login("dave", [SOFT.campaign], [SOFT.team])
    return r


async def test_evergiving_agent_sets_a_callback_while_viewing_a_donor(viewing: Running
                                                                      ) -> None:
    """alice (agent role) gives ready R a personal callback; the history names her; she
    moves it later; bob may not move hers; at the time it is hers."""
    r = viewing
    agent = await connection(r, "agent")
    ans = await ok(agent, "callback.schedule", record="R", agent="alice",
                   at=f"{WED}T15:00", scope="personal", reason="donor asked by e-mail")
    cb = ans["record"]["callback"]
    assert (ans["record"]["state"], cb["owner"], cb["scope"]) == ("callback", "alice",
                                                                  "personal")
    err = refused(await agent.call("callback.schedule", record="R", agent="bob",
                                   at=f"{WED}T16:00"), "forbidden", "record")
    assert "'alice'" in err["message"]
    moved = await ok(agent, "callback.schedule", record="R", agent="alice",
                     at=f"{WED}T17:00", scope="personal")
    due = EVER.at(f"{WED}T17:00")
    assert moved["record"]["due_at"] == utc_z(due)
    history = (await r.get("R"))["history"]
    assert [(h["code"], h["agent"], h["note"]) for h in history] == [
        ("@callback", "alice", "donor asked by e-mail"), ("@callback", "alice", "")]
    r.clock.t = due
    assert "R" not in [lz["record"]["id"] for lz in await r.next("bob")]
    assert (await r.lease("alice", "R"))["reason"] == "personal_callback"


async def test_evergiving_closed_leased_and_unlogged_stay_out_of_reach(viewing: Running
                                                                       ) -> None:
    """The ``campaigns`` op tells agent screens which campaigns allow it. Closed C and
    leased Q are refused; an agent not logged in to the campaign is refused; Soft Recruit
    (no agent_schedule) refuses its own recruiter."""
    r = viewing
    shown = {c["name"]: c["agent_schedule"]
             for c in (await ok(r.admin, "campaigns"))["campaigns"]}
    assert (shown[EVER.campaign], shown[SOFT.campaign]) == (True, False)
    agent = await connection(r, "agent")
    at = f"{WED}T15:00"
    refused(await agent.call("callback.schedule", record="C", agent="alice", at=at),
            "forbidden", "record")
    refused(await agent.call("callback.schedule", record="Q", agent="alice", at=at),
            "conflict", "record")
    err = refused(await agent.call("callback.schedule", record="R", agent="dave", at=at),
                  "forbidden", "agent")
    assert f"'{EVER.campaign}'" in err["message"]
    refused(await agent.call("callback.schedule", record="R", at=at), "forbidden", "agent")
    await r.import_records(SOFT.campaign, "spring", [SOFT.rec("S", 1)])
    err = refused(await agent.call("callback.schedule", record="S", agent="dave",
                                   at=f"{WED}T11:00"), "forbidden", "agent")
    assert "agent_schedule" in err["message"]
    assert [(await r.get(x))["state"] for x in ("C", "Q", "R", "S")] == [
        "closed", "leased", "ready", "ready"]


async def test_evergiving_agent_schedules_from_the_cli(viewing: Running) -> None:
    """``nextcall schedule-callback --agent alice`` from an agent-role connection."""
    r = viewing
    res = await cli(r, "agent", "schedule-callback", "R", f"{WED}T15:00", "--agent",
                    "alice", "--scope", "personal", "--reason", "viewing the record")
    assert res.exit_code == 0 and "R: callback" in res.output and "for alice" in res.output, \
        res.output
    res = await cli(r, "agent", "schedule-callback", "C", f"{WED}T15:00", "--agent", "alice")
    assert res.exit_code == 1 and "forbidden" in res.output
    assert (await r.get("R"))["history"][-1]["agent"] == "alice"

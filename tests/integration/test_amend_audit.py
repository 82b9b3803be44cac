"""Audit per hand-out and amendments over the socket, on the shipped configuration
(Evergiving: London, window 09:00-20:30 on weekdays, legal 08:00-21:00, max_attempts 6,
``amend_grace_s = 900``), on SQLite and on PostgreSQL, across a restart, and from the CLI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nextcall.cli import main as cli_main
from tests.integration.shipped import Clock, Running, instant, ok, refused, shipped_settings

CAMPAIGN, TZ, TEAM = "evergiving-welcome", "Europe/London", "north"
TUE = "2027-06-15"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """None: the shipped SQLite file in tmp; else the test PostgreSQL, emptied."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def world(db_url: str | None, tmp_path: Path) -> AsyncIterator[Running]:
    """The shipped daemon on SQLite or PostgreSQL, Tuesday 10:00 in London; record R with
    two numbers; alice and bob of team north logged in."""
    settings = shipped_settings(tmp_path)
    if db_url is not None:
        settings = dataclasses.replace(settings, daemon=settings.daemon.model_copy(
            update={"database": db_url}))
    r = Running(settings, Clock(instant(f"{TUE}T10:00", TZ)))
    await r.start()
    try:
        await r.import_records(CAMPAIGN, "f2f-june", [
            {"id": "R", "phones": ["+442079460001", "+442079460002"], "timezone": TZ,
             "team": TEAM}])
        for agent in ("alice", "bob"):
            await r.login(agent, [CAMPAIGN], [TEAM])
        yield r
    finally:
        await r.stop()


def run_cli(socket_path: str, *args: str) -> str:
    result = CliRunner().invoke(cli_main, ["--socket", socket_path, *args],
                                env={"COLUMNS": "250"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def test_each_hand_out_keeps_the_facts_that_allowed_it(world: Running) -> None:
    r = world
    first = await r.lease("alice", "R")
    await r.dispose(first, "NA")
    r.clock.t = instant(f"{TUE}T20:00", TZ)  # NA: due again an hour later
    second = await r.lease("bob", "R")
    await r.restart()  # the facts are in the database, not only in memory
    rec = await r.get("R")
    audits = [x["audit"] for x in rec["leases"]]
    assert audits == [
        {"local_time": "2027-06-15T10:00:00+01:00", "timezone": TZ,
         "calling_window": "09:00-20:30", "legal_window": "08:00-21:00", "attempts": 0,
         "max_attempts": 6, "dnc_list_version": 0, "block_list_version": 0,
         "selection": "pool"},
        {"local_time": "2027-06-15T20:00:00+01:00", "timezone": TZ,
         "calling_window": "09:00-20:30", "legal_window": "08:00-21:00", "attempts": 1,
         "max_attempts": 6, "dnc_list_version": 0, "block_list_version": 0,
         "selection": "pool"}]
    assert [x["lease"] for x in rec["leases"]] == [int(first["token"].split(".")[0]),
                                                   int(second["token"].split(".")[0])]
    path = str(r.settings.daemon.socket)
    out = await asyncio.to_thread(run_cli, path, "get", "R", "--audit")
    assert "hand-outs (audit)" in out
    assert "2027-06-15T20:00:00+01:00" in out and "09:00-20:30" in out and "1/6" in out


async def test_an_agent_amends_its_own_disposition_within_the_grace(world: Running) -> None:
    r = world
    lease = await r.lease("alice", "R")
    await r.dispose(lease, "NA")
    agent = await r.agent_connection()
    r.clock.t += 899
    refused(await agent.call("amend", lease=lease["token"], code="CB", reason="x",
                             agent="bob", callback={"at": f"{TUE}T18:00"}),
            "forbidden", "agent")
    ans = await ok(agent, "amend", lease=lease["token"], code="CB", agent="alice",
                   reason="she asked to be called at six",
                   callback={"at": f"{TUE}T18:00"})
    assert (ans["record"]["state"], ans["record"]["owner"]) == ("callback", "alice")
    assert ans["amended"]["code"] == "NA"
    r.clock.t += 2  # 901 s after the disposition
    refused(await agent.call("amend", lease=lease["token"], code="NA", reason="x",
                             agent="alice"), "amend_grace_over", "lease")
    await r.restart()
    rec = await r.get("R")
    first, second = rec["history"]
    assert (first["code"], first["replaced_by"]) == ("NA", second["entry"])
    assert (second["code"], second["amends"], second["agent"], second["amend_reason"]) == \
        ("CB", first["entry"], "alice", "she asked to be called at six")
    assert (rec["state"], rec["attempts"], rec["callback"]["local"][:16]) == \
        ("callback", 1, f"{TUE}T18:00")
    r.clock.t = instant(f"{TUE}T18:00", TZ)  # the amended callback is served as promised
    got = await r.lease("alice", "R")
    assert got["reason"] == "personal_callback"


@pytest.mark.parametrize(("old", "new", "state"), [
    ("NA", "WELCOMED", "closed"), ("CB", "NA", "ready"), ("WELCOMED", "CBQ", "callback"),
    ("CANCEL", "WELCOMED", "closed")])
async def test_a_supervisor_amends_from_the_cli(world: Running, old: str, new: str,
                                                state: str) -> None:
    r = world
    lease = await r.lease("alice", "R")
    extra: dict[str, Any] = {"callback": {"at": f"{TUE}T18:00"}} if old == "CB" else {}
    if old == "CANCEL":
        extra["note"] = "moved abroad"
    await r.dispose(lease, old, **extra)
    r.clock.t += 86_400 * 30  # supervisors (here: the admin) amend at any time
    args = ["--json", "amend", lease["token"].split(".")[0], new, "--reason",
            "wrong code"]
    if new == "CBQ":
        args += ["--callback-at", "2027-07-20T11:00"]
    path = str(r.settings.daemon.socket)
    ans = json.loads(await asyncio.to_thread(run_cli, path, *args))
    assert ans["record"]["state"] == state and ans["amended"]["code"] == old
    rec = await r.get("R")
    assert [h["code"] for h in rec["history"]] == [old, new]
    assert rec["attempts"] == 1 and rec["state"] == state
    st = await r.stats(CAMPAIGN)
    assert st["closed"] == ({"final": 1} if state == "closed" else {})


async def test_refused_when_the_record_moved_on(world: Running) -> None:
    r = world
    lease = await r.lease("alice", "R")
    await r.dispose(lease, "NA")
    r.clock.t += 3600
    again = await r.lease("bob", "R")
    err = refused(await r.admin.call("amend", lease=lease["token"], code="WELCOMED",
                                     reason="x"), "moved_on", "lease")
    assert "leased again" in err["message"]
    await r.dispose(again, "WELCOMED")
    # the latest disposition may be amended; the first is history now
    refused(await r.admin.call("amend", lease=lease["token"], code="CANCEL", reason="x"),
            "moved_on", "lease")
    ans = await ok(r.admin, "amend", record="R", code="NA", reason="not reached after all")
    assert ans["record"]["state"] == "ready" and ans["amended"]["lease"] == \
        int(again["token"].split(".")[0])


def _database_at_0005(path: Path) -> None:
    """A database as the daemon left it before migration 0008: record R disposed NA by
    alice (lease 1), one number on the DNC list."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from nextcall.storage.sql import MIGRATIONS_DIR
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
        t0 = instant(f"{TUE}T09:30", TZ)
        conn.execute(sa.text(
            "INSERT INTO records VALUES (1, 'R', :c, 'old', '[[\"+442079460001\",\"active\"]]',"
            " :tz, 0, '{}', 'ready', NULL, :due, 1, NULL, 'north', 1, 0, NULL, :t, :t)"),
            {"c": CAMPAIGN, "tz": TZ, "due": t0 + 60, "t": t0})
        conn.execute(sa.text(
            "INSERT INTO leases VALUES (1, 'sec', 1, 'alice', 0, :t, :e, '+442079460001', 0,"
            " 'pool', :t, 'disposed', 'NA', NULL)"), {"t": t0, "e": t0 + 300})
        conn.execute(sa.text(
            "INSERT INTO history (rid, lid, at, agent, campaign, code, phone, state, due_at,"
            " attempts) VALUES (1, 1, :t, 'alice', :c, 'NA', '+442079460001', 'ready', :due,"
            " 1)"), {"t": t0, "c": CAMPAIGN, "due": t0 + 60})
        conn.execute(sa.text(
            "INSERT INTO phone_lists VALUES ('+442079460999', 'dnc', :t, NULL, NULL)"),
            {"t": t0})
    engine.dispose()


async def test_records_and_leases_from_before_the_migration_keep_working(
        tmp_path: Path) -> None:
    _database_at_0005(tmp_path / "nextcall.db")
    r = Running(shipped_settings(tmp_path), Clock(instant(f"{TUE}T10:00", TZ)))
    await r.start()  # migrates 0005 -> 0008
    try:
        await r.login("alice", [CAMPAIGN], [TEAM])
        rec = await r.get("R")
        assert [x["audit"] for x in rec["leases"]] == [None]
        assert [(h["code"], h["amends"], h["replaced_by"]) for h in rec["history"]] == \
            [("NA", None, None)]
        # the old disposition kept no prior fields: it cannot be amended
        refused(await r.admin.call("amend", lease="1", code="WELCOMED", reason="x"),
                "conflict", "lease")
        lease = await r.lease("alice", "R")
        rec = await r.get("R")
        audit = rec["leases"][-1]["audit"]
        # the DNC list's version starts at its number of entries
        assert (audit["attempts"], audit["dnc_list_version"]) == (1, 1)
        await r.dispose(lease, "NA")
        ans = await ok(r.admin, "amend", record="R", code="CANCEL", note="n", reason="x")
        assert ans["record"]["state"] == "closed"
    finally:
        await r.stop()

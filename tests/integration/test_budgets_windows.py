"""Attempt budgets and callback windows on the SHIPPED configuration (the collections
campaign, config/campaigns/collections.toml), over the socket, on a real SQLite database
that survives a restart in the middle of a day; the CLI shows a callback window."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from nextcall.cli import main as cli_main
from tests.integration.shipped import Clock, Running, instant, shipped_settings

NY = "America/New_York"
TUE, WED = "2027-06-15", "2027-06-16"
CAMP = "collections"


def debtor(rid: str, n: int) -> dict[str, object]:
    return {"id": rid, "phones": [f"+1212555{n:04d}"], "timezone": NY}


@pytest.fixture
async def shipped(tmp_path: Path) -> AsyncIterator[Running]:
    r = Running(shipped_settings(tmp_path), Clock(instant(f"{TUE}T09:00", NY)))
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def test_budgets_hold_records_and_survive_a_restart(shipped: Running) -> None:
    r = shipped
    await r.import_records(CAMP, "june", [debtor("D1", 101), debtor("D2", 102)])
    await r.login("amy", [CAMP])
    for rid in ("D1", "D2"):
        await r.dispose(await r.lease("amy", rid), "NA")
    # 09:10: both are due again (NA: 10 minutes), but each number waits 4 hours
    r.clock.set(f"{TUE}T09:10", NY)
    assert await r.next("amy") == []
    st = await r.stats(CAMP)
    assert (st["budget"], st["due"]) == (2, 0)
    out = await asyncio.to_thread(run_cli, str(r.settings.daemon.socket), "stats")
    head = next(ln for ln in out.splitlines() if "budget" in ln)
    row = next(ln for ln in out.splitlines() if ln.startswith(f"│ {CAMP}"))
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[[c.strip() for c in head.split("┃")[1:-1]].index("budget")] == "2"
    # a restart in the middle of the day: the counts come back from the lease history
    await r.restart()
    await r.login("amy", [CAMP])
    r.clock.set(f"{TUE}T12:59", NY)
    assert await r.next("amy") == []
    assert (await r.stats(CAMP))["budget"] == 2
    r.clock.set(f"{TUE}T13:00", NY)
    await r.dispose(await r.lease("amy", "D1"), "NA")
    await r.dispose(await r.lease("amy", "D2"), "PAID")
    # 17:00: the number's gap is over, but D1 had its two calls of the local day
    r.clock.set(f"{TUE}T17:00", NY)
    assert await r.next("amy") == []
    d = r.daemon
    assert d is not None
    # the local day ends at midnight, but two calls within 24 hours hold it until
    # 09:00, when the first of them leaves the window (the window opens then too)
    assert d.service.engine.held_by_budget(1) == (instant(f"{WED}T09:00", NY),
                                                  "record_per_day")
    r.clock.set(f"{WED}T08:59", NY)
    assert await r.next("amy") == []
    r.clock.set(f"{WED}T09:00", NY)
    lease = await r.lease("amy", "D1")
    assert lease["reason"] == "pool"


async def test_a_callback_keeps_the_budgets_unless_the_debtor_asked(shipped: Running
                                                                    ) -> None:
    r = shipped
    r.clock.set(f"{TUE}T10:00", NY)
    await r.import_records(CAMP, "june", [debtor("D1", 101)])
    await r.login("amy", [CAMP])
    await r.dispose(await r.lease("amy", "D1"), "CB",
                    callback={"at": f"{TUE}T10:30"})
    # the promised 10:30 comes within the number's 4-hour gap: the callback waits
    r.clock.set(f"{TUE}T10:30", NY)
    assert await r.next("amy") == []
    r.clock.set(f"{TUE}T14:00", NY)
    lease = await r.lease("amy", "D1")
    assert lease["reason"] == "personal_callback"
    # the debtor asks for 14:15: CBREQ ignores the budgets
    await r.dispose(lease, "CBREQ", callback={"at": f"{TUE}T14:15"})
    r.clock.set(f"{TUE}T14:15", NY)
    assert (await r.lease("amy", "D1"))["reason"] == "personal_callback"


def run_cli(socket_path: str, *args: str) -> str:
    result = CliRunner().invoke(cli_main, ["--socket", socket_path, *args],
                                env={"COLUMNS": "250"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def test_callback_window_from_the_cli(shipped: Running) -> None:
    r = shipped
    await r.import_records(CAMP, "june", [debtor("D1", 101)])
    await r.login("amy", [CAMP])
    lease = await r.lease("amy", "D1")
    path = str(r.settings.daemon.socket)
    out = await asyncio.to_thread(
        run_cli, path, "--json", "dispose", lease["token"], "CB", "--agent", "amy",
        "--callback-at", f"{WED}T14:00", "--callback-until", "16:00")
    cb = json.loads(out)["callback"]
    assert (cb["local"], cb["until_local"]) == (f"{WED}T14:00:00-04:00",
                                                f"{WED}T16:00:00-04:00")
    out = await asyncio.to_thread(run_cli, path, "get", "D1")
    assert f"{WED}T14:00:00-04:00-16:00 {NY} (personal_then_team, CB p4)" in out
    r.clock.set(f"{WED}T15:00", NY)
    out = await asyncio.to_thread(run_cli, path, "callbacks")
    row = next(ln for ln in out.splitlines() if "D1" in ln)
    assert f"{WED}T14:00:00-04:00-16:00 {NY}" in row and "due" in row
    assert "CB p4 (now p6)" in row
    # the window ended unserved: overdue once the campaign's grace (15 min) has passed
    r.clock.set(f"{WED}T16:16", NY)
    ans = json.loads(await asyncio.to_thread(run_cli, path, "--json", "callbacks"))
    assert [(e["state"], e["priority_now"]) for e in ans["callbacks"]] == [("overdue", 9)]

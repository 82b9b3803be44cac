"""``report`` over the real socket on the shipped config (CallMonkey's sales phase): a
voicemail, a quote, an order won and an order lost, by two agents, on both sides of a
Los Angeles midnight that falls in the middle of the UTC day; the same answer after a
restart; the CLI's table, CSV and JSON."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nextcall.cli import main as cli_main
from tests.integration.shipped import Clock, Running, instant, ok, refused, shipped_settings

AMS, LA = "Europe/Amsterdam", "America/Los_Angeles"
CAMPAIGN = "callmonkey-sales"
OFFERTE = {"offerte_waarde": 12500, "kans": 60, "verwachte_orderdatum": "2027-07-01"}
ORDER = {"orderwaarde": 8400.5, "datum_gewonnen": "2027-06-15", "reden_gewonnen": "service"}
LOST = {"datum_verloren": "2027-06-15", "reden_verloren": "concurrent"}
REPORT = {"from": "2027-06-14", "to": "2027-06-15", "group_by": ["agent"]}


@pytest.fixture
async def worked(tmp_path: Path) -> AsyncIterator[Running]:
    """alice disposes VOICEMAIL and OFFERTE at 08:30 Amsterdam (23:30 the day before in
    Los Angeles); bob ORDER and VERLOREN at 10:00 Amsterdam (01:00 in Los Angeles)."""
    r = Running(shipped_settings(tmp_path), Clock(instant("2027-06-15T08:30", AMS)))
    await r.start()
    try:
        await r.import_records(CAMPAIGN, "voorjaar", [
            {"id": f"R{k}", "phones": [f"+312012300{k:02d}"], "timezone": AMS,
             "team": "binnendienst"} for k in range(1, 5)])
        await r.login("alice", [CAMPAIGN], ["binnendienst"])
        await r.login("bob", [CAMPAIGN], ["binnendienst"])
        await r.dispose((await r.next("alice"))[0], "VOICEMAIL")
        await r.dispose((await r.next("alice"))[0], "OFFERTE", fields=OFFERTE,
                        callback={"at": "2027-06-16T11:00"})
        r.clock.set("2027-06-15T10:00", AMS)
        await r.dispose((await r.next("bob"))[0], "ORDER", fields=ORDER)
        await r.dispose((await r.next("bob"))[0], "VERLOREN", fields=LOST)
        yield r
    finally:
        await r.stop()


def _figures(attempts: int, contacts: int, presentations: int, successes: int
             ) -> dict[str, Any]:
    def rate(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None
    return {"attempts": attempts, "contacts": contacts, "presentations": presentations,
            "successes": successes, "revenue": 0.0,
            "contact_rate": rate(contacts, attempts),
            "presentation_rate": rate(presentations, contacts),
            "conversion_rate": rate(successes, presentations)}


async def test_report_by_agent_with_pipeline_and_orders(worked: Running) -> None:
    ans = await ok(worked.admin, "report", timezone=AMS, **REPORT)
    assert ans["rows"] == [{"agent": "alice", **_figures(2, 1, 1, 0)},
                           {"agent": "bob", **_figures(2, 2, 2, 1)}]
    assert ans["total"] == _figures(4, 3, 3, 1)
    assert ans["quotes"] == [{"month": "2027-07", "count": 1, "value": 12500.0,
                              "weighted": 7500.0}]
    assert ans["orders"] == [
        {"outcome": "won", "reason": "service", "count": 1, "value": 8400.5},
        {"outcome": "lost", "reason": "concurrent", "count": 1, "value": 0.0}]


async def test_local_days_are_the_callers(worked: Running) -> None:
    """In Amsterdam all four are on 15 June; in Los Angeles alice's two were on the
    14th. Asking for the 15th alone in Los Angeles leaves them out."""
    ams = await ok(worked.admin, "report", timezone=AMS, **{**REPORT, "group_by": ["day"]})
    assert [(r["day"], r["attempts"]) for r in ams["rows"]] == [("2027-06-15", 4)]
    la = await ok(worked.admin, "report", timezone=LA, **{**REPORT, "group_by": ["day"]})
    assert [(r["day"], r["attempts"]) for r in la["rows"]] == [("2027-06-14", 2),
                                                              ("2027-06-15", 2)]
    only = await ok(worked.admin, "report", timezone=LA, **{
        **REPORT, "from": "2027-06-15", "group_by": ["agent", "code"]})
    assert [(r["agent"], r["code"]) for r in only["rows"]] == [("bob", "ORDER"),
                                                              ("bob", "VERLOREN")]
    assert only["quotes"] == []


async def test_filters_and_groups(worked: Running) -> None:
    ans = await ok(worked.admin, "report", timezone=AMS, agent="alice", list="voorjaar",
                   **{**REPORT, "group_by": ["campaign", "list", "code"]})
    assert [(r["campaign"], r["list"], r["code"], r["attempts"]) for r in ans["rows"]] == [
        (CAMPAIGN, "voorjaar", "OFFERTE", 1), (CAMPAIGN, "voorjaar", "VOICEMAIL", 1)]
    none = await ok(worked.admin, "report", timezone=AMS, campaign="tegsoft-sales", **REPORT)
    assert (none["rows"], none["total"]["attempts"]) == ([], 0)


async def test_refusals(worked: Running) -> None:
    agent = await worked.agent_connection()
    refused(await agent.call("report", **REPORT), "forbidden")
    refused(await worked.admin.call("report", **{**REPORT, "timezone": "Mars/Base"}),
            "bad_request", "timezone")
    refused(await worked.admin.call("report", **{**REPORT, "to": "2027-06-01"}),
            "bad_request", "to")
    refused(await worked.admin.call("report", **{**REPORT, "from": "2027-02-30"}),
            "bad_request", "from")
    refused(await worked.admin.call("report", **{**REPORT, "group_by": ["day", "day"]}),
            "bad_request", "group_by")


async def test_the_report_survives_a_restart(worked: Running) -> None:
    before = await ok(worked.admin, "report", timezone=LA, **REPORT)
    await worked.restart()
    after = await ok(worked.admin, "report", timezone=LA, **REPORT)
    assert {**after, "id": None} == {**before, "id": None}
    assert after["total"]["attempts"] == 4


def _cli(socket_path: str, *args: str) -> str:
    result = CliRunner().invoke(cli_main, ["--socket", socket_path, *args],
                                env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def test_cli_table_csv_and_json(worked: Running, tmp_path: Path) -> None:
    sock = str(worked.settings.daemon.socket)
    args = ("report", "--from", "2027-06-14", "--to", "2027-06-15", "--timezone", AMS,
            "--by", "agent")
    out = await asyncio.to_thread(_cli, sock, *args)
    lines = out.splitlines()
    alice = next(ln for ln in lines if "alice" in ln)
    assert [c.strip() for c in alice.split("│")[1:9]] == [
            "alice", "2", "1", "1", "0", "50.0%", "100.0%", "0.0%"], alice
    assert "7500.00" in out and "concurrent" in out and "service" in out
    path = tmp_path / "report.csv"
    out = await asyncio.to_thread(_cli, sock, *args, "--csv", str(path))
    assert f"2 rows written to {path}" in out
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["agent", "attempts", "contacts", "presentations", "successes",
                       "contact_rate", "presentation_rate", "conversion_rate", "revenue"]
    assert rows[1:] == [["alice", "2", "1", "1", "0", "0.5", "1.0", "0.0", "0.0"],
                        ["bob", "2", "2", "2", "1", "1.0", "1.0", "0.5", "0.0"]]
    ans = json.loads(await asyncio.to_thread(_cli, sock, "--json", *args))
    assert ans["total"]["attempts"] == 4 and ans["quotes"][0]["weighted"] == 7500.0

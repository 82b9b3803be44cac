"""Tegsoft's "group these customers by assigning a code" on the shipped config, over the
socket and from the command line, on SQLite and PostgreSQL: the ``records`` op finds a
campaign's records by their last result code (or the code's category), state, list,
callback owner and the time of the last disposition, pages them with a cursor, survives a
restart, and ``nextcall records --csv`` exports every page."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nextcall.cli import main as cli_main
from tests.integration.shipped import Clock, Running, instant, ok, refused, shipped_settings

CAMPAIGN, TZ = "tegsoft-sales", "Europe/Istanbul"
TUE = "2027-06-15"


def rec(n: int) -> dict[str, Any]:
    """An import row with two Istanbul numbers."""
    return {"id": f"c{n}", "phones": [f"+90212234{k:04d}" for k in (n, n + 10)],
            "timezone": TZ, "team": "sales", "data": {"name": f"customer {n}"}}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """None: the shipped config's SQLite file (in tmp); else the test PostgreSQL."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def shipped(db_url: str | None, tmp_path: Path) -> AsyncIterator[Running]:
    """The shipped config at 13:00 in Istanbul on a Tuesday, on either database."""
    settings = shipped_settings(tmp_path)
    if db_url is not None:
        settings = dataclasses.replace(settings, daemon=settings.daemon.model_copy(
            update={"database": db_url}))
    r = Running(settings, Clock(instant(f"{TUE}T13:00", TZ)))
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def found(r: Running, **filters: Any) -> list[str]:
    """The ids the ``records`` op finds in the Tegsoft campaign, every page."""
    ids: list[str] = []
    cursor = None
    while True:
        more = {"cursor": cursor} if cursor else {}
        ans = await ok(r.admin, "records", campaign=CAMPAIGN, limit=2, **filters, **more)
        ids += [x["id"] for x in ans["records"]]
        cursor = ans["next_cursor"]
        if cursor is None:
            return ids


def run_cli(socket: str, *args: str) -> str:
    result = CliRunner().invoke(cli_main, ["--socket", socket, *args],
                                env={"COLUMNS": "250"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def _work(r: Running) -> dict[str, str]:
    """Seven customers in two lists; ayse and mehmet dispose five of them (two at 13:00,
    then one at 14:00, 15:00 and 16:00 in Istanbul); one stays leased. Returns record
    id -> what happened, in that order."""
    await r.import_records(CAMPAIGN, "spring", [rec(1), rec(2), rec(3), rec(4)])
    await r.import_records(CAMPAIGN, "summer", [rec(5), rec(6), rec(7)])
    await r.login("ayse", [CAMPAIGN], ["sales"])
    await r.login("mehmet", [CAMPAIGN], ["sales"])
    done: dict[str, str] = {}
    plan: list[tuple[str, str, dict[str, Any]]] = [
        ("ayse", "SALES_DONE", {"revenue": 249.0}), ("mehmet", "SALES_FAILED", {}),
        ("ayse", "THINK", {"callback": {"at": "2027-06-16T11:00"}}),
        ("mehmet", "SALES_DONE", {"revenue": 99.0}), ("ayse", "WRONG_NUMBER", {}),
    ]
    for k, (agent, code, fields) in enumerate(plan):
        if k >= 2:
            r.clock.advance(3600)
        (lease,) = await r.next(agent)
        await r.dispose(lease, code, **fields)
        done[lease["record"]["id"]] = code
    (lease,) = await r.next("ayse")
    done[lease["record"]["id"]] = "leased"
    return done


async def test_tegsoft_groups_customers_by_their_last_result(shipped: Running) -> None:
    r = shipped
    done = await _work(r)
    by = {code: sorted(i for i, c in done.items() if c == code) for code in set(done.values())}
    assert sorted(await found(r, code="SALES_DONE")) == by["SALES_DONE"]
    assert await found(r, code="SALES_FAILED") == by["SALES_FAILED"]
    # Tegsoft's codes carry a category: "order" groups the sales, "callback" the THINKs
    assert sorted(await found(r, category="order")) == by["SALES_DONE"]
    assert await found(r, category="callback") == by["THINK"]
    assert sorted(await found(r, state="closed", reason="final")) == sorted(
        by["SALES_DONE"] + by["SALES_FAILED"])
    assert await found(r, state="leased") == by["leased"]
    assert await found(r, owner="ayse") == by["THINK"]  # the THINK callback is hers
    order = list(done)  # disposed in this order
    assert sorted(await found(r, last_agent="mehmet")) == sorted([order[1], order[3]])
    # the time of the last disposition: 15:00 and 16:00 are after 14:30
    assert sorted(await found(r, since=f"{TUE}T14:30:00+03:00")) == sorted(order[3:5])
    assert sorted(await found(r, since=f"{TUE}T10:00:00Z", until=f"{TUE}T10:30:00Z")) \
        == sorted(order[:2])  # both at 13:00 in Istanbul
    assert sorted(await found(r, until=f"{TUE}T14:00:00+03:00")) == sorted(order[:3])
    (wrong,) = (await ok(r.admin, "records", campaign=CAMPAIGN, code="WRONG_NUMBER")
                )["records"]
    n = int(wrong["id"][1:])  # removed the first number, continues with the second
    assert wrong["state"] == "ready" and wrong["phones"] == [
        {"number": f"+90212234{n:04d}", "status": "removed"},
        {"number": f"+90212234{n + 10:04d}", "status": "active"}]
    assert wrong["last_at"] == "2027-06-15T13:00:00Z"  # 16:00 in Istanbul
    assert wrong["last_agent"] == "ayse" and wrong["attempts"] == 1
    everyone = await found(r)
    assert everyone == [f"c{n}" for n in range(1, 8)]  # import order, every page
    assert await found(r, list="summer") == ["c5", "c6", "c7"]
    agent = await r.agent_connection()
    refused(await agent.call("records", campaign=CAMPAIGN), "forbidden")
    refused(await r.admin.call("records", campaign="nope"), "unknown_campaign", "campaign")
    # the last results are stored: a restart finds the same groups
    await r.restart()
    assert sorted(await found(r, code="SALES_DONE")) == by["SALES_DONE"]
    assert await found(r, state="leased") == by["leased"]


async def test_the_command_line_lists_and_exports(shipped: Running, tmp_path: Path) -> None:
    r = shipped
    done = await _work(r)
    sock = str(r.settings.daemon.socket)
    out = await asyncio.to_thread(run_cli, sock, "records", CAMPAIGN, "--code",
                                  "SALES_DONE")
    sold = sorted(i for i, c in done.items() if c == "SALES_DONE")
    assert f"{CAMPAIGN}: 2 records" in out and all(i in out for i in sold)
    out = await asyncio.to_thread(run_cli, sock, "records", CAMPAIGN, "--limit", "3",
                                  "--json")
    page = json.loads(out)
    assert [x["id"] for x in page["records"]] == ["c1", "c2", "c3"] and page["next_cursor"]
    out = await asyncio.to_thread(run_cli, sock, "records", CAMPAIGN, "--limit", "3",
                                  "--cursor", page["next_cursor"])
    assert "c4" in out and "c1" not in out
    path = tmp_path / "export.csv"
    await asyncio.to_thread(run_cli, sock, "records", CAMPAIGN, "--csv", str(path))
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [x["id"] for x in rows] == [f"c{n}" for n in range(1, 8)]
    by_id = {x["id"]: x for x in rows}
    for rid, code in done.items():
        if code != "leased":
            assert by_id[rid]["last_code"] == code
    assert json.loads(by_id["c1"]["data"]) == {"name": "customer 1"}
    assert by_id["c7"]["phones"] == "+902122340007;+902122340017"
    (wrong,) = [i for i, c in done.items() if c == "WRONG_NUMBER"]
    assert by_id[wrong]["phones"].split(";")[0].endswith(":removed")
    path.unlink()
    out = await asyncio.to_thread(run_cli, sock, "records", CAMPAIGN, "--category",
                                  "order", "--csv", "-")
    assert out.splitlines()[0].startswith("id,list,state,") and len(out.splitlines()) == 3
    assert "exported" not in out  # standard output carries the data only
    # a filter the daemon refuses: exit 1, no file left behind
    res = await asyncio.to_thread(CliRunner().invoke, cli_main, [
        "--socket", sock, "records", CAMPAIGN, "--category", "nothing", "--csv", str(path)])
    assert res.exit_code == 1 and not path.exists()
    res = await asyncio.to_thread(CliRunner().invoke, cli_main, [
        "--socket", sock, "records", CAMPAIGN, "--since", "not a time", "--csv", str(path)])
    assert res.exit_code == 1 and not path.exists()

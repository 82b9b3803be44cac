"""Reports computed in SQL (``storage/reports.py``) against the same report computed in
Python from the raw history rows (``core.reports.tally``), on SQLite and PostgreSQL:
local days across DST changes, a local day boundary in the middle of a UTC day, every
grouping, the filters, the quote pipeline and the orders."""

from __future__ import annotations

import itertools
import json
import random
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from nextcall.core.calendar import day_bounds
from nextcall.core.reports import GROUPS, CodeFacts, ReportQuery, tally
from nextcall.storage import sql as S
from nextcall.storage import statements as ST


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/report.sqlite"
    url: str = request.getfixturevalue("pg_url")
    return url


CODES = (
    CodeFacts("sales", "NA"),
    CodeFacts("sales", "NI", contact=True),
    CodeFacts("sales", "PITCH", contact=True, presentation=True),
    CodeFacts("sales", "SALE", contact=True, presentation=True, success=True),
    CodeFacts("sales", "QUOTE", contact=True, presentation=True, kind="quote",
              value="q_value", chance="q_chance", expected="q_date"),
    CodeFacts("sales", "WON", contact=True, presentation=True, success=True, kind="won",
              value="o_value", reason="why_won"),
    CodeFacts("sales", "LOST", contact=True, presentation=True, kind="lost",
              reason="why_lost"),
    CodeFacts("care", "NA"),
    CodeFacts("care", "OK", contact=True, presentation=True, success=True),
)
#: a code no longer configured: counts as an attempt only
GONE = ("sales", "OLD")
AGENTS = ("ann", "bob", "cas")
LISTS = ("north", "south")
#: 2026-03-29 01:00 UTC Europe/Amsterdam goes to summer time; 2026-11-01 06:00 UTC
#: America/New_York goes back to winter time
SPRING = datetime(2026, 3, 29, 1, tzinfo=ZoneInfo("UTC")).timestamp()
AUTUMN = datetime(2026, 11, 1, 6, tzinfo=ZoneInfo("UTC")).timestamp()


def _fields(code: str, rnd: random.Random) -> dict[str, Any] | None:
    if code == "QUOTE":
        return {"q_value": round(rnd.uniform(10, 900), 2), "q_chance": rnd.choice(
            [10, 25, 50, 90]), "q_date": rnd.choice(["2026-04-15", "2026-05-01",
                                                     "2026-12-31"])}
    if code == "WON":
        return {"o_value": round(rnd.uniform(10, 900), 2),
                "why_won": rnd.choice(["prijs", "service"])}
    if code == "LOST":
        return {"why_lost": rnd.choice(["prijs", "timing"])}
    return None


def _history(n: int, seed: int) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """``n`` history rows around both DST changes (most of them dispositions, some
    reopenings without a lease), on 60 records."""
    rnd = random.Random(seed)
    lists = {rid: rnd.choice(LISTS) for rid in range(1, 61)}
    rows: list[dict[str, Any]] = []
    amended: set[int] = set()
    for hid in range(1, n + 1):
        at = rnd.choice((SPRING, AUTUMN)) + rnd.randrange(-3 * 86_400, 3 * 86_400, 7)
        camp, code = rnd.choice([(c.campaign, c.code) for c in CODES] + [GONE])
        row = {"hid": hid, "rid": rnd.randrange(1, 61),
               "lid": None if rnd.random() < 0.05 else hid, "at": float(at),
               "agent": rnd.choice(AGENTS), "campaign": camp, "code": code,
               "revenue": round(rnd.uniform(1, 50), 2) if code == "SALE" else None,
               "fields": _fields(code, rnd), "amends": None}
        old = rows[rnd.randrange(len(rows))] if rows and rnd.random() < 0.08 else None
        if old is not None and old["lid"] is not None and old["hid"] not in amended:
            # an amendment: the same lease and record, a later row replacing the old one
            amended.add(old["hid"])
            row.update(rid=old["rid"], lid=old["lid"], amends=old["hid"])
        rows.append(row)
    return rows, lists


async def _store(url: str, rows: list[dict[str, Any]], lists: dict[int, str]
                 ) -> S.SqlStore:
    store = S.SqlStore(url)
    await store.open()
    await store.migrate()
    ops: list[ST.Op] = []
    for rid, lst in lists.items():
        row = {"rid": rid, "id": f"r{rid}", "campaign": "sales", "list": lst,
               "phones": '[["+31612340000","active"]]', "timezone": "UTC", "priority": 0,
               "data": "{}", "state": "ready", "reason": None, "due_at": 0.0,
               "attempts": 0, "owner": None, "team": None, "best_cp": 0, "phone_idx": 0,
               "callback": None, "imported_at": 1.0, "updated_at": 1.0}
        ops.append((ST.INS_RECORD, tuple(row[c] for c in ST.RECORD_COLS)))
    for h in rows:
        ops.append((ST.INS_HISTORY, (h["rid"], h["lid"], h["at"], h["agent"],
                                     h["campaign"], h["code"], None, None, h["revenue"],
                                     json.dumps(h["fields"]) if h["fields"] else None,
                                     None, "ready", None, 0.0, 1, None, h.get("amends"),
                                     None, ST.utc_day(h["at"]), None)))
    await store.write_ops(ops)
    return store


def _norm(result: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[Any, ...]]]:
    """Each part as sorted tuples, numbers rounded: the stores answer in any order."""
    def cell(v: Any) -> Any:
        return round(float(v), 6) if isinstance(v, float | int) and not isinstance(
            v, bool) else v
    return {k: sorted((tuple((c, cell(v)) for c, v in sorted(r.items())) for r in rows),
                      key=repr) for k, rows in result.items()}


def _query(first: date, last: date, tz: str, group_by: tuple[str, ...],
           **filters: Any) -> ReportQuery:
    lo, hi = day_bounds(first, last, tz)
    return ReportQuery(lo, hi, tz, group_by, CODES, **filters)


QUERIES = [
    *[(g, {}) for g in itertools.chain.from_iterable(
        itertools.combinations(GROUPS, k) for k in (0, 1, 2))],
    (("campaign", "list", "agent", "code", "day"), {}),
    (("day",), {"campaign": "sales"}),
    (("code",), {"agent": "bob", "list_name": "south"}),
]


@pytest.mark.parametrize("tz", ["Europe/Amsterdam", "America/New_York", "Asia/Kolkata"])
async def test_sql_report_matches_python_recomputation(db_url: str, tz: str) -> None:
    rows, lists = _history(1500, seed=11)
    store = await _store(db_url, rows, lists)
    try:
        for first, last in ((date(2026, 3, 27), date(2026, 3, 31)),
                            (date(2026, 3, 29), date(2026, 3, 29)),
                            (date(2026, 1, 1), date(2026, 12, 31))):
            for group_by, filters in QUERIES:
                q = _query(first, last, tz, group_by, **filters)
                got = await store.report(q)
                assert _norm(got) == _norm(tally(q, rows, lists)), (first, group_by)
                assert sum(r["attempts"] for r in got["figures"]) > 0
    finally:
        await store.close()


async def test_local_day_boundary_in_the_middle_of_a_utc_day(db_url: str) -> None:
    """New York, the day summer time ends (2026-11-01, 25 hours long): a disposition at
    03:59 UTC on 1 November is still 31 October there (EDT, -4), one at 04:00 UTC is
    1 November; 04:59 UTC on 2 November is still 1 November (EST, -5), 05:00 UTC is the
    2nd. Amsterdam's spring day (23 hours) the same way."""
    def at(text: str) -> float:
        return datetime.fromisoformat(text + "+00:00").timestamp()
    instants = ["2026-10-31T03:30:00", "2026-11-01T03:59:59", "2026-11-01T04:00:00",
                "2026-11-02T04:59:59", "2026-11-02T05:00:00",
                "2026-03-28T22:59:59", "2026-03-28T23:00:00", "2026-03-29T21:59:59",
                "2026-03-29T22:00:00"]
    rows = [{"hid": k + 1, "rid": 1, "lid": k + 1, "at": at(t), "agent": "ann",
             "campaign": "sales", "code": "NA", "revenue": None, "fields": None}
            for k, t in enumerate(instants)]
    store = await _store(db_url, rows, {1: "north"})
    try:
        ny = await store.report(_query(date(2026, 10, 31), date(2026, 11, 2),
                                       "America/New_York", ("day",)))
        ams = await store.report(_query(date(2026, 3, 28), date(2026, 3, 30),
                                        "Europe/Amsterdam", ("day",)))
    finally:
        await store.close()
    assert sorted((r["day"], r["attempts"]) for r in ny["figures"]) == [
        ("2026-10-31", 1), ("2026-11-01", 2), ("2026-11-02", 1)]
    assert sorted((r["day"], r["attempts"]) for r in ams["figures"]) == [
        ("2026-03-28", 1), ("2026-03-29", 2), ("2026-03-30", 1)]


async def test_quote_pipeline_counts_each_records_open_quote_once(db_url: str) -> None:
    """A record quoted twice counts at its latest quote; a quote followed by an order
    (won or lost) has left the pipeline; the orders count with their reasons."""
    q1 = {"q_value": 100.0, "q_chance": 50, "q_date": "2026-04-10"}
    q2 = {"q_value": 300.0, "q_chance": 20, "q_date": "2026-05-02"}
    spec = [(1, "QUOTE", q1), (1, "QUOTE", q2), (2, "QUOTE", q1),
            (2, "WON", {"o_value": 80.0, "why_won": "prijs"}), (3, "QUOTE", q1),
            (3, "LOST", {"why_lost": "timing"}), (4, "QUOTE", q1)]
    base = datetime(2026, 3, 2, 12, tzinfo=ZoneInfo("UTC")).timestamp()
    rows = [{"hid": k + 1, "rid": rid, "lid": k + 1, "at": base + 60 * k, "agent": "ann",
             "campaign": "sales", "code": code, "revenue": None, "fields": f}
            for k, (rid, code, f) in enumerate(spec)]
    store = await _store(db_url, rows, {r: "north" for r in (1, 2, 3, 4)})
    try:
        got = await store.report(_query(date(2026, 3, 1), date(2026, 3, 31), "UTC", ()))
    finally:
        await store.close()
    assert _norm(got) == _norm({
        "figures": [{"attempts": 7, "contacts": 7, "presentations": 7, "successes": 1,
                     "revenue": 0.0}],
        "quotes": [{"month": "2026-04", "count": 1, "value": 100.0, "weighted": 50.0},
                   {"month": "2026-05", "count": 1, "value": 300.0, "weighted": 60.0}],
        "orders": [{"outcome": "won", "reason": "prijs", "count": 1, "value": 80.0},
                   {"outcome": "lost", "reason": "timing", "count": 1, "value": 0.0}]})

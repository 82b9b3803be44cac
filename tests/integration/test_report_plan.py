"""SQLite reads a report's rows in the order it groups them (``storage/reports_sqlite.py``):
the first grouping of every report is a range of ``ix_history_day_report`` with no
temporary B-tree (no row is sorted), and the rows of a quote, won or lost code are found
by seeks. The plans are checked without the planner's statistics and with them (the
daemon refreshes them at a clean stop), and the answers stay those of the Python
recomputation with the statistics too: SQLite 3.40 answers a join into an index on an
expression wrongly once it has statistics, which is why the day is a stored column."""

from __future__ import annotations

import dataclasses
import itertools
import re
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from nextcall.core.reports import GROUPS, CodeFacts, ReportQuery, tally
from nextcall.storage import reports as R
from nextcall.storage import sql as S
from tests.integration.test_report_sql import CODES, _history, _norm, _query, _store

PLAN_QUERIES = [
    *[(g, {}) for g in itertools.chain.from_iterable(
        itertools.combinations(GROUPS, k) for k in (0, 1, 2, 3))],
    (("campaign", "list", "agent", "code", "day"), {}),
    (("day",), {"campaign": "sales"}),
    (("agent", "day"), {"list_name": "north"}),
    (("code",), {"agent": "bob", "list_name": "south"}),
]


def _plan(con: sqlite3.Connection, sql: str, params: dict[str, Any]) -> list[tuple[int, int, str]]:
    names: list[str] = []

    def mark(m: re.Match[str]) -> str:
        names.append(m.group(1))
        return "?"
    text = re.sub(r"(?<!:):([A-Za-z_]\w*)", mark, sql)
    return [(r[0], r[1], r[3]) for r in
            con.execute("EXPLAIN QUERY PLAN " + text, [params[n] for n in names])]


def _subtree(plan: list[tuple[int, int, str]], head: str) -> list[str]:
    """The details of everything under the plan node ``head`` (``CO-ROUTINE l1``)."""
    (root,) = [i for i, _, d in plan if d == head]
    ids, out = {root}, []
    for i, parent, detail in plan:
        if parent in ids:
            ids.add(i)
            out.append(detail)
    return out


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    rows, lists = _history(1500, seed=5)
    store = await _store(f"sqlite+aiosqlite:///{tmp_path}/plan.sqlite", rows, lists)
    await store.close()
    return tmp_path / "plan.sqlite"


@pytest.mark.parametrize("stats", ["none", "limited", "full"])
@pytest.mark.parametrize("amended", [False, True])
async def test_the_first_grouping_reads_the_index_in_order(db: Path, stats: str,
                                                           amended: bool) -> None:
    con = sqlite3.connect(db)
    if stats != "none":
        con.execute("PRAGMA analysis_limit=1000" if stats == "limited" else "SELECT 1")
        con.execute("ANALYZE")
    try:
        for group_by, filters in PLAN_QUERIES:
            q = dataclasses.replace(
                _query(date(2026, 3, 1), date(2026, 11, 30), "America/New_York",
                       group_by, **filters), amended=amended)
            (figures, sql, params), (kinds, ksql, kparams) = R._statements("sqlite", q)
            first = _subtree(_plan(con, sql, params), "CO-ROUTINE l1")
            assert any(d.startswith("SEARCH h USING INDEX ix_history_day_report (day>? AND "
                                    "day<?)") for d in first), (group_by, first)
            assert not [d for d in first if "TEMP B-TREE" in d], (group_by, first)
            rows = _subtree(_plan(con, ksql, kparams), "MATERIALIZE kinds")
            assert "SEARCH h USING INDEX ix_history_day_report (day=? AND campaign=? AND " \
                   "code=?)" in rows, (group_by, rows)
    finally:
        con.close()


async def test_the_same_answers_with_statistics_and_many_codes(tmp_path: Path) -> None:
    """Statistics on a small history and many configured codes over a long range: the
    planner then puts a Bloom filter on the join of the codes into the index (checked,
    so this test keeps testing that case), and the answers are still those of the
    Python recomputation."""
    rows, lists = _history(400, seed=9)
    url = f"sqlite+aiosqlite:///{tmp_path}/stats.sqlite"
    await (await _store(url, rows, lists)).close()
    con = sqlite3.connect(tmp_path / "stats.sqlite")
    con.execute("ANALYZE")
    con.commit()
    many = (*CODES, *(CodeFacts(f"c{k}", f"X{k}", kind="won", reason="r")
                      for k in range(150)))
    store = S.SqlStore(url)
    await store.open()
    try:
        for group_by in [(), ("campaign",), ("day", "agent"), ("list", "code")]:
            q = dataclasses.replace(_query(date(2026, 1, 1), date(2026, 12, 31), "UTC",
                                           group_by), codes=many)
            got = await store.report(q)
            assert _norm(got) == _norm(tally(q, rows, lists)), group_by
            assert got["quotes"] and got["orders"]
        kinds = R._statements("sqlite", ReportQuery(
            q.lo, q.hi, "UTC", (), many, amended=False))[1]
        assert any("BLOOM FILTER ON h" in d for _, _, d in _plan(con, kinds[1], kinds[2]))
    finally:
        await store.close()
        con.close()

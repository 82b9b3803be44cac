"""`report` over a large contact history, on SQLite and on PostgreSQL.

    .venv/bin/python benchmarks/report.py [--rows 1000000] [--amendments 1000] [--reps 3]
        [--pg postgresql+asyncpg://postgres@127.0.0.1:5432/test] [--no-pg]

Fills a fresh database (migrated to the newest revision, so with the report indexes) with
``--rows`` dispositions spread over 30 days, 4 campaigns, 40 agents and 200,000 records in
8 lists, one in ten a quote or an order with its fields, and ``--amendments`` of them
replaced by an amendment a minute later (so every report leaves replaced rows out);
filling is not timed. Then times the store's report (``SqlStore.report``: the figures,
then the quote pipeline and orders) for a few requests, median of ``--reps``, and prints
a markdown table. The PostgreSQL database given is emptied first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))

from nextcall.core.calendar import day_bounds  # noqa: E402
from nextcall.core.reports import CodeFacts, ReportQuery  # noqa: E402
from nextcall.storage.sql import SqlStore  # noqa: E402

CAMPAIGNS = ("sales", "care", "renewals", "winback")
CODES = [
    *[CodeFacts(c, "NA") for c in CAMPAIGNS],
    *[CodeFacts(c, "NI", contact=True, presentation=True) for c in CAMPAIGNS],
    *[CodeFacts(c, "SALE", contact=True, presentation=True, success=True)
      for c in CAMPAIGNS],
    *[CodeFacts(c, "QUOTE", contact=True, presentation=True, kind="quote", value="v",
                chance="p", expected="d") for c in CAMPAIGNS],
    *[CodeFacts(c, "WON", contact=True, presentation=True, success=True, kind="won",
                value="v", reason="r") for c in CAMPAIGNS],
    *[CodeFacts(c, "LOST", contact=True, presentation=True, kind="lost", reason="r")
      for c in CAMPAIGNS],
]
WEIGHTS = {"NA": 55, "NI": 25, "SALE": 10, "QUOTE": 6, "WON": 2, "LOST": 2}
START = date(2027, 3, 1)  # 30 days across Europe's spring DST change (28 March)
T0 = day_bounds(START, START, "UTC")[0]
RECORDS = 200_000

#: an amendment replaces the disposition whose ``hid`` it names (rows are numbered in
#: the order they are loaded, from 1)
HIST_COLS = ("rid", "lid", "at", "agent", "campaign", "code", "phone", "note", "revenue",
             "fields", "callback", "state", "reason", "due_at", "attempts", "day", "list",
             "amends")
REC_COLS = ("rid", "id", "campaign", "list", "phones", "timezone", "priority", "data",
            "state", "reason", "due_at", "attempts", "owner", "team", "best_cp",
            "phone_idx", "callback", "imported_at", "updated_at")


def _fields(code: str, rnd: random.Random) -> str | None:
    if code == "QUOTE":
        return json.dumps({"v": round(rnd.uniform(100, 9000), 2), "p": rnd.choice(
            (10, 25, 50, 75)), "d": f"2027-{rnd.randint(4, 9):02d}-15"})
    if code in ("WON", "LOST"):
        return json.dumps({"v": round(rnd.uniform(100, 9000), 2),
                           "r": rnd.choice(("price", "service", "timing"))})
    return None


def history_rows(n: int) -> list[tuple[Any, ...]]:
    """``n`` history rows in time order (as the daemon appends them)."""
    rnd = random.Random(7)
    codes, weights = list(WEIGHTS), list(WEIGHTS.values())
    rows = []
    for lid in range(1, n + 1):
        code = rnd.choices(codes, weights)[0]
        at = T0 + (lid / n) * 30 * 86_400
        rid = rnd.randrange(1, RECORDS + 1)
        rows.append((rid, lid, at, f"agent{rnd.randrange(40)}",
                     rnd.choice(CAMPAIGNS), code, "+31612345678", None,
                     round(rnd.uniform(5, 50), 2) if code == "SALE" else None,
                     _fields(code, rnd), None, "ready", None, at, 1, int(at // 86400),
                     _list(rid), None))
    return rows


def amendments(rows: list[tuple[Any, ...]], k: int) -> list[tuple[Any, ...]]:
    """``k`` amendments of dispositions spread over the range, appended after ``rows``:
    each a minute after the one it replaces, with another code."""
    rnd = random.Random(11)
    out = []
    for hid in sorted(rnd.sample(range(1, len(rows) + 1), k)):
        old = rows[hid - 1]
        code = "SALE" if old[5] != "SALE" else "NI"
        row = dict(zip(HIST_COLS, old, strict=True))
        at = row["at"] + 60
        row.update(at=at, due_at=at, day=int(at // 86400), code=code, fields=None,
                   revenue=round(rnd.uniform(5, 50), 2) if code == "SALE" else None,
                   amends=hid)
        out.append(tuple(row[c] for c in HIST_COLS))
    return out


def _list(rid: int) -> str:
    return f"list{rid % 8}"


def record_rows() -> list[tuple[Any, ...]]:
    return [(rid, f"r{rid}", CAMPAIGNS[rid % 4], _list(rid),
             '[["+31612345678","active"]]', "Europe/Amsterdam", 0, "{}", "ready", None,
             0.0, 0, None, None, 0, 0, None, 0.0, 0.0) for rid in range(1, RECORDS + 1)]


def queries() -> list[tuple[str, ReportQuery]]:
    lo, hi = day_bounds(START, date(2027, 3, 30), "Europe/Amsterdam")
    codes = tuple(CODES)

    def q(groups: tuple[str, ...], **kw: Any) -> ReportQuery:
        return ReportQuery(lo, hi, "Europe/Amsterdam", groups, codes, **kw)

    return [("30 days by campaign", q(("campaign",))),
            ("30 days by day and agent", q(("day", "agent"))),
            ("30 days by list and code", q(("list", "code"))),
            ("30 days, one campaign, by day", q(("day",), campaign="sales"))]


async def fill(store: SqlStore, hist: list[tuple[Any, ...]],
               recs: list[tuple[Any, ...]]) -> None:
    """Bulk-load the rows outside the daemon's writer (not timed)."""
    if store.dialect == "sqlite":
        path = store.sqlite_path
        assert path is not None
        con = sqlite3.connect(path)
        con.executemany(f"INSERT INTO records ({','.join(REC_COLS)}) VALUES "
                        f"({','.join('?' * len(REC_COLS))})",
                        recs)
        con.executemany(f"INSERT INTO history ({','.join(HIST_COLS)}) VALUES "
                        f"({','.join('?' * len(HIST_COLS))})", hist)
        con.commit()
        con.execute("ANALYZE")
        con.close()
        return
    import asyncpg
    dsn = store.url.replace("postgresql+asyncpg", "postgresql")
    con = await asyncpg.connect(dsn)
    try:
        await con.copy_records_to_table("records", records=recs, columns=list(REC_COLS))
        await con.copy_records_to_table("history", records=hist, columns=list(HIST_COLS))
        await con.execute("VACUUM ANALYZE history")
        await con.execute("ANALYZE records")
    finally:
        await con.close()


async def empty_pg(url: str) -> None:
    import asyncpg
    con = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await con.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await con.close()


async def measure(url: str, hist: list[tuple[Any, ...]], recs: list[tuple[Any, ...]],
                  reps: int) -> list[tuple[str, float, int]]:
    store = SqlStore(url)
    await store.open()
    try:
        await store.migrate()
        await fill(store, hist, recs)
        out = []
        for name, q in queries():
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                got = await store.report(q)
                times.append(time.perf_counter() - t)
            out.append((name, statistics.median(times), len(got["figures"])))
        return out
    finally:
        await store.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--pg", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--amendments", type=int, default=1000,
                    help="dispositions replaced by an amendment (default 1000)")
    args = ap.parse_args()
    hist, recs = history_rows(args.rows), record_rows()
    hist += amendments(hist, args.amendments)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = await measure(f"sqlite+aiosqlite:///{tmp}/report.db", hist,
                                          recs, args.reps)
    if not args.no_pg:
        await empty_pg(args.pg)
        results["PostgreSQL"] = await measure(args.pg, hist, recs, args.reps)
    print(f"{args.rows:,} history rows and {args.amendments:,} amendments, "
          f"median of {args.reps}\n")
    print("| report | groups | " + " | ".join(results) + " |")
    print("|---|---|" + "---|" * len(results))
    for k, (name, _, groups) in enumerate(results["SQLite"]):
        cells = " | ".join(f"{r[k][1]:.2f} s" for r in results.values())
        print(f"| {name} | {groups} | {cells} |")


if __name__ == "__main__":
    asyncio.run(main())

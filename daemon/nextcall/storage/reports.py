"""Reports in SQL, on SQLite and PostgreSQL: grouped queries over common table
expressions, so the database does the counting and only the groups travel. Two
statements per report: the figures, and the quote pipeline with the orders.

- ``codes``: what each campaign's result code counts as (contact, presentation, success,
  quote/won/lost and which field carries the value, chance, expected date and reason),
  from the config, as bound VALUES.
- figures: the counted rows grouped by the report's groups and (campaign, code) first,
  then joined to ``codes``: the facts are joined to a few groups, not to every row.
- quotes and orders: the counted rows whose code is a quote, won or lost, read once
  (``kinds``), with the code's field names; both parts come from them in one statement.

A row's list is ``history.list`` (the record's list when the row was written, migration
0010), so no record row is read. PostgreSQL groups by hashing, over a range of
``ix_history_at_report`` (the instant first, covering the figures) or of the table; a
local day is the instant shifted by the zone's offset at that instant, to the day (the
offset from a CASE over its changes in the range, ``core.calendar.offset_steps``), so
days are exact across DST. SQLite has no hash aggregation: its SQL
(``storage/reports_sqlite.py``) reads the range of days from an index ordered the way the
report groups, so no row is sorted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..core.calendar import offset_steps
from ..core.reports import ReportQuery
from . import reports_sqlite
from .current import CURRENT_WHERE
from .report_sql import (
    codes_cte,
    figures_tail,
    filters,
    kinds_tail,
    local_offset,
    split_kinds,
)

# ---------------------------------------------------------------- PostgreSQL

def _pg_rows(q: ReportQuery, params: dict[str, Any]) -> str:
    """The history rows a report counts: dispositions (rows with a lease; reopenings and
    scheduled callbacks have none) in the range, filtered, in their latest version: a
    row an amendment replaced is left out (``current.CURRENT_WHERE``)."""
    where = ["h.at >= :lo", "h.at < :hi", "h.lid IS NOT NULL", *filters(q, params)]
    if q.amended:
        where.append(CURRENT_WHERE)
    params.update(lo=q.lo, hi=q.hi)
    return ('SELECT h.hid, h.rid, h.at, h.agent, h.campaign, h.code, h."list", '
            f"h.revenue, h.fields FROM history h WHERE {' AND '.join(where)}")


def _pg_figures(q: ReportQuery, params: dict[str, Any]) -> str:
    keys = ["cur.campaign", "cur.code"]
    if "list" in q.group_by:
        keys.append('cur."list" AS list')
    if "agent" in q.group_by:
        keys.append("cur.agent")
    if "day" in q.group_by:
        # the local day number: the instant shifted by the zone's offset at that instant
        # (an integer to hash, rather than converting every row to a local date)
        offset = local_offset("cur.at", offset_steps(q.timezone, q.lo, q.hi))
        keys.append(f"CAST(floor((cur.at + {offset}) / 86400) AS INTEGER) AS day")
    by = ", ".join(str(k + 1) for k in range(len(keys)))
    return (f"WITH {codes_cte(q, params)}, cur AS ({_pg_rows(q, params)}), "
            f"agg AS (SELECT {', '.join(keys)}, COUNT(*) AS n, "
            f"SUM(COALESCE(cur.revenue, 0)) AS rev FROM cur GROUP BY {by}) "
            + figures_tail(q, "to_char(DATE '1970-01-01' + a.day, 'YYYY-MM-DD')"))


def _pg_kind_rows(q: ReportQuery, params: dict[str, Any]) -> str:
    """``kr`` and ``kinds``: the counted rows whose code is a quote, won or lost (the codes
    are narrowed first, so few rows are joined), with the code's field names."""
    names = sorted({c.code for c in q.codes if c.kind is not None})
    params.update({f"k{i}": code for i, code in enumerate(names)})
    listed = ", ".join(f":k{i}" for i in range(len(names)))
    # materialized: the few rows with such a code are picked in one pass over the range,
    # before the join (joined first, the range would be scanned once per code)
    return (f"cur AS ({_pg_rows(q, params)}), "
            "kr AS MATERIALIZED (SELECT cur.hid, cur.rid, cur.at, cur.campaign, cur.code, "
            f"cur.fields FROM cur WHERE cur.code IN ({listed})), "
            "kinds AS MATERIALIZED (SELECT kr.hid, kr.rid, kr.at, kr.fields, c.kind, "
            "c.f_value, c.f_chance, c.f_expected, c.f_reason FROM kr JOIN codes c "
            "ON c.campaign = kr.campaign AND c.code = kr.code WHERE c.kind IS NOT NULL)")


def _statements(dialect: str, q: ReportQuery) -> list[tuple[str, str, dict[str, Any]]]:
    """(part, SQL, parameters) of each statement of the report: ``figures``, and
    ``kinds`` (quotes and orders) when a code is a quote, won or lost."""
    params: dict[str, Any] = {}
    if dialect == "sqlite":
        figures = reports_sqlite.figures(q, params, codes_cte(q, params))
    else:
        figures = _pg_figures(q, params)
    out = [("figures", figures, params)]
    if any(c.kind is not None for c in q.codes):
        params = {}
        codes = codes_cte(q, params)
        rows = (reports_sqlite.kind_rows(q, params) if dialect == "sqlite"
                else _pg_kind_rows(q, params))
        out.append(("kinds", f"WITH {codes}, {rows}, {kinds_tail(dialect)}", params))
    return out


async def run_report(conn: AsyncConnection, dialect: str, q: ReportQuery
                     ) -> dict[str, list[dict[str, Any]]]:
    """``figures`` (per group, without rates), ``quotes`` (by expected month) and
    ``orders`` (by outcome and reason), as ``core.reports.tally`` answers them."""
    out: dict[str, list[dict[str, Any]]] = {"quotes": [], "orders": []}
    # an amendment comes after the row it replaces: none at or after the range's start,
    # none replaced in it (an index probe spares the check of every row in the range)
    amended = (await conn.execute(text(
        "SELECT 1 FROM history WHERE amends > 0 AND +at >= :lo LIMIT 1"),
        {"lo": q.lo})).first() is not None
    q = dataclasses.replace(q, amended=amended)
    for part, sql, params in _statements(dialect, q):
        rows = [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]
        if part == "kinds":
            out.update(split_kinds(rows))
        else:
            out[part] = rows
    if not q.group_by and out["figures"] and not out["figures"][0]["attempts"]:
        out["figures"] = []
    return out

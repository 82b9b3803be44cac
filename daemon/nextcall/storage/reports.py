"""Reports in SQL, on SQLite and PostgreSQL: grouped queries over common table
expressions, so the database does the counting and only the groups travel.

- ``codes``: what each campaign's result code counts as (contact, presentation, success,
  quote/won/lost and which field carries the value, chance, expected date and reason),
  from the config, as bound VALUES.
- ``cur``: the history rows that count (``current_rows``), in the range, filtered.
- figures: ``cur`` grouped by the report's groups and (campaign, code) first, then joined
  to ``codes``: the facts are joined to a few groups, not to every row.
- quotes and orders: only the rows whose code is a quote, won or lost are joined.

A local day is the UTC instant shifted by the zone's offset at that instant: PostgreSQL
converts with ``AT TIME ZONE``; SQLite, which has no zone database, adds the offset from a
CASE over the zone's offset changes within the range (``core.calendar.offset_steps``), so
days are exact across DST. The index ``ix_history_at_report`` (migration 0009) covers
every column the figures read, so they are computed from the index alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..core.calendar import offset_steps
from ..core.reports import ReportQuery
from .current import CURRENT_WHERE

_FACT_COLS = ("campaign", "code", "contact", "presentation", "success", "kind", "f_value",
              "f_chance", "f_expected", "f_reason")
_FACT_TYPES = ("VARCHAR", "VARCHAR", "INTEGER", "INTEGER", "INTEGER", "VARCHAR", "VARCHAR",
               "VARCHAR", "VARCHAR", "VARCHAR")


def current_rows(q: ReportQuery, params: dict[str, Any]) -> str:
    """The history rows a report counts: dispositions (rows with a lease; reopenings and
    scheduled callbacks have none) in the range, filtered, in their latest version: a
    row an amendment replaced is left out (``current.CURRENT_WHERE``)."""
    where = ["h.at >= :lo", "h.at < :hi", "h.lid IS NOT NULL"]
    if q.amended:
        where.append(CURRENT_WHERE)
    params.update(lo=q.lo, hi=q.hi)
    for col in ("campaign", "agent"):
        value = getattr(q, col)
        if value is not None:
            where.append(f"h.{col} = :f_{col}")
            params[f"f_{col}"] = value
    return ("SELECT h.hid, h.rid, h.at, h.agent, h.campaign, h.code, h.revenue, h.fields "
            f"FROM history h WHERE {' AND '.join(where)}")


def _codes(q: ReportQuery, params: dict[str, Any]) -> str:
    rows = []
    facts = [(c.campaign, c.code, int(c.contact), int(c.presentation), int(c.success),
              c.kind, c.value, c.chance, c.expected, c.reason) for c in q.codes]
    for i, values in enumerate(facts or [(None,) * len(_FACT_COLS)]):
        cells = []
        for col, typ, v in zip(_FACT_COLS, _FACT_TYPES, values, strict=True):
            params[f"c{i}_{col}"] = v
            cells.append(f"CAST(:c{i}_{col} AS {typ})")
        rows.append(f"({', '.join(cells)})")
    return f"codes({', '.join(_FACT_COLS)}) AS (VALUES {', '.join(rows)})"


def _day_number(dialect: str, q: ReportQuery, params: dict[str, Any]) -> str:
    """Per row: the local day, as cheap to group by as possible (SQLite: a day number,
    the UTC instant shifted by the zone's offset at that instant; PostgreSQL: the date)."""
    if dialect == "postgresql":
        params["tz"] = q.timezone
        return "to_char(to_timestamp(cur.at) AT TIME ZONE :tz, 'YYYY-MM-DD')"
    steps = offset_steps(q.timezone, q.lo, q.hi)
    offset = str(steps[0][1])
    if len(steps) > 1:
        whens = " ".join(f"WHEN cur.at < {start!r} THEN {prev}"
                         for (start, _), (_, prev) in zip(steps[1:], steps, strict=False))
        offset = f"(CASE {whens} ELSE {steps[-1][1]} END)"
    return f"CAST((cur.at + {offset}) / 86400 AS INTEGER)"


def _day_text(dialect: str) -> str:
    """Per group: the day number (or date) of ``_day_number`` as ``YYYY-MM-DD``."""
    return "a.day" if dialect == "postgresql" else "date(a.day * 86400, 'unixepoch')"


def _json(dialect: str, field_col: str) -> str:
    """The text of the field the column ``field_col`` names, from the row's fields."""
    if dialect == "postgresql":
        return f"(CAST(b.fields AS jsonb) ->> b.{field_col})"
    return f"json_extract(b.fields, '$.' || b.{field_col})"


def _number(dialect: str, field_col: str) -> str:
    return f"COALESCE(CAST({_json(dialect, field_col)} AS DOUBLE PRECISION), 0)"


def _grouped(dialect: str, q: ReportQuery, params: dict[str, Any]) -> str:
    """``agg``: the counted rows grouped by the report's groups and by (campaign, code),
    so the code facts are joined to a few groups rather than to every row."""
    joins, keys = "", ["cur.campaign", "cur.code"]
    if "list" in q.group_by or q.list_name is not None:
        joins = " JOIN records r ON r.rid = cur.rid"
        if q.list_name is not None:
            joins += " AND r.list = :f_list"
            params["f_list"] = q.list_name
        if "list" in q.group_by:
            keys.append("r.list AS list")
    if "agent" in q.group_by:
        keys.append("cur.agent")
    if "day" in q.group_by:
        keys.append(f"{_day_number(dialect, q, params)} AS day")
    cols = ", ".join(keys)
    by = ", ".join(str(k + 1) for k in range(len(keys)))
    return (f"agg AS (SELECT {cols}, COUNT(*) AS n, SUM(COALESCE(cur.revenue, 0)) AS rev "
            f"FROM cur{joins} GROUP BY {by})")


def _figures_sql(dialect: str, q: ReportQuery, params: dict[str, Any]) -> str:
    outer = {"campaign": "a.campaign", "code": "a.code", "list": "a.list",
             "agent": "a.agent", "day": _day_text(dialect)}
    cols = ", ".join(f"{outer[g]} AS {g}" for g in q.group_by)
    head = f"{cols}, " if cols else ""
    by = ", ".join(str(k + 1) for k in range(len(q.group_by)))
    tail = f" GROUP BY {by}" if by else ""
    return (f"WITH {_codes(q, params)}, cur AS ({current_rows(q, params)}), "
            f"{_grouped(dialect, q, params)} "
            f"SELECT {head}SUM(a.n) AS attempts, SUM(a.n * COALESCE(c.contact, 0)) AS "
            "contacts, SUM(a.n * COALESCE(c.presentation, 0)) AS presentations, "
            "SUM(a.n * COALESCE(c.success, 0)) AS successes, SUM(a.rev) AS revenue "
            "FROM agg a LEFT JOIN codes c ON c.campaign = a.campaign AND c.code = a.code"
            f"{tail}")


def _kind_rows(q: ReportQuery, params: dict[str, Any]) -> str:
    """``WITH codes, cur, b``: the counted rows whose code is a quote, won or lost, with
    the code's field names (the codes are narrowed first, so few rows are joined)."""
    names = sorted({c.code for c in q.codes if c.kind is not None})
    params.update({f"k{i}": code for i, code in enumerate(names)})
    listed = ", ".join(f":k{i}" for i in range(len(names)))
    joins = ""
    if q.list_name is not None:
        joins = " JOIN records r ON r.rid = cur.rid AND r.list = :f_list"
        params["f_list"] = q.list_name
    # materialized: the few rows with such a code are picked in one pass over the range,
    # before the join (joined first, the range would be scanned once per code)
    return (f"WITH {_codes(q, params)}, cur AS ({current_rows(q, params)}), "
            "kr AS MATERIALIZED (SELECT cur.hid, cur.rid, cur.at, cur.campaign, cur.code, "
            f"cur.fields FROM cur{joins} WHERE cur.code IN ({listed})), "
            "b AS (SELECT kr.hid, kr.rid, kr.at, kr.fields, c.kind, c.f_value, c.f_chance, "
            "c.f_expected, c.f_reason FROM kr JOIN codes c ON c.campaign = kr.campaign "
            "AND c.code = kr.code WHERE c.kind IS NOT NULL)")


def _quotes_sql(dialect: str, q: ReportQuery, params: dict[str, Any]) -> str:
    """Each record's latest quote, won or lost row in the range; the quotes among them
    (the quotes still open at the end of the range) by expected month."""
    expected = f"substr({_json(dialect, 'f_expected')}, 1, 7)"
    return (_kind_rows(q, params) +
            ", k AS (SELECT b.*, ROW_NUMBER() OVER (PARTITION BY b.rid "
            "ORDER BY b.at DESC, b.hid DESC) AS n FROM b), "
            f"v AS (SELECT {expected} AS month, {_number(dialect, 'f_value')} AS value, "
            f"{_number(dialect, 'f_chance')} AS chance FROM k b "
            "WHERE b.n = 1 AND b.kind = 'quote') "
            "SELECT month, COUNT(*) AS count, SUM(value) AS value, "
            "SUM(value * chance / 100.0) AS weighted FROM v GROUP BY month")


def _orders_sql(dialect: str, q: ReportQuery, params: dict[str, Any]) -> str:
    return (_kind_rows(q, params) +
            f", o AS (SELECT b.kind AS outcome, {_json(dialect, 'f_reason')} AS reason, "
            f"{_number(dialect, 'f_value')} AS value FROM b "
            "WHERE b.kind IN ('won', 'lost')) "
            "SELECT outcome, reason, COUNT(*) AS count, SUM(value) AS value FROM o "
            "GROUP BY outcome, reason")


async def run_report(conn: AsyncConnection, dialect: str, q: ReportQuery
                     ) -> dict[str, list[dict[str, Any]]]:
    """``figures`` (per group, without rates), ``quotes`` (by expected month) and
    ``orders`` (by outcome and reason), as ``core.reports.tally`` answers them."""
    out: dict[str, list[dict[str, Any]]] = {"quotes": [], "orders": []}
    # an amendment comes after the row it replaces: none at or after the range's start,
    # none replaced in it (an index probe spares one probe per row in the range)
    amended = (await conn.execute(text(
        "SELECT 1 FROM history WHERE amends > 0 AND +at >= :lo LIMIT 1"),
        {"lo": q.lo})).first() is not None
    q = dataclasses.replace(q, amended=amended)
    parts = [("figures", _figures_sql)]
    if any(c.kind is not None for c in q.codes):
        parts += [("quotes", _quotes_sql), ("orders", _orders_sql)]
    for name, build in parts:
        params: dict[str, Any] = {}
        sql = build(dialect, q, params)
        rows = (await conn.execute(text(sql), params)).mappings().all()
        out[name] = [dict(r) for r in rows]
    if not q.group_by and out["figures"] and not out["figures"][0]["attempts"]:
        out["figures"] = []
    return out

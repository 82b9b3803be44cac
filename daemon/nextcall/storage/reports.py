"""Reports in SQL, on SQLite and PostgreSQL: three grouped queries over one common table
expression, so the database does the counting and only the groups travel.

- ``codes``: what each campaign's result code counts as (contact, presentation, success,
  quote/won/lost and which field carries the value, chance, expected date and reason),
  from the config, as bound VALUES.
- ``cur``: the history rows that count (``current_rows``), in the range, filtered.
- ``base``: ``cur`` with its code's facts, and its list and local day when asked for.

A local day is the UTC instant shifted by the zone's offset at that instant: PostgreSQL
converts with ``AT TIME ZONE``; SQLite, which has no zone database, adds the offset from a
CASE over the zone's offset changes within the range (``core.reports.offset_steps``), so
days are exact across DST. Indexes ``ix_history_at_report`` (covering the figures) and
``ix_history_campaign_at`` (migration 0007) serve the range and the campaign filter.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..core.calendar import offset_steps
from ..core.reports import ReportQuery

_FACT_COLS = ("campaign", "code", "contact", "presentation", "success", "kind", "f_value",
              "f_chance", "f_expected", "f_reason")
_FACT_TYPES = ("VARCHAR", "VARCHAR", "INTEGER", "INTEGER", "INTEGER", "VARCHAR", "VARCHAR",
               "VARCHAR", "VARCHAR", "VARCHAR")


def current_rows(q: ReportQuery, params: dict[str, Any]) -> str:
    """The history rows a report counts: dispositions (rows with a lease; reopenings and
    scheduled callbacks have none) in the range, filtered. Amendments plug in here, and
    only here: a superseded version of a disposition is left out by one more condition."""
    where = ["h.at >= :lo", "h.at < :hi", "h.lid IS NOT NULL"]
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


def _local_day(dialect: str, q: ReportQuery, params: dict[str, Any]) -> str:
    if dialect == "postgresql":
        params["tz"] = q.timezone
        return "to_char(to_timestamp(cur.at) AT TIME ZONE :tz, 'YYYY-MM-DD')"
    steps = offset_steps(q.timezone, q.lo, q.hi)
    offset = str(steps[0][1])
    if len(steps) > 1:
        whens = " ".join(f"WHEN cur.at < {start!r} THEN {prev}"
                         for (start, _), (_, prev) in zip(steps[1:], steps, strict=False))
        offset = f"(CASE {whens} ELSE {steps[-1][1]} END)"
    return f"date(cur.at + {offset}, 'unixepoch')"


def _json(dialect: str, field_col: str) -> str:
    """The text of the field the column ``field_col`` names, from the row's fields."""
    if dialect == "postgresql":
        return f"(CAST(b.fields AS jsonb) ->> b.{field_col})"
    return f"json_extract(b.fields, '$.' || b.{field_col})"


def _number(dialect: str, field_col: str) -> str:
    return f"COALESCE(CAST({_json(dialect, field_col)} AS DOUBLE PRECISION), 0)"


def _prefix(dialect: str, q: ReportQuery, params: dict[str, Any]) -> str:
    """``WITH codes, cur, base``: the rows of the report with what they count as."""
    joins, extra = "", ""
    if "list" in q.group_by or q.list_name is not None:
        joins = " JOIN records r ON r.rid = cur.rid"
        extra = ", r.list AS list"
        if q.list_name is not None:
            joins += " AND r.list = :f_list"
            params["f_list"] = q.list_name
    if "day" in q.group_by:
        extra += f", {_local_day(dialect, q, params)} AS day"
    return (f"WITH {_codes(q, params)}, cur AS ({current_rows(q, params)}), "
            "base AS (SELECT cur.*, COALESCE(c.contact, 0) AS contact, "
            "COALESCE(c.presentation, 0) AS presentation, COALESCE(c.success, 0) AS "
            "success, c.kind, c.f_value, c.f_chance, c.f_expected, c.f_reason"
            f"{extra} FROM cur{joins} LEFT JOIN codes c ON c.campaign = cur.campaign "
            "AND c.code = cur.code) ")


def _figures_sql(dialect: str, q: ReportQuery, params: dict[str, Any]) -> str:
    cols = ", ".join(q.group_by)
    head = f"{cols}, " if cols else ""
    tail = f" GROUP BY {cols} ORDER BY {cols}" if cols else ""
    return (_prefix(dialect, q, params) +
            f"SELECT {head}COUNT(*) AS attempts, SUM(contact) AS contacts, "
            "SUM(presentation) AS presentations, SUM(success) AS successes, "
            f"SUM(COALESCE(revenue, 0)) AS revenue FROM base{tail}")


def _quotes_sql(dialect: str, q: ReportQuery, params: dict[str, Any]) -> str:
    """Each record's latest quote, won or lost row in the range; the quotes among them
    (the quotes still open at the end of the range) by expected month."""
    expected = f"substr({_json(dialect, 'f_expected')}, 1, 7)"
    return (_prefix(dialect, q, params) +
            ", k AS (SELECT b.*, ROW_NUMBER() OVER (PARTITION BY b.rid "
            "ORDER BY b.at DESC, b.hid DESC) AS n FROM base b WHERE b.kind IS NOT NULL), "
            f"v AS (SELECT {expected} AS month, {_number(dialect, 'f_value')} AS value, "
            f"{_number(dialect, 'f_chance')} AS chance FROM k b "
            "WHERE b.n = 1 AND b.kind = 'quote') "
            "SELECT month, COUNT(*) AS count, SUM(value) AS value, "
            "SUM(value * chance / 100.0) AS weighted FROM v GROUP BY month ORDER BY month")


def _orders_sql(dialect: str, q: ReportQuery, params: dict[str, Any]) -> str:
    return (_prefix(dialect, q, params) +
            f", o AS (SELECT b.kind AS outcome, {_json(dialect, 'f_reason')} AS reason, "
            f"{_number(dialect, 'f_value')} AS value FROM base b "
            "WHERE b.kind IN ('won', 'lost')) "
            "SELECT outcome, reason, COUNT(*) AS count, SUM(value) AS value FROM o "
            "GROUP BY outcome, reason ORDER BY outcome DESC, reason")


async def run_report(conn: AsyncConnection, dialect: str, q: ReportQuery
                     ) -> dict[str, list[dict[str, Any]]]:
    """``figures`` (per group, without rates), ``quotes`` (by expected month) and
    ``orders`` (by outcome and reason), as ``core.reports.tally`` answers them."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, build in (("figures", _figures_sql), ("quotes", _quotes_sql),
                        ("orders", _orders_sql)):
        params: dict[str, Any] = {}
        sql = build(dialect, q, params)
        rows = (await conn.execute(text(sql), params)).mappings().all()
        out[name] = [dict(r) for r in rows]
    if not q.group_by and out["figures"] and not out["figures"][0]["attempts"]:
        out["figures"] = []
    return out

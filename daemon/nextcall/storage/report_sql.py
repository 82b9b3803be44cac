"""The parts of a report's SQL both backends share (``storage/reports.py`` puts them
together): the code facts as VALUES, the request's filters, the figures from their
grouped rows, and the quote pipeline and orders from the rows of a quote, won or lost
code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.reports import ReportQuery

_FACT_COLS = ("campaign", "code", "contact", "presentation", "success", "kind", "f_value",
              "f_chance", "f_expected", "f_reason")
_FACT_TYPES = ("VARCHAR", "VARCHAR", "INTEGER", "INTEGER", "INTEGER", "VARCHAR", "VARCHAR",
               "VARCHAR", "VARCHAR", "VARCHAR")


def codes_cte(q: ReportQuery, params: dict[str, Any]) -> str:
    """``codes``: what each campaign's result code counts as (contact, presentation,
    success, quote/won/lost and which field carries the value, chance, expected date and
    reason), from the config, as bound VALUES."""
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


def filters(q: ReportQuery, params: dict[str, Any], prefix: str = "") -> list[str]:
    """The request's campaign, agent and list filters on ``history AS h``. ``prefix``
    ``+`` (SQLite) keeps SQLite from taking a filtered column for a constant of the index
    order, which would make it sort the rows it could group as they come."""
    where = []
    for col, value in (("campaign", q.campaign), ("agent", q.agent), ("list", q.list_name)):
        if value is not None:
            where.append(f'{prefix}h."{col}" = :f_{col}')
            params[f"f_{col}"] = value
    return where


def local_offset(at: str, steps: list[tuple[float, int]],
                 value: Callable[[int], int] | None = None) -> str:
    """SQL: ``value(offset)`` (the offset itself by default), for the zone's offset at
    instant ``at``, from its offset changes ``steps`` (``core.calendar.offset_steps``):
    a constant, or a CASE over the changes."""
    def of(off: int) -> int:
        return off if value is None else value(off)
    if len(steps) == 1:
        return str(of(steps[0][1]))
    whens = " ".join(f"WHEN {at} < {start!r} THEN {of(prev)}"
                     for (start, _), (_, prev) in zip(steps[1:], steps, strict=False))
    return f"(CASE {whens} ELSE {of(steps[-1][1])} END)"


def figures_tail(q: ReportQuery, day: str) -> str:
    """The figures from ``agg`` (the counted rows by campaign, code and the report's
    groups, with their count ``n`` and revenue ``rev``): joined to ``codes``, so the facts
    are joined to a few groups rather than to every row, then grouped by the report's
    groups. ``day`` is the text of the day of ``a.day``."""
    outer = {"campaign": "a.campaign", "code": "a.code", "list": "a.list",
             "agent": "a.agent", "day": day}
    cols = ", ".join(f"{outer[g]} AS {g}" for g in q.group_by)
    head = f"{cols}, " if cols else ""
    by = ", ".join(str(k + 1) for k in range(len(q.group_by)))
    tail = f" GROUP BY {by}" if by else ""
    return (f"SELECT {head}SUM(a.n) AS attempts, SUM(a.n * COALESCE(c.contact, 0)) AS "
            "contacts, SUM(a.n * COALESCE(c.presentation, 0)) AS presentations, "
            "SUM(a.n * COALESCE(c.success, 0)) AS successes, SUM(a.rev) AS revenue "
            "FROM agg a LEFT JOIN codes c ON c.campaign = a.campaign AND c.code = a.code"
            f"{tail}")


def _json(dialect: str, field_col: str) -> str:
    """The text of the field the column ``b.field_col`` names, from the row's fields
    (``b.fields`` on PostgreSQL; on SQLite ``h.fields``, the row read from the table)."""
    if dialect == "postgresql":
        return f"(CAST(b.fields AS jsonb) ->> b.{field_col})"
    return f"json_extract(h.fields, '$.' || b.{field_col})"


def _number(dialect: str, field_col: str) -> str:
    return f"COALESCE(CAST({_json(dialect, field_col)} AS DOUBLE PRECISION), 0)"


def _read(dialect: str, rows: str) -> str:
    """``rows`` as ``b``, with their fields; on SQLite read from the table in ``hid``
    order (the table's order: each page is read once, not once per row on it)."""
    if dialect == "postgresql":
        return f"(SELECT * FROM {rows}) b"
    return f"(SELECT * FROM {rows} ORDER BY hid) b JOIN history h ON h.hid = b.hid"


def kinds_tail(dialect: str) -> str:
    """After ``WITH codes, ..., kinds`` (the counted rows of a quote, won or lost
    code, with ``hid``, ``rid``, ``at``, the code's ``kind`` and field names and, on
    PostgreSQL, ``fields``), both parts, one row per group, told apart by ``part``:

    - ``quote``: ``k1`` the expected month. Each record's latest quote, won or lost row in
      the range, when it is a quote: the quotes still open at the end of the range.
    - ``order``: ``k1`` won or lost, ``k2`` the reason; every such row.

    On SQLite ``kinds`` comes from an index alone, so the ranking sorts narrow rows, and
    only the rows counted read their fields from the table, in ``hid`` order."""
    fields = "b.fields, " if dialect == "postgresql" else ""
    expected = f"substr({_json(dialect, 'f_expected')}, 1, 7)"
    quotes = _read(dialect, "k WHERE n = 1 AND kind = 'quote'")
    orders = _read(dialect, "kinds WHERE kind IN ('won', 'lost')")
    return (f"k AS (SELECT b.hid, {fields}b.kind, b.f_value, b.f_chance, b.f_expected, "
            "ROW_NUMBER() OVER (PARTITION BY b.rid ORDER BY b.at DESC, b.hid DESC) AS n "
            "FROM kinds b), "
            f"v AS (SELECT {expected} AS month, {_number(dialect, 'f_value')} AS value, "
            f"{_number(dialect, 'f_chance')} AS chance "
            f"FROM {quotes}), "
            f"o AS (SELECT b.kind AS outcome, {_json(dialect, 'f_reason')} AS reason, "
            f"{_number(dialect, 'f_value')} AS value "
            f"FROM {orders}) "
            "SELECT * FROM (SELECT 'quote' AS part, month AS k1, CAST(NULL AS VARCHAR) AS k2, "
            "COUNT(*) AS count, SUM(value) AS value, SUM(value * chance / 100.0) AS weighted "
            "FROM v GROUP BY month) AS q UNION ALL SELECT * FROM (SELECT 'order' AS part, "
            "outcome AS k1, reason AS k2, COUNT(*) AS count, SUM(value) AS value, "
            "CAST(NULL AS DOUBLE PRECISION) AS weighted FROM o GROUP BY outcome, reason) AS r")


def split_kinds(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rows of ``kinds_tail`` as ``quotes`` and ``orders``."""
    quotes = [{"month": r["k1"], "count": r["count"], "value": r["value"],
               "weighted": r["weighted"]} for r in rows if r["part"] == "quote"]
    orders = [{"outcome": r["k1"], "reason": r["k2"], "count": r["count"],
               "value": r["value"]} for r in rows if r["part"] == "order"]
    return {"quotes": quotes, "orders": orders}

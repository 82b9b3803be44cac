"""A report's rows on SQLite, read in the order they are grouped, so no row is sorted.

SQLite groups with a sorter (it has no hash aggregation), which costs about a microsecond
per row: most of a report over a million rows. ``ix_history_day_report`` (migration 0010)
holds the dispositions ordered by UTC day number (``history.day``), campaign, code, agent
and list, with the instant, the revenue and the record. A range of days is one range of
that index, and grouping by the day and a prefix of those columns follows the index
order: SQLite adds up each group as its rows come (``EXPLAIN QUERY PLAN`` shows no
temporary B-tree for it). Then the groups, far fewer than the rows, are regrouped as the
report asks.

**Local days.** A local day is not a UTC day, but as the zone's offset is under a day,
a row of UTC day ``u`` is in local day ``u - 1``, ``u`` or ``u + 1``. The first grouping
counts each group's rows per shift, from the time of day (``at % 86400``) against the
local midnight, with the zone's offset at that instant (a CASE over its offset changes
in the range, ``core.calendar.offset_steps``), then splits each group into its local
days: exact across DST and for any offset. Instants before 1970 are not handled."""

from __future__ import annotations

import math
from typing import Any

from ..core.calendar import offset_steps
from ..core.reports import ReportQuery
from .current import CURRENT_SCAN_WHERE
from .report_sql import figures_tail, filters, local_offset

#: the UTC day number of a row (``history.day``, migration 0010)
DAY = "h.day"
INDEX = "ix_history_day_report"
#: the index's columns after the day, in order
_ORDER = ("campaign", "code", "agent", "list")
#: the revenue of the rows that meet a condition (the condition is computed only for
#: rows with a revenue, which are few)
_REV = "TOTAL(CASE WHEN h.revenue IS NOT NULL AND {} THEN h.revenue END)"


def _where(q: ReportQuery, params: dict[str, Any], days: str | None = None) -> str:
    """The dispositions in the range, filtered, in their latest version: a range of the
    index's days (``lid IS NOT NULL`` is the index's own condition), or the UTC days
    ``days`` one by one."""
    lo, hi = math.floor(q.lo / 86400), math.ceil(q.hi / 86400)
    params.update(lo=q.lo, hi=q.hi, ulo=lo, uhi=hi)
    span = f"{DAY} BETWEEN :ulo AND :uhi" if days is None else f"{DAY} IN ({days})"
    where = ["h.lid IS NOT NULL", span, "h.at >= :lo", "h.at < :hi",
             *filters(q, params, prefix="+")]
    if q.amended:
        where.append(CURRENT_SCAN_WHERE)
    return " AND ".join(where)


def _shifts(q: ReportQuery) -> list[tuple[int, str]]:
    """(shift, condition): a row of UTC day ``u`` is in local day ``u + shift`` when its
    condition holds (local day ``u`` otherwise). An offset east of UTC moves the end of
    the UTC day into the next local day, one west its start into the day before."""
    steps = offset_steps(q.timezone, q.lo, q.hi)
    out = []
    if any(off > 0 for _, off in steps):
        out.append((1, f"h.at % 86400 >= {local_offset('h.at', steps, lambda o: 86400 - o)}"))
    if any(off < 0 for _, off in steps):
        out.append((-1, f"h.at % 86400 < {local_offset('h.at', steps, lambda o: -o)}"))
    return out


def _first(q: ReportQuery, params: dict[str, Any], cols: tuple[str, ...],
           shifts: list[tuple[int, str]] | None) -> str:
    """``l1``: the rows grouped by UTC day and ``cols`` (a prefix of the index order),
    with their count ``n``; for the report's local days (``shifts`` given) the count and
    revenue of each shift (``n1``/``r1``, ``n_1``/``r_1``); ``r0``: the revenue of the
    rest."""
    aggs = ["COUNT(*) AS n"]
    if shifts is None:
        aggs.append("TOTAL(h.revenue) AS r0")
    else:
        for shift, cond in shifts:
            aggs += [f"SUM({cond}) AS n{_name(shift)}",
                     f"{_REV.format(cond)} AS r{_name(shift)}"]
        rest = " AND ".join(f"NOT ({cond})" for _, cond in shifts) or "1"
        aggs.append(f"{_REV.format(rest)} AS r0")
    by = ", ".join(str(k + 1) for k in range(len(cols) + 1))
    return (f"l1 AS (SELECT {DAY} AS u, {', '.join(f'h.{c}' for c in cols)}, "
            f"{', '.join(aggs)} FROM history h INDEXED BY {INDEX} "
            f"WHERE {_where(q, params)} GROUP BY {by})")


def _name(shift: int) -> str:
    return str(shift).replace("-", "_")


def _days(cols: tuple[str, ...], shifts: list[int]) -> str:
    """``l2``: each group of ``l1`` as one row per local day (``day``, the day number)
    with its count ``n`` and revenue ``rev`` (0 rows for a shift the group has none of,
    left out after)."""
    n0 = "l1.n" + "".join(f" - l1.n{_name(s)}" for s in shifts)
    n = " ".join([f"CASE dv.v WHEN 0 THEN {n0}",
                  *(f"WHEN {s} THEN l1.n{_name(s)}" for s in shifts), "END"])
    rev = " ".join(["CASE dv.v WHEN 0 THEN l1.r0",
                    *(f"WHEN {s} THEN l1.r{_name(s)}" for s in shifts), "END"])
    values = ", ".join(f"({s})" for s in [0, *shifts])
    return (f"dv(v) AS (VALUES {values}), "
            f"l2 AS (SELECT {', '.join(f'l1.{c}' for c in cols)}, l1.u + dv.v AS day, "
            f"{n} AS n, {rev} AS rev FROM l1 CROSS JOIN dv)")


def figures(q: ReportQuery, params: dict[str, Any], codes: str) -> str:
    """The figures statement; ``codes`` is the ``codes`` CTE. The first grouping goes
    as deep into the index order as the report's groups need (at least campaign and
    code); the groups it makes are then regrouped by what the report asks."""
    depth = max(_ORDER.index(g) for g in ("code", *q.group_by) if g in _ORDER) + 1
    cols = _ORDER[:depth]
    keys: list[str] = [c for c in ("campaign", "code", "list", "agent")
            if c in ("campaign", "code") or c in q.group_by]
    if "day" in q.group_by:
        shifts = _shifts(q)
        rows = f"{_first(q, params, cols, shifts)}, {_days(cols, [s for s, _ in shifts])}"
        keys.append("day")
        src, rev = "l2 WHERE n > 0", "SUM(rev)"
    else:
        rows, src, rev = _first(q, params, cols, None), "l1", "SUM(r0)"
    by = ", ".join(keys)
    return (f"WITH {codes}, {rows}, agg AS (SELECT {by}, SUM(n) AS n, {rev} AS rev "
            f"FROM {src} GROUP BY {by}) "
            + figures_tail(q, "date(a.day * 86400, 'unixepoch')"))


def kind_rows(q: ReportQuery, params: dict[str, Any]) -> str:
    """``kinds``: the counted rows whose code is a quote, won or lost, with the code's field
    names, from the index alone: for each such code, each UTC day of the range is one
    seek (the day, campaign and code are its first columns)."""
    lo, hi = math.floor(q.lo / 86400), math.ceil(q.hi / 86400)
    days = ", ".join(str(u) for u in range(lo, hi + 1))
    return ("kinds AS MATERIALIZED (SELECT h.hid, h.rid, h.at, c.kind, c.f_value, "
            "c.f_chance, c.f_expected, c.f_reason FROM codes c CROSS JOIN history h "
            f"INDEXED BY {INDEX} WHERE c.kind IS NOT NULL AND h.campaign = c.campaign "
            f"AND h.code = c.code AND {_where(q, params, days)})")

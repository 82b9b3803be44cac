"""Reports over the contact history: what a report asks for, and its figures.

The stores compute reports (the SQL store in SQL, ``storage/reports.py``); this module
holds what they share and needs no database: the request as plain data, the rates, and
``tally``, the same report computed in Python from raw history rows (the memory store's
report, and the reference the SQL is tested against).

Which rows count is decided in one place per store (``storage/reports.py``'s
``current_rows``, ``tally``'s ``counted``): every disposition, an amended one only in its
latest version (``amending.current``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .amending import current
from .calendar import local_day

#: what a report may be grouped by, in the order the groups are shown
GROUPS = ("campaign", "list", "agent", "code", "day")
#: what a code tells a report about a disposition (``report`` of a result code)
KINDS = ("quote", "won", "lost")
#: the roles a code's fields take in a report (``report`` of a field), and their types
FIELD_ROLES = {"value": "money", "chance": "percent", "expected": "date",
               "reason": "choice"}
FIGURES = ("attempts", "contacts", "presentations", "successes", "revenue")
#: each rate: (name, numerator, denominator); a stage of the funnel over the one before
RATES = (("contact_rate", "contacts", "attempts"),
         ("presentation_rate", "presentations", "contacts"),
         ("conversion_rate", "successes", "presentations"))


@dataclass(frozen=True, slots=True)
class CodeFacts:
    """What one campaign's result code counts as in a report; field names by role."""

    campaign: str
    code: str
    contact: bool = False
    presentation: bool = False
    success: bool = False
    kind: str | None = None
    value: str | None = None
    chance: str | None = None
    expected: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """A report: dispositions at ``lo`` <= at < ``hi`` (the local days asked for),
    grouped by ``group_by``, local days in ``timezone``; optional filters."""

    lo: float
    hi: float
    timezone: str
    group_by: tuple[str, ...]
    codes: tuple[CodeFacts, ...]
    campaign: str | None = None
    agent: str | None = None
    list_name: str | None = None
    #: whether an amendment may have replaced a disposition in the range (the SQL store
    #: leaves out the check for replaced rows when none did)
    amended: bool = True


def with_rates(row: Mapping[str, Any]) -> dict[str, Any]:
    """A figures row with its rates (None when the denominator is 0) and revenue to cents."""
    out = dict(row)
    out["revenue"] = round(float(out.get("revenue") or 0.0), 2)
    for name, num, den in RATES:
        out[name] = round(out[num] / out[den], 4) if out[den] else None
    return out


def totals(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The figures of every group together, with their rates."""
    total: dict[str, Any] = dict.fromkeys(FIGURES, 0)
    for r in rows:
        for f in FIGURES:
            total[f] += r[f] or 0
    return with_rates(total)


# ---------------------------------------------------------------- the Python reference

def counted(history: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The history rows a report counts: dispositions (rows with a lease), each in its
    latest version (a row another row ``amends`` is left out)."""
    return [h for h in current(history) if h.get("lid") is not None]


def _keys(q: ReportQuery, h: Mapping[str, Any], lst: str) -> tuple[Any, ...]:
    by = {"campaign": h["campaign"], "list": lst, "agent": h["agent"], "code": h["code"]}
    return tuple(by[g] if g != "day" else local_day(h["at"], q.timezone)
                 for g in q.group_by)


def _field(h: Mapping[str, Any], name: str | None) -> Any:
    fields = h.get("fields") or {}
    if isinstance(fields, str):  # as stored: JSON text
        fields = json.loads(fields)
    return fields.get(name) if name else None


def tally(q: ReportQuery, history: Iterable[Mapping[str, Any]],
          lists: Mapping[int, str]) -> dict[str, list[dict[str, Any]]]:
    """The report from raw history rows (``fields`` decoded): ``figures`` (without
    rates), ``quotes`` and ``orders``, as the stores answer. A row's list is its
    ``list`` (the record's list when it was written), else the record's in ``lists``."""
    facts = {(c.campaign, c.code): c for c in q.codes}
    figures: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(
        lambda: dict.fromkeys(FIGURES, 0))
    latest: dict[int, tuple[float, int, Mapping[str, Any], CodeFacts]] = {}
    orders: dict[tuple[str, Any], dict[str, Any]] = {}
    for h in counted(history):
        lst = h.get("list") or lists.get(h["rid"], "")
        if not q.lo <= h["at"] < q.hi or any(
                v is not None and v != got for v, got in
                ((q.campaign, h["campaign"]), (q.agent, h["agent"]), (q.list_name, lst))):
            continue
        c = facts.get((h["campaign"], h["code"]), CodeFacts(h["campaign"], h["code"]))
        f = figures[_keys(q, h, lst)]
        f["attempts"] += 1
        f["contacts"] += c.contact
        f["presentations"] += c.presentation
        f["successes"] += c.success
        f["revenue"] += h.get("revenue") or 0.0
        if c.kind is None:
            continue
        key = (h["at"], h["hid"])
        if h["rid"] not in latest or key > latest[h["rid"]][:2]:
            latest[h["rid"]] = (*key, h, c)
        if c.kind in ("won", "lost"):
            o = orders.setdefault((c.kind, _field(h, c.reason)), {"count": 0, "value": 0.0})
            o["count"] += 1
            o["value"] += float(_field(h, c.value) or 0.0)
    return {"figures": [{**dict(zip(q.group_by, k, strict=True)), **v}
                        for k, v in sorted(figures.items())],
            "quotes": _pipeline(latest.values()),
            "orders": [{"outcome": k, "reason": r, **v} for (k, r), v in
                       sorted(orders.items(), key=lambda kv: (kv[0][0] != "won",
                                                              str(kv[0][1])))]}


def _pipeline(latest: Iterable[tuple[float, int, Mapping[str, Any], CodeFacts]]
              ) -> list[dict[str, Any]]:
    months: dict[str, dict[str, Any]] = {}
    for _, _, h, c in latest:
        if c.kind != "quote":
            continue
        value = float(_field(h, c.value) or 0.0)
        chance = float(_field(h, c.chance) or 0.0)
        month = str(_field(h, c.expected) or "")[:7] or None
        m = months.setdefault(str(month), {"month": month, "count": 0, "value": 0.0,
                                           "weighted": 0.0})
        m["count"] += 1
        m["value"] += value
        m["weighted"] += value * chance / 100.0
    return [months[k] for k in sorted(months)]

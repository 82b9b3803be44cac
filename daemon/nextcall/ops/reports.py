"""``report``: results from the contact history over a range of local days, for
supervisors. The store computes the groups (in SQL on SQLite and PostgreSQL); this module
checks the request, says what each configured result code counts as, and adds the rates
and totals (docs/supervision.md)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from ..core import calendar
from ..core.calendar import day_bounds
from ..core.errors import BadRequest
from ..core.model import Campaign
from ..core.reports import CodeFacts, ReportQuery, totals, with_rates
from ..protocol import Name, Request
from ..roles import Peer
from .base import Body

if TYPE_CHECKING:
    from ..service import Service

#: the longest range one report covers, in days (about three years)
MAX_DAYS = 1100
Day = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]
Group = Literal["campaign", "list", "agent", "code", "day"]


class ReportReq(Request):
    """``report``: local days ``from`` to ``to`` (inclusive) in ``timezone``, grouped by
    ``group_by`` (in that order), optionally one campaign, agent or list."""

    from_: Day = Field(alias="from")
    to: Day
    timezone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    group_by: Annotated[list[Group], Field(max_length=5)] = ["campaign"]
    campaign: Name | None = None
    agent: Name | None = None
    list_: Name | None = Field(default=None, alias="list")


def _day(text: str, field: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{field} must be a date (YYYY-MM-DD)", field=field) from None


def code_facts(campaigns: dict[str, Campaign]) -> tuple[CodeFacts, ...]:
    """What each configured campaign's codes count as in a report. Codes no longer in
    the config still count as attempts."""
    out = []
    for name, camp in campaigns.items():
        for rc in camp.codes.values():
            roles = {f.report: f.name for f in rc.fields if f.report is not None}
            out.append(CodeFacts(name, rc.code, rc.contact, rc.presentation, rc.success,
                                 rc.report, roles.get("value"), roles.get("chance"),
                                 roles.get("expected"), roles.get("reason")))
    return tuple(out)


def query_of(req: ReportReq, campaigns: dict[str, Campaign]) -> ReportQuery:
    """The store's query for a request.

    Raises:
        BadRequest: a malformed or reversed range, one too long, an unknown timezone or
            a group named twice.
    """
    first, last = _day(req.from_, "from"), _day(req.to, "to")
    if last < first:
        raise BadRequest("to must not be before from", field="to")
    if (last - first).days >= MAX_DAYS:
        raise BadRequest(f"a report covers at most {MAX_DAYS} days", field="to")
    calendar.zone(req.timezone)
    if len(set(req.group_by)) != len(req.group_by):
        raise BadRequest("each group once", field="group_by")
    lo, hi = day_bounds(first, last, req.timezone)
    return ReportQuery(lo, hi, req.timezone, tuple(req.group_by), code_facts(campaigns),
                       req.campaign, req.agent, req.list_)


def _sort_key(row: dict[str, Any], keys: tuple[str, ...]) -> tuple[str, ...]:
    return tuple("" if row.get(k) is None else str(row[k]) for k in keys)


def _money(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {**row, **{k: round(float(row[k] or 0.0), 2) for k in keys}}


async def report(svc: Service, req: ReportReq, peer: Peer) -> Body:
    """``report``: figures per group with their rates and totals, the open quote
    pipeline by expected month, and orders won and lost by reason."""
    q = query_of(req, svc.engine.campaigns)
    got = await svc.store.report(q)
    rows = sorted((with_rates(r) for r in got["figures"]),
                  key=lambda r: _sort_key(r, q.group_by))
    quotes = sorted((_money(r, "value", "weighted") for r in got["quotes"]),
                    key=lambda r: _sort_key(r, ("month",)))
    orders = sorted((_money(r, "value") for r in got["orders"]),
                    key=lambda r: (r["outcome"] != "won", *_sort_key(r, ("reason",))))
    return {"from": req.from_, "to": req.to, "timezone": req.timezone,
            "group_by": list(q.group_by), "rows": rows, "total": totals(rows),
            "quotes": quotes, "orders": orders}

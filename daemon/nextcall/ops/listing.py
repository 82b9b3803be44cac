"""``records``: a campaign's records found by state, last result, close reason, list,
owner and the time of the last disposition, a page at a time (supervisors).

The rows come from the database (closed records are not in memory); the engine adds
what only it knows: which records are leased, and which held records wait for
resolution. Pages follow rid (import) order, with an opaque cursor that carries the last
rid shown and a fingerprint of the filters, so a cursor cannot be replayed against
other filters.
"""

from __future__ import annotations

import base64
import hashlib
import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from pydantic import Field

from .. import views
from ..core import calendar
from ..core.errors import BadRequest
from ..core.records import LEASED, RESOLUTION
from ..protocol import Name, Request
from ..roles import Peer
from ..storage.query import RecordQuery
from .base import Body

if TYPE_CHECKING:
    from ..service import Service

#: rows per page at most (a CSV export asks for pages of this size)
MAX_LIMIT = 1000

Instant = Annotated[str, Field(min_length=1, max_length=64)]


class RecordsReq(Request):
    """``records``: one page of a campaign's records matching every filter given."""

    campaign: Name
    state: Literal["ready", "callback", "leased", "held", "resolution",
                   "closed"] | None = None
    code: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    #: the last result code is one of the campaign's codes of this category
    category: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    reason: Literal["final", "until_reload", "dnc", "special", "exhausted", "no_numbers",
                    "admin"] | None = None
    list_: Name | None = Field(default=None, alias="list")
    owner: Name | None = None
    #: the agent of the last disposition (a filter, not an agent the request acts as)
    last_agent: Name | None = None
    since: Instant | None = None
    until: Instant | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 100
    cursor: Annotated[str, Field(min_length=1, max_length=200)] | None = None


def fingerprint(req: RecordsReq) -> str:
    """The filters a cursor belongs to (everything but the cursor and the page size)."""
    key = req.model_dump(exclude={"cursor", "limit"}, by_alias=True)
    return hashlib.sha256(orjson.dumps(key, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def make_cursor(rid: int, fp: str) -> str:
    """The cursor of the page after record ``rid``, for the filters ``fp``."""
    return base64.urlsafe_b64encode(f"1.{rid}.{fp}".encode()).decode().rstrip("=")


def _after(req: RecordsReq, fp: str) -> int:
    """The last rid of the previous page (0 without a cursor).

    Raises:
        BadRequest: a cursor not made by this op, or made for other filters.
    """
    if req.cursor is None:
        return 0
    try:
        raw = base64.urlsafe_b64decode(req.cursor + "=" * (-len(req.cursor) % 4)).decode()
        version, rid, made_for = raw.split(".")
        after = int(rid)
    except ValueError:
        raise BadRequest("not a cursor of the records op", field="cursor") from None
    if version != "1" or not 0 <= after < 2**63:
        raise BadRequest("not a cursor of the records op", field="cursor")
    if made_for != fp:
        raise BadRequest("the cursor belongs to other filters: repeat the query it came "
                         "from", field="cursor")
    return after


def _instant(value: str | None, field: str) -> float | None:
    # bounds of a search, not times to schedule: any representable instant will do
    if value is None:
        return None
    return calendar.resolve_local(value, "UTC", field=field, bounded=False)


def _codes(svc: Service, req: RecordsReq) -> tuple[str, ...] | None:
    """The last result codes asked for: ``code``, a category's codes, or both (the code
    if it is in the category).

    Raises:
        BadRequest: no code of the campaign has the category.
    """
    if req.category is None:
        return (req.code,) if req.code is not None else None
    camp = svc.engine.campaign(req.campaign)
    codes = tuple(rc.code for rc in camp.codes.values() if rc.category == req.category)
    if not codes:
        raise BadRequest(f"no result code of campaign {req.campaign!r} has category "
                         f"{req.category!r}", field="category")
    return tuple(c for c in codes if c == req.code) if req.code is not None else codes


def _query(svc: Service, req: RecordsReq, after: int, now: float) -> RecordQuery:
    """The store's query: derived states (leased, resolution) become stored states plus
    what the engine knows (which rids are leased, the appointment instant)."""
    since, until = _instant(req.since, "since"), _instant(req.until, "until")
    if since is not None and until is not None and since > until:
        raise BadRequest("since must not be after until", field="until")
    leased = tuple(sorted(lz.record.rid for lz in svc.engine.leases.values()
                          if lz.record.campaign == req.campaign))
    kw: dict[str, Any] = {}
    if req.state == LEASED:
        kw["only"] = leased
    elif req.state == RESOLUTION:
        kw.update(state="held", due_to=now)
    elif req.state == "held":
        kw.update(state="held", due_from=math.nextafter(now, math.inf))
    elif req.state is not None:
        kw["state"] = req.state
        if req.state in ("ready", "callback"):
            kw["without"] = leased
    elif req.reason is not None:
        kw["state"] = "closed"  # only closed records have a reason: use the state index
    return RecordQuery(req.campaign, after=after, limit=req.limit + 1, reason=req.reason,
                       codes=_codes(svc, req), list=req.list_, owner=req.owner,
                       agent=req.last_agent,
                       since=since, until=until, **kw)


def row_view(svc: Service, row: dict[str, Any], now: float) -> dict[str, Any]:
    """One found record, flat enough for a table or a CSV line."""
    state = row["state"]
    if svc.engine.lease_of(row["rid"]) is not None:
        state = LEASED
    elif state == "held" and row["due_at"] <= now:
        state = RESOLUTION
    return {
        "id": row["id"], "list": row["list"], "state": state, "reason": row["reason"],
        "attempts": row["attempts"],
        "due_at": views.utc_iso(row["due_at"]) if state != "closed" else None,
        "owner": row["owner"], "team": row["team"], "timezone": row["timezone"],
        "phones": [{"number": n, "status": st} for n, st in orjson.loads(row["phones"])],
        "last_code": row["last_code"],
        "last_at": views.utc_iso(row["last_at"]) if row["last_at"] is not None else None,
        "last_agent": row["last_agent"],
        "data": orjson.Fragment(row["data"]),
    }


async def records(svc: Service, req: RecordsReq, peer: Peer) -> Body:
    """``records`` (supervisor): one page of the campaign's records matching the
    filters, in import order, and the cursor of the next page (null after the last)."""
    svc.engine.campaign(req.campaign)
    fp = fingerprint(req)
    after = _after(req, fp)
    now = svc.clock()
    svc.expire(now)
    rows = await svc.store.records_page(_query(svc, req, after, now))
    now = svc.clock()
    more = len(rows) > req.limit
    rows = rows[:req.limit]
    return {"now": calendar.utc_iso(now), "count": len(rows),
            "records": [row_view(svc, r, now) for r in rows],
            "next_cursor": make_cursor(rows[-1]["rid"], fp) if more else None}

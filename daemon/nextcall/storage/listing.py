"""The SQL of the ``records`` op: a page of a campaign's records in rid order (keyset).

Every filter is an equality on an indexed column or a range next to one: the indexes of
migration 0006 lead with (campaign, column) and end with rid, so a page is read from
one index in rid order and stops after ``limit`` rows, however deep the cursor.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .query import EQUALS, PAGE_COLUMNS, RecordQuery
from .schema import records


def page_query(q: RecordQuery) -> Select[Any]:
    """The SELECT for one page (``limit`` rows at most)."""
    c = records.c
    stmt = select(*(c[name] for name in PAGE_COLUMNS)).where(
        c.campaign == q.campaign, c.rid > q.after)
    for attr, col in EQUALS:
        want = getattr(q, attr)
        if want is not None:
            stmt = stmt.where(c[col] == want)
    if q.since is not None:
        stmt = stmt.where(c.last_at >= q.since)
    if q.until is not None:
        stmt = stmt.where(c.last_at <= q.until)
    if q.due_from is not None:
        stmt = stmt.where(c.due_at >= q.due_from)
    if q.due_to is not None:
        stmt = stmt.where(c.due_at <= q.due_to)
    if q.only is not None:
        stmt = stmt.where(c.rid.in_(q.only))
    if q.without:
        stmt = stmt.where(c.rid.not_in(q.without))
    return stmt.order_by(c.rid).limit(q.limit)


async def read_page(conn: AsyncConnection, q: RecordQuery) -> list[dict[str, Any]]:
    """One page's rows, as dicts with the column names as keys."""
    if q.only is not None and not q.only:
        return []
    return [dict(r) for r in (await conn.execute(page_query(q))).mappings().all()]

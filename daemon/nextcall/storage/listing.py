"""The SQL of the ``records`` op: a page of a campaign's records in rid order (keyset).

Every filter is an equality on an indexed column or a range next to one: the indexes of
migration 0006 lead with (campaign, column) and end with rid, so a page is read from
one index in rid order and stops after ``limit`` rows, however deep the cursor.
"""

from __future__ import annotations

import dataclasses
import heapq
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
    if q.codes is not None:
        stmt = stmt.where(c.last_code.in_(q.codes) if len(q.codes) > 1
                          else c.last_code == q.codes[0])
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
    """One page's rows, as dicts with the column names as keys. Several codes (a
    category) are read code by code, each from the index in rid order, and merged: an IN
    on the index's middle column would make the database sort every match first."""
    if (q.only is not None and not q.only) or (q.codes is not None and not q.codes):
        return []
    if q.codes is not None and len(q.codes) > 1:
        runs = [await read_page(conn, dataclasses.replace(q, codes=(code,)))
                for code in sorted(set(q.codes))]
        return list(heapq.merge(*runs, key=lambda r: int(r["rid"])))[:q.limit]
    return [dict(r) for r in (await conn.execute(page_query(q))).mappings().all()]

"""What the ``records`` op asks a store for: one page of a campaign's records, filtered,
in rid order after a cursor. Kept apart from the SQL so the memory store applies the
same filter (``matches``) without SQLAlchemy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: the columns a page row carries (the last result is the last disposition's)
PAGE_COLUMNS = ("rid", "id", "list", "phones", "timezone", "state", "reason", "due_at",
                "attempts", "owner", "team", "data", "updated_at", "last_code", "last_at",
                "last_agent")


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """One page: the records of ``campaign`` with rid above ``after``, at most ``limit``,
    matching every filter that is not None. ``state`` is the stored state (ready,
    callback, held, closed); ``due_from``/``due_to`` bound ``due_at`` (held records
    before and after their appointment); ``only``/``without`` name rids the engine knows
    about (the leased ones); ``since``/``until`` bound the last disposition's instant,
    both inclusive."""

    campaign: str
    after: int = 0
    limit: int = 100
    state: str | None = None
    reason: str | None = None
    #: the last result code is one of these (one code, or a category's codes)
    codes: tuple[str, ...] | None = None
    list: str | None = None
    owner: str | None = None
    agent: str | None = None
    since: float | None = None
    until: float | None = None
    due_from: float | None = None
    due_to: float | None = None
    only: tuple[int, ...] | None = None
    without: tuple[int, ...] = ()


#: filters that compare a column for equality, by the column they compare
EQUALS = (("state", "state"), ("reason", "reason"), ("list", "list"), ("owner", "owner"),
          ("agent", "last_agent"))


def matches(row: dict[str, Any], q: RecordQuery) -> bool:
    """Whether a stored row belongs on the page (the memory store's filter; the SQL
    store's WHERE says the same)."""
    if row["campaign"] != q.campaign or row["rid"] <= q.after:
        return False
    for attr, col in EQUALS:
        want = getattr(q, attr)
        if want is not None and row[col] != want:
            return False
    if q.codes is not None and row["last_code"] not in q.codes:
        return False
    last_at = row.get("last_at")
    if q.since is not None and (last_at is None or last_at < q.since):
        return False
    if q.until is not None and (last_at is None or last_at > q.until):
        return False
    if q.due_from is not None and row["due_at"] < q.due_from:
        return False
    if q.due_to is not None and row["due_at"] > q.due_to:
        return False
    if q.only is not None and row["rid"] not in q.only:
        return False
    return row["rid"] not in q.without

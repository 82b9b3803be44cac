"""The one definition of the *current* contact history: every history row that no later
amendment replaces. Reports and metrics that count results read history through here, so
an amended disposition counts once, in its latest version.

An amendment is a new history row whose ``amends`` names the ``hid`` it replaces; the
replaced row stays (``record.get`` shows both). ``ix_history_amends`` makes the
``NOT EXISTS`` an index probe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Select, exists, select

from .schema import history

_later = history.alias("amendment")

#: true for a history row that an amendment replaced
SUPERSEDED = exists().where(_later.c.amends == history.c.hid)

#: the same condition as SQL text, for hand-written queries over ``history AS h``
CURRENT_WHERE = "NOT EXISTS (SELECT 1 FROM history a WHERE a.amends = h.hid)"


def current_history() -> Select[Any]:
    """Every current history row (add ``.where(...)`` to narrow it)."""
    return select(history).where(~SUPERSEDED)


def current_rows(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The current ones of a record's history rows (``record.get``'s, the memory store's):
    those no other row amends."""
    rows = list(rows)
    replaced = {r.get("amends") for r in rows} - {None}
    return [r for r in rows if r["hid"] not in replaced]

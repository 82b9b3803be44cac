"""The one definition of the *current* contact history in SQL: every history row that no
later amendment replaces, so an amended disposition counts once, in its latest version.

An amendment is a new history row whose ``amends`` names the ``hid`` it replaces; the
replaced row stays (``record.get`` shows both). ``ix_history_amends`` makes the
``NOT EXISTS`` an index probe. The same rule over rows in memory is
``core.amending.current`` (re-exported here as ``current_rows``).
"""

from __future__ import annotations

from ..core.amending import current as current_rows

#: SQL: history row ``h`` is current, for hand-written queries over ``history AS h``
CURRENT_WHERE = "NOT EXISTS (SELECT 1 FROM history a WHERE a.amends = h.hid)"

#: SQL: the same rule for a scan over many rows: the set of replaced rows is read once
#: from ``ix_history_amends`` (only its entries that are not NULL), and SQLite looks each
#: row up in that set in memory instead of probing the index once per row
CURRENT_SCAN_WHERE = ("h.hid NOT IN (SELECT a.amends FROM history a "
                      "WHERE a.amends IS NOT NULL)")

__all__ = ["CURRENT_SCAN_WHERE", "CURRENT_WHERE", "current_rows"]

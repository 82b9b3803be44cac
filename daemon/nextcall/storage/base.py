"""The ``Store`` protocol: everything the daemon asks of a database.

Handlers see only this. ``storage/sql.py`` implements it for SQLite and PostgreSQL;
``storage/memory.py`` implements it with dicts, for unit tests of the handlers that need
no database, socket or daemon.

The contract every store keeps:

- ``submit`` queues changes for the next group commit and returns at once; ``done`` is
  called later, on the event loop, once the changes are durable (with the stored fields
  of the records named in ``fetch``), or with a ``StorageError``. Changes submitted
  earlier are committed no later than changes submitted after them.
- A failed commit is fail-stop: the store marks itself ``broken``, fails that batch and
  every later submission with ``StorageError``, and reports the failure (the daemon then
  stops, and a restart rebuilds from what is durable).
- Reads return plain rows (dicts with the column names as keys) and raise
  ``StorageError`` when the database cannot answer.

Adding a backend: a class with these methods (and a ``Snapshot`` reader), chosen by URL in
``app.py``; the SQL one shows the way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..core.changes import Change
from ..core.reports import ReportQuery
from .query import RecordQuery

#: a record's fields kept only in the database: (id, list, data, team)
Payload = tuple[str, str, str, str | None]
Fetched = dict[int, Payload]
#: called once a submission is committed: the fetched payloads, or the failure
Done = Callable[[Fetched | BaseException], None]


class Store(Protocol):
    """A durable home for records, leases, history, lists, agents and reminders."""

    #: the failure that broke the store, or None while it works
    broken: BaseException | None

    def submit(self, changes: Sequence[Change], done: Done,
               fetch: Sequence[int] = ()) -> None:
        """Queue ``changes`` for the next group commit; ``done`` follows it."""

    async def write(self, changes: Sequence[Change]) -> None:
        """Commit ``changes`` and wait (the commit itself cannot be cancelled).

        Raises:
            StorageError.
        """

    async def snapshot(self, prefetched: Any = None) -> Any:
        """Everything a rebuild needs (``storage/snapshot.py``'s ``Snapshot``)."""

    async def get_record(self, record_id: str) -> dict[str, Any] | None:
        """``{"record": row, "history": [rows], "leases": [rows]}``, or None."""

    async def get_lease(self, lid: int) -> dict[str, Any] | None:
        """A lease row, or None."""

    async def list_versions(self) -> dict[str, int]:
        """Each list's version (``"dnc"``, ``"block"``): one more at every change."""

    async def payloads(self, rids: Sequence[int]) -> Fetched:
        """The fields kept only in the database of records ``rids``."""

    async def existing_ids(self, ids: Sequence[str]) -> dict[str, tuple[int, str, str]]:
        """Record id -> (rid, state, campaign) for the ids already stored (imports)."""

    async def records_where(self, campaign: str, list_name: str, state: str,
                            reason: str | None) -> list[dict[str, Any]]:
        """Full rows of one list's records in one state (list reloads)."""

    async def records_page(self, query: RecordQuery) -> list[dict[str, Any]]:
        """One page of a campaign's records for the ``records`` op (``storage/query.py``),
        in rid order."""

    async def reminders_of_callbacks(self) -> list[tuple[int, float, float]]:
        """(rid, callback instant, sent_at) of reminders sent for records in the
        callback state now."""

    async def reminders_of(self, rid: int) -> list[dict[str, Any]]:
        """Every reminder sent for record ``rid``, oldest first."""

    async def report(self, query: ReportQuery) -> dict[str, list[dict[str, Any]]]:
        """A report over the history: ``figures``, ``quotes``, ``orders`` as
        ``core.reports.tally`` computes them (in any order)."""

    async def attempts_since(self, since: float) -> list[tuple[int, str, float]]:
        """(rid, number, issued_at) of every lease issued at or after ``since``, oldest
        first: the hand-outs attempt budgets count (read at start only when a campaign
        has budgets)."""

    async def close(self) -> None:
        """Commit what is queued and disconnect."""

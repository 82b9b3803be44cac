"""A ``Store`` in dicts: the op handlers' unit tests run on it, with no database, socket
or daemon.

It keeps the SQL store's contract (``storage/base.py``): a submission is committed with
everything else queued in the same loop iteration, callbacks run on the event loop after
the commit, a failure breaks the store for good. Rows look like the SQL store's rows
(JSON columns as JSON text), so views and rebuilds read them the same way. ``fail_next``
makes the next commit fail, to test fail-stop paths.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from ..core.changes import (
    AgentSaved,
    Change,
    HistoryAppended,
    LeaseEnded,
    LeaseExtended,
    LeaseIssued,
    NumberListed,
    NumberUnlisted,
    QuoteSaved,
    RecordImported,
    RecordReimported,
    RecordSaved,
    ReminderSent,
)
from ..core.engine import ready_groups, ready_quotes
from ..core.errors import StorageError
from ..core.reports import ReportQuery, tally
from .base import Done, Fetched
from .query import PAGE_COLUMNS, RecordQuery, matches
from .snapshot import OTHER_COLUMNS, Snapshot, record_from_row

logger = logging.getLogger(__name__)

Row = dict[str, Any]


def _json(v: Any) -> str | None:
    return orjson.dumps(v).decode() if v else None


class MemoryStore:
    """Records, leases, history, lists, agents and reminders in dicts."""

    def __init__(self, on_failure: Callable[[BaseException], None] | None = None) -> None:
        self.records: dict[int, Row] = {}
        self.ids: dict[str, int] = {}
        self.leases: dict[int, Row] = {}
        self.history: list[Row] = []
        self.listed: dict[str, Row] = {}
        self.versions: dict[str, int] = {"dnc": 0, "block": 0}
        self.agents: dict[str, Row] = {}
        self.reminders: dict[tuple[int, float], Row] = {}
        self.broken: BaseException | None = None
        self.on_failure = on_failure
        #: the next commit fails with this (then the store is broken)
        self.fail_next: BaseException | None = None
        #: how many commits ran, and how many submissions each held
        self.commits: list[int] = []
        self._queue: list[tuple[Sequence[Change], Sequence[int], Done]] = []
        self._scheduled = False

    # ------------------------------------------------------------------ writes
    def submit(self, changes: Sequence[Change], done: Done,
               fetch: Sequence[int] = ()) -> None:
        """Queue ``changes``; they commit together with this loop iteration's others."""
        if self.broken is not None:
            done(StorageError("storage has failed; the daemon is stopping"))
            return
        self._queue.append((list(changes), fetch, done))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._commit)

    async def write(self, changes: Sequence[Change]) -> None:
        """Commit ``changes`` and wait."""
        fut: asyncio.Future[Fetched] = asyncio.get_running_loop().create_future()

        def done(result: Fetched | BaseException) -> None:
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)
        self.submit(changes, done)
        await asyncio.shield(fut)

    def _commit(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue, []
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            self._fail(batch, exc)
            return
        try:
            for changes, _, _ in batch:
                for c in changes:
                    _APPLY[type(c)](self, c)
        except StorageError as exc:  # a constraint the database would enforce
            self._fail(batch, exc)
            return
        self.commits.append(len(batch))
        for _, fetch, done in batch:
            done(self._payloads(fetch))

    def _fail(self, batch: list[tuple[Sequence[Change], Sequence[int], Done]],
              exc: BaseException) -> None:
        """Fail-stop, as the SQL store: the batch fails, and so does everything after.
        (The dicts may hold part of the batch: nothing reads a broken store.)"""
        self.broken = exc
        for _, _, done in batch:
            done(StorageError(f"commit failed: {exc}"))
        if self.on_failure is not None:
            self.on_failure(exc)

    def _payloads(self, rids: Sequence[int]) -> Fetched:
        out: Fetched = {}
        for rid in rids:
            r = self.records.get(rid)
            if r is not None:
                out[rid] = (r["id"], r["list"], r["data"], r["team"])
        return out

    def _lease_issued(self, c: LeaseIssued) -> None:
        self.leases[c.lid] = {**c._asdict(), "ended_at": None, "end": None, "code": None,
                              "result": None}

    def _lease_ended(self, c: LeaseEnded) -> None:
        self.leases[c.lid].update(ended_at=c.at, end=c.end, code=c.code,
                                  result=c.result.decode() if c.result else None)

    def _lease_extended(self, c: LeaseExtended) -> None:
        self.leases[c.lid]["expires_at"] = c.expires_at

    def _history(self, c: HistoryAppended) -> None:
        row = c._asdict()
        row.update(hid=len(self.history) + 1, fields=_json(c.fields),
                   callback=_json(c.callback), prior=_json(c.prior))
        if c.list is None:  # as the SQL store: the record's list when the row is written
            row["list"] = self.records.get(c.rid, {}).get("list")
        self.history.append(row)
        if c.lid is not None:  # a disposition: the record's last result
            self.records[c.rid].update(last_code=c.code, last_at=c.at, last_agent=c.agent)

    def _record_saved(self, c: RecordSaved) -> None:
        row = self.records[c.rid]
        row.update(state=c.state, reason=c.reason, due_at=c.due_at, attempts=c.attempts,
                   owner=c.owner, team=c.team, best_cp=c.best_cp, phone_idx=c.phone_idx,
                   callback=_json(c.callback), updated_at=c.at)
        if c.moved is not None:
            phones, row["campaign"], row["list"] = c.moved
            row["phones"] = orjson.dumps(phones).decode()

    def _record_imported(self, c: RecordImported) -> None:
        if c.id in self.ids:
            raise StorageError(f"record id {c.id!r} exists")
        row = c._asdict()
        row.update(phones=orjson.dumps(c.phones).decode(), callback=_json(c.callback),
                   imported_at=c.at, updated_at=c.at, last_code=None, last_at=None,
                   last_agent=None)
        del row["at"]
        self.records[c.rid] = row
        self.ids[c.id] = c.rid

    def _record_reimported(self, c: RecordReimported) -> None:
        row = self.records[c.rid]
        row.update(list=c.list, phones=orjson.dumps(c.phones).decode(), timezone=c.timezone,
                   priority=c.priority, data=c.data, updated_at=c.at)
        if c.team is not None:
            row["team"] = c.team

    def _quote_saved(self, c: QuoteSaved) -> None:
        self.records[c.rid].update(quote_value=c.value, quote_chance=c.chance)

    def _number_listed(self, c: NumberListed) -> None:
        self.listed[c.number] = {"number": c.number, "list": c.list, "added_at": c.at,
                                 "rid": c.rid, "agent": c.agent}
        self.versions[c.list] = c.version

    def _number_unlisted(self, c: NumberUnlisted) -> None:
        self.listed.pop(c.number, None)
        self.versions[c.list] = c.version

    def _agent_saved(self, c: AgentSaved) -> None:
        self.agents[c.agent] = {"agent": c.agent, "campaigns": orjson.dumps(c.campaigns)
                                .decode(), "teams": orjson.dumps(c.teams).decode(),
                                "logged_in": c.logged_in, "updated_at": c.at}

    def _reminder_sent(self, c: ReminderSent) -> None:
        row = c._asdict()
        row.update(recipients=orjson.dumps(c.recipients).decode(),
                   channels=orjson.dumps(c.channels).decode())
        self.reminders[(c.rid, c.at)] = row

    # ------------------------------------------------------------------ reads
    async def snapshot(self, prefetched: Any = None) -> Snapshot:
        """What a rebuild reads: open records, live leases, logins, lists, counts."""
        open_recs = [record_from_row(tuple(r.get(c) for c in OTHER_COLUMNS))
                     for r in sorted(self.records.values(), key=lambda r: r["rid"])
                     if r["state"] in ("ready", "callback", "held")]
        groups, phones, others = ready_groups(open_recs)
        closed = Counter((r["campaign"], r["reason"] or "final")
                         for r in self.records.values() if r["state"] == "closed")
        leases = [tuple(x[k] for k in LeaseIssued._fields[:10]) for x in self.leases.values()
                  if x["ended_at"] is None]
        agents = [(a["agent"], a["campaigns"], a["teams"], a["logged_in"])
                  for a in self.agents.values()]
        return Snapshot(groups, phones, others, [(c, r, n) for (c, r), n in closed.items()],
                        leases, agents, max(self.records, default=0),
                        max(self.leases, default=0),
                        [(n, x["list"]) for n, x in self.listed.items()],
                        ready_quotes(open_recs))

    async def get_record(self, record_id: str) -> dict[str, Any] | None:
        """The record row with its history and leases, or None."""
        rid = self.ids.get(record_id)
        if rid is None:
            return None
        return {"record": dict(self.records[rid]),
                "history": [dict(h) for h in self.history if h["rid"] == rid],
                "leases": [dict(x) for _, x in sorted(self.leases.items())
                           if x["rid"] == rid]}

    async def get_lease(self, lid: int) -> dict[str, Any] | None:
        """A lease row, or None."""
        row = self.leases.get(lid)
        return dict(row) if row is not None else None

    async def list_versions(self) -> dict[str, int]:
        """Each list's version."""
        return dict(self.versions)

    async def payloads(self, rids: Sequence[int]) -> Fetched:
        """The stored (id, list, data, team) of records."""
        return self._payloads(rids)

    async def existing_ids(self, ids: Sequence[str]) -> dict[str, tuple[int, str, str]]:
        """Record id -> (rid, state, campaign) of those stored."""
        return {i: (rid, self.records[rid]["state"], self.records[rid]["campaign"])
                for i in ids if (rid := self.ids.get(i)) is not None}

    async def records_where(self, campaign: str, list_name: str, state: str,
                            reason: str | None) -> list[dict[str, Any]]:
        """Rows of one list in one state (and reason)."""
        return [dict(r) for _, r in sorted(self.records.items())
                if (r["campaign"], r["list"], r["state"]) == (campaign, list_name, state)
                and (reason is None or r["reason"] == reason)]

    async def records_page(self, query: RecordQuery) -> list[dict[str, Any]]:
        """One page of a campaign's records, in rid order."""
        page = [r for _, r in sorted(self.records.items()) if matches(r, query)]
        return [{c: r[c] for c in PAGE_COLUMNS} for r in page[:query.limit]]

    async def reminders_of_callbacks(self) -> list[tuple[int, float, float]]:
        """Reminders sent for records in the callback state now."""
        return [(rid, at, r["sent_at"]) for (rid, at), r in self.reminders.items()
                if self.records.get(rid, {}).get("state") == "callback"]

    async def reminders_of(self, rid: int) -> list[dict[str, Any]]:
        """Reminders sent for one record, oldest first."""
        return sorted((dict(r) for r in self.reminders.values() if r["rid"] == rid),
                      key=lambda r: r["sent_at"])

    async def report(self, query: ReportQuery) -> dict[str, list[dict[str, Any]]]:
        """A report computed in Python from the history (``core.reports.tally``)."""
        lists = {rid: row["list"] for rid, row in self.records.items()}
        return tally(query, self.history, lists)

    async def attempts_since(self, since: float) -> list[tuple[int, str, float]]:
        """(rid, number, issued_at) of the leases issued at or after ``since``."""
        return sorted(((r["rid"], r["phone"], r["issued_at"]) for r in self.leases.values()
                       if r["issued_at"] >= since), key=lambda t: t[2])

    async def close(self) -> None:
        """Commit what is queued."""
        if self._queue:
            self._commit()


_APPLY: dict[type, Callable[[MemoryStore, Any], None]] = {
    LeaseIssued: MemoryStore._lease_issued, LeaseEnded: MemoryStore._lease_ended,
    LeaseExtended: MemoryStore._lease_extended, HistoryAppended: MemoryStore._history,
    RecordSaved: MemoryStore._record_saved, RecordImported: MemoryStore._record_imported,
    RecordReimported: MemoryStore._record_reimported,
    NumberListed: MemoryStore._number_listed, NumberUnlisted: MemoryStore._number_unlisted,
    AgentSaved: MemoryStore._agent_saved,
    ReminderSent: MemoryStore._reminder_sent, QuoteSaved: MemoryStore._quote_saved,
}

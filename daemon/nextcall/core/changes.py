"""What a request changed, as values: the one boundary between the core and storage.

Every state change the daemon makes durable is one of the records below. Handlers collect
them from the core's results and hand them to a ``Store`` (``storage/base.py``), which
commits a batch in one transaction; nothing outside ``storage/`` knows a table or a
column. Each record holds plain values copied at the moment of the change, so a later
change to the same record (before the commit) cannot alter what is written.

They are ``NamedTuple``s rather than dataclasses because the hot path makes three of them
per call cycle and a tuple is the cheapest frozen value CPython has; stores dispatch on
the type.

Adding a change: a class here, a row for it in
``storage/statements.py`` and a line in ``storage/memory.py``.
"""

from __future__ import annotations

import builtins
from typing import Any, NamedTuple

from .records import CallbackIntent, Lease, Record


def _cb(cb: CallbackIntent | None) -> dict[str, object] | None:
    return cb.to_json() if cb is not None else None


class LeaseIssued(NamedTuple):
    """A record handed out (``next``)."""

    lid: int
    secret: str
    rid: int
    agent: str
    uid: int
    issued_at: float
    expires_at: float
    phone: str
    phone_idx: int
    reason: str
    #: the audit facts (``core/audit.py``), in ``LeaseAudit``'s order; None: not known
    local_at: str | None = None
    zone: str | None = None
    call_window: str | None = None
    legal_window: str | None = None
    attempts: int | None = None
    max_attempts: int | None = None
    dnc_version: int | None = None
    block_version: int | None = None

    @classmethod
    def of(cls, lz: Lease) -> LeaseIssued:
        """The change of a lease the engine just issued."""
        a = lz.audit
        if a is None:
            return cls(lz.lid, lz.secret, lz.record.rid, lz.agent, lz.uid, lz.issued_at,
                       lz.expires_at, lz.phone, lz.phone_idx, lz.reason)
        return cls(lz.lid, lz.secret, lz.record.rid, lz.agent, lz.uid, lz.issued_at,
                   lz.expires_at, lz.phone, lz.phone_idx, lz.reason, *a)


class LeaseEnded(NamedTuple):
    """A lease disposed (with its answer, kept for retries), released or expired."""

    lid: int
    at: float
    end: str
    code: str | None = None
    #: the disposition's answer as sent (JSON), so a retry gets the same one
    result: bytes | None = None


class LeaseExtended(NamedTuple):
    """A lease renewed."""

    lid: int
    expires_at: float


class HistoryAppended(NamedTuple):
    """A contact-history entry: what happened, and the record's state after it."""

    rid: int
    lid: int | None
    at: float
    agent: str
    campaign: str
    code: str
    phone: str | None
    note: str | None
    revenue: float | None
    fields: dict[str, Any] | None
    callback: dict[str, object] | None
    state: str
    reason: str | None
    due_at: float
    attempts: int
    #: a disposition: the record's fields before it (``prior_of``), so an amendment can
    #: decide again from there
    prior: dict[str, Any] | None = None
    #: an amendment: the history entry it replaces, and why
    amends: int | None = None
    amend_reason: str | None = None
    #: the record's list when known in memory (a pool record's is not: the store then
    #: takes the one its row holds); after a roll, the list it rolled to
    list: str | None = None

    @classmethod
    def of(cls, rec: Record, *, lid: int | None, at: float, agent: str, code: str,
           phone: str | None, note: str | None = None, revenue: float | None = None,
           fields: dict[str, Any] | None = None, prior: dict[str, Any] | None = None,
           amends: int | None = None, amend_reason: str | None = None
           ) -> HistoryAppended:
        """The entry for ``rec`` as it stands after the change."""
        return cls(rec.rid, lid, at, agent, rec.campaign, code, phone, note, revenue,
                   fields or None, _cb(rec.callback), rec.state, rec.reason, rec.due_at,
                   rec.attempts, prior, amends, amend_reason, rec.list)


def prior_of(rec: Record) -> dict[str, Any]:
    """What a disposition may change of ``rec``, before it (stored with the history entry:
    an amendment decides again from these)."""
    return {"state": rec.state, "reason": rec.reason, "due_at": rec.due_at,
            "attempts": rec.attempts, "owner": rec.owner, "team": rec.team,
            "best_cp": rec.best_cp, "phone_idx": rec.phone_idx,
            "callback": _cb(rec.callback), "campaign": rec.campaign, "list": rec.list,
            "phones": [list(p) for p in rec.phone_list()]}


class RecordSaved(NamedTuple):
    """A record's scheduling state after a change; ``moved`` also carries the numbers,
    campaign and list when a disposition changed them."""

    rid: int
    state: str
    reason: str | None
    due_at: float
    attempts: int
    owner: str | None
    team: str | None
    best_cp: int
    phone_idx: int
    callback: dict[str, object] | None
    at: float
    #: (numbers with their statuses, campaign, list), or None when they did not change
    moved: tuple[list[list[str]], str, str] | None = None

    @classmethod
    def of(cls, rec: Record, at: float, moved: bool = False) -> RecordSaved:
        """The change for ``rec`` as it stands now."""
        where = None
        if moved:
            assert rec.list is not None, "a moved record has a list"
            where = (rec.phone_list(), rec.campaign, rec.list)
        return cls(rec.rid, rec.state, rec.reason, rec.due_at, rec.attempts, rec.owner,
                   rec.team, rec.best_cp, rec.phone_idx, _cb(rec.callback), at, where)


class RecordImported(NamedTuple):
    """A new record."""

    rid: int
    id: str
    campaign: str
    list: str
    phones: builtins.list[builtins.list[str]]
    timezone: str
    priority: int
    data: str
    state: str
    reason: str | None
    due_at: float
    attempts: int
    owner: str | None
    team: str | None
    best_cp: int
    phone_idx: int
    callback: dict[str, object] | None
    at: float

    @classmethod
    def of(cls, rec: Record, at: float) -> RecordImported:
        """The change inserting ``rec``."""
        assert rec.id is not None and rec.list is not None and rec.data is not None
        return cls(rec.rid, rec.id, rec.campaign, rec.list, rec.phone_list(), rec.timezone,
                   rec.priority, rec.data, rec.state, rec.reason, rec.due_at, rec.attempts,
                   rec.owner, rec.team, rec.best_cp, rec.phone_idx, _cb(rec.callback), at)


class RecordReimported(NamedTuple):
    """An existing record imported again: its list, numbers, zone, priority, data and
    (when given) team."""

    rid: int
    list: str
    phones: builtins.list[builtins.list[str]]
    timezone: str
    priority: int
    data: str
    team: str | None
    at: float


class QuoteSaved(NamedTuple):
    """A record's quote (expected-value scoring): from its data at import, or from a
    disposition's fields. ``value`` None clears it."""

    rid: int
    value: float | None
    chance: float | None


class NumberListed(NamedTuple):
    """A number put on the DNC or block list (one list per number: the last one wins)."""

    number: str
    list: str
    at: float
    rid: int | None
    agent: str | None
    #: the list's version after this change (``Engine.list_versions``)
    version: int = 0


class NumberUnlisted(NamedTuple):
    """A number taken off its list (an amendment undid the disposition that listed it)."""

    number: str
    list: str
    version: int
    at: float


class AgentSaved(NamedTuple):
    """An agent's login state."""

    agent: str
    campaigns: list[str]
    teams: list[str]
    logged_in: bool
    at: float


class ReminderSent(NamedTuple):
    """A callback reminder went out (one per record and callback instant)."""

    rid: int
    at: float
    remind_at: float
    sent_at: float
    recipients: list[str]
    channels: dict[str, Any]


Change = (LeaseIssued | LeaseEnded | LeaseExtended | HistoryAppended | RecordSaved
          | RecordImported | RecordReimported | NumberListed | NumberUnlisted | AgentSaved
          | ReminderSent | QuoteSaved)

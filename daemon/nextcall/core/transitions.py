"""The core's mutating calls: each changes the engine and returns what must be made
durable, as change records (``changes.py``).

Handlers call these, never the engine's mutators directly, so the rule "every change to
memory has its change record" lives in one place: a handler takes the records and hands
them to the store; it never builds one. All are synchronous and pure apart from the engine
they change; none reads a clock (``now`` is given).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .changes import (
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
    prior_of,
)
from .engine import AgentSession, Engine
from .records import CallbackIntent, Lease, Record
from .results import Outcome
from .scoring import quote_from_data


def issue(engine: Engine, agent: str, campaigns: tuple[str, ...], teams: tuple[str, ...],
          count: int, uid: int, now: float) -> tuple[list[Lease], list[Change]]:
    """Lease up to ``count`` of the best records for ``agent``."""
    leases = engine.next(agent, campaigns, teams, count, uid, now)
    return leases, [LeaseIssued.of(lz) for lz in leases]


def dispose(engine: Engine, lease: Lease, outcome: Outcome, now: float, *, code: str,
            agent: str, phone: str | None, note: str | None, revenue: float | None,
            answer: bytes) -> list[Change]:
    """Apply a decided outcome to a leased record; ``answer`` is kept for retries."""
    rec = lease.record
    moved = outcome.phones is not None or outcome.campaign is not None
    prior = prior_of(rec)
    if outcome.listed:
        prior["listed"] = [list(x) for x in outcome.listed]
    engine.dispose(lease, outcome, now, answer, code)
    changes: list[Change] = [
        HistoryAppended.of(rec, lid=lease.lid, at=now, agent=agent, code=code, phone=phone,
                           note=note, revenue=revenue, fields=outcome.fields, prior=prior),
        LeaseEnded(lease.lid, now, "disposed", code, answer),
    ]
    versions = engine.list_versions
    changes += [NumberListed(number, which, now, rec.rid, agent, versions[which])
                for number, which in outcome.listed]
    changes.append(RecordSaved.of(rec, now, moved=moved))
    if outcome.quote is not None:
        changes.append(QuoteSaved(rec.rid, *outcome.quote))
    return changes


def amend(engine: Engine, current: Record, new: Record, outcome: Outcome, now: float, *,
          lid: int | None, code: str, agent: str, phone: str | None, note: str | None,
          revenue: float | None, prior: dict[str, Any], amends: int, why: str,
          unlist: Iterable[str]) -> list[Change]:
    """Replace a disposition: ``current`` (not leased) becomes ``new``, the value
    ``outcome`` gives the record as it was before the disposition (``prior``); numbers
    the replaced disposition listed and this one does not (``unlist``) leave their list.
    The history keeps both entries: the new one names the one it ``amends``."""
    changes: list[Change] = []
    for number in unlist:
        got = engine.remove_listed(number)
        if got is not None:
            engine.restore_number(number, now)
            changes.append(NumberUnlisted(number, got[0], got[1], now))
    engine.amend(current, new, outcome.listed, now)
    if outcome.listed:
        prior = {**prior, "listed": [list(x) for x in outcome.listed]}
    else:
        prior = {k: v for k, v in prior.items() if k != "listed"}
    changes.append(HistoryAppended.of(
        new, lid=lid, at=now, agent=agent, code=code, phone=phone, note=note,
        revenue=revenue, fields=outcome.fields, prior=prior, amends=amends,
        amend_reason=why))
    versions = engine.list_versions
    changes += [NumberListed(number, which, now, new.rid, agent, versions[which])
                for number, which in outcome.listed]
    changes.append(RecordSaved.of(new, now, moved=True))
    return changes


def release(engine: Engine, lease: Lease, now: float) -> list[Change]:
    """Give a leased record back unchanged."""
    engine.release(lease, now)
    return [LeaseEnded(lease.lid, now, "released")]


def extend(engine: Engine, lease: Lease, now: float, seconds: float) -> list[Change]:
    """Renew a lease for ``seconds`` from ``now``."""
    engine.extend(lease, now, seconds)
    return [LeaseExtended(lease.lid, lease.expires_at)]


def clock_stepped(engine: Engine, step: float, now: float) -> tuple[int, list[Change]]:
    """The wall clock was set by ``step`` seconds and reads ``now``: every live lease's
    expiry moves with it, so each keeps the time it had left; after a step back, due
    callbacks and appointments whose instant lies ahead again wait for it again (nothing
    stored changes for them). Returns how many of those moved, and the leases' changes."""
    changes: list[Change] = [LeaseExtended(lz.lid, lz.expires_at)
                             for lz in engine.shift_leases(step)]
    return (engine.clock_set_back(now) if step < 0 else 0), changes


def expire(engine: Engine, now: float) -> tuple[list[Lease], list[Change]]:
    """End the leases whose time is up; their records are free again."""
    expired = engine.expire(now)
    return expired, [LeaseEnded(lz.lid, now, "expired") for lz in expired]


def reopen(engine: Engine, rec: Record, now: float, *, actor: str, code: str,
           note: str | None = None, due_at: float | None = None,
           callback: CallbackIntent | None = None) -> list[Change]:
    """Bring a record back outside the call cycle (an admin's reopen, a scheduled
    callback, a list reload): its history says who and why."""
    engine.reopen(rec, now, due_at, callback)
    return [HistoryAppended.of(rec, lid=None, at=now, agent=actor, code=code, phone=None,
                               note=note),
            RecordSaved.of(rec, now)]


def login(engine: Engine, agent: str, campaigns: Iterable[str], teams: Iterable[str],
          now: float) -> tuple[AgentSession, list[Change]]:
    """An agent starts work on campaigns and teams."""
    s = engine.login(agent, campaigns, teams)
    return s, [AgentSaved(agent, list(s.campaigns), list(s.teams), True, now)]


def logout(engine: Engine, agent: str, now: float) -> list[Change]:
    """An agent stops work (``agent`` must have logged in)."""
    s = engine.agents[agent]
    engine.logout(agent)
    return [AgentSaved(agent, list(s.campaigns), list(s.teams), False, now)]


def import_record(engine: Engine, rec: Record, now: float) -> list[Change]:
    """A new record joins the pool (``rec.rid`` is taken from ``engine.next_rid``); a
    campaign that scores by expected value from data takes the record's quote from it."""
    camp = engine.campaigns.get(rec.campaign)
    if camp is not None and rec.quote is None:
        rec.quote = quote_from_data(camp.scoring, rec.data)
    engine.add(rec, now)
    changes: list[Change] = [RecordImported.of(rec, now)]
    if rec.quote is not None:
        changes.append(QuoteSaved(rec.rid, *rec.quote))
    return changes


def reimport(engine: Engine, rid: int, row: dict[str, Any], list_name: str,
             phones: list[list[str]], now: float, campaign: str | None = None
             ) -> list[Change]:
    """An existing record imported again: new list, numbers, zone, priority, data and
    (when given) team; an open record is re-placed at once."""
    live = engine.record(rid)
    name = live.campaign if live is not None else campaign
    camp = engine.campaigns.get(name) if name is not None else None
    quote = quote_from_data(camp.scoring, row["data"]) if camp is not None else None
    if live is not None:
        live.phones, live.timezone, live.priority = phones, row["timezone"], row["priority"]
        if row["team"] is not None:
            live.team = row["team"]
        if quote is not None:
            live.quote = quote
        engine.update_record(live, now)
    changes: list[Change] = [RecordReimported(rid, list_name, phones, row["timezone"],
                                              row["priority"], row["data"], row["team"], now)]
    if quote is not None:
        changes.append(QuoteSaved(rid, *quote))
    return changes

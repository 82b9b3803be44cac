"""The engine: every callable record in priority structures, and who gets what next.

Per campaign:

- ``dormant``: ready records not yet due, by due time;
- ``zones``: due ready records, one heap per timezone, by (-score, due, import order), so
  the pool's best callable record is the best top among the zones whose window is open
  now (a handful of heaps), never a scan past records whose window is closed;
- ``cb_dormant``: callbacks not yet due, by due time;
- ``personal[agent]``: due callbacks for their owner, by due time;
- ``team[team]`` and ``anyone``: due callbacks for a team or any agent, by
  (-contact priority, due, import order).

Entries are tuples ending in ``(..., rid, ver, record)``; a record's ``ver`` is bumped on
every move, so an entry whose ``ver`` differs is stale and skipped when it reaches a top
(lazy deletion). All operations are O(log n) amortised plus the number of zones and of
due callbacks skipped because their window is closed.

Only the event-loop thread calls this, and nothing here awaits, so there are no locks.
"""

from __future__ import annotations

import heapq
import secrets
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import calendar
from .errors import BadRequest, NotLoggedIn, UnknownCampaign
from .model import Campaign
from .records import CALLBACK, CLOSED, HELD, READY, Lease, Record
from .results import Outcome
from .scoring import address_score

INF = float("inf")
#: ended leases remembered for idempotent retries and precise errors
ENDED_MEMORY = 200_000

# slots: where a record's live entry is
S_DORMANT = "dormant"
S_DUE = "due"
S_CB_DORMANT = "callback_upcoming"
S_CB_DUE = "callback_due"
S_LEASED = "leased"
#: open records with no callable number: in no heap until their numbers change
S_NO_NUMBER = "no_number"
#: held for an appointment; then waiting for an admin once the appointment has passed
S_HELD = "held"
S_RESOLUTION = "resolution"
SLOTS = (S_DORMANT, S_DUE, S_CB_DORMANT, S_CB_DUE, S_LEASED, S_NO_NUMBER, S_HELD,
         S_RESOLUTION)

Entry = tuple[Any, ...]


@dataclass(slots=True)
class AgentSession:
    """An agent's login: which campaigns and teams it works."""

    agent: str
    campaigns: tuple[str, ...]
    teams: tuple[str, ...]
    logged_in: bool = True


@dataclass(slots=True)
class Queues:
    """One campaign's priority structures."""

    dormant: list[Entry] = field(default_factory=list)
    zones: dict[str, list[Entry]] = field(default_factory=dict)
    cb_dormant: list[Entry] = field(default_factory=list)
    personal: dict[str, list[Entry]] = field(default_factory=dict)
    team: dict[str, list[Entry]] = field(default_factory=dict)
    anyone: list[Entry] = field(default_factory=list)
    #: held records by appointment time; they move to resolution when it passes
    held: list[Entry] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SLOTS, 0))
    closed: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass(slots=True)
class EndedLease:
    """What became of a lease, for retried requests."""

    secret: str
    kind: str  # disposed | released | expired
    result: dict[str, Any] | None = None
    code: str | None = None


def callback_standing(due_at: float, grace_s: float, now: float) -> tuple[str, float]:
    """Where a callback stands at ``now``, and how many seconds late it is.

    ``upcoming``: not due yet (0 s late). ``due``: due and waiting for at most the
    campaign's grace period (the time a personal-then-team callback waits for its owner).
    ``overdue``: waiting longer than that.
    """
    if due_at > now:
        return "upcoming", 0.0
    late_s = now - due_at
    return ("overdue" if late_s > grace_s else "due"), late_s


def _live(e: Entry, slot: str) -> bool:
    rec: Record = e[-1]
    return rec.ver == e[-2] and rec.slot == slot


def _pop_due(heap: list[Entry], slot: str, now: float) -> Iterator[Record]:
    """Pop the entries of a by-due-time heap that are due, yielding the live records
    (version already bumped, so their old entries elsewhere are stale)."""
    while heap and heap[0][0] <= now:
        e = heapq.heappop(heap)
        if _live(e, slot):
            rec: Record = e[-1]
            rec.ver += 1
            yield rec


class Engine:
    """Holds every open record and decides hand-outs. Constructing it does nothing else."""

    def __init__(self, campaigns: dict[str, Campaign]) -> None:
        self.campaigns = campaigns
        self.records: dict[str, Record] = {}
        self.queues: dict[str, Queues] = {name: Queues() for name in campaigns}
        self.leases: dict[int, Lease] = {}
        self.lease_expiry: list[tuple[float, int, int]] = []
        self.ended: OrderedDict[int, EndedLease] = OrderedDict()
        self.agents: dict[str, AgentSession] = {}
        self.next_lid = 1
        self.next_rid = 1
        #: (campaign, zone, override) -> (open, valid from, valid until)
        self._windows: dict[tuple[str, str, bool], tuple[bool, float, float]] = {}
        #: numbers on the DNC (``"dnc"``) or block (``"block"``) list: never handed out
        self.listed: dict[str, str] = {}
        #: every record in the callback state (leased or not, due or not), by rid: the
        #: callback queue and reminders read it without walking all records
        self.callbacks: dict[int, Record] = {}

    # ----------------------------------------------------------------- helpers
    def campaign(self, name: str, field_: str = "campaign") -> Campaign:
        """The campaign named ``name``.

        Raises:
            UnknownCampaign: no such campaign.
        """
        c = self.campaigns.get(name)
        if c is None:
            raise UnknownCampaign(f"no campaign {name!r}", field=field_)
        return c

    def _q(self, name: str) -> Queues:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = Queues()
        return q

    def window_open(self, campaign: Campaign, tz_key: str, now: float,
                    override: bool = False) -> tuple[bool, float]:
        """Cached ``calendar.window_state`` per (campaign, zone, override).

        An answer is reused only between the instant it was computed and its promise, so
        a wall clock stepped backwards gets a fresh answer, not one from its future.
        """
        key = (campaign.name, tz_key, override)
        hit = self._windows.get(key)
        if hit is not None and hit[1] <= now < hit[2]:
            return hit[0], hit[2]
        state = calendar.window_state(campaign, calendar.zone(tz_key), now, override)
        self._windows[key] = (state[0], now, state[1])
        return state

    def _set_slot(self, rec: Record, slot: str) -> None:
        counts = self._q(rec.campaign).counts
        if rec.slot:
            counts[rec.slot] -= 1
        rec.slot = slot
        if slot:
            counts[slot] += 1

    def rescore(self, rec: Record) -> None:
        """Recompute the address score from the campaign's weights."""
        camp = self.campaigns.get(rec.campaign)
        if camp is not None:
            rec.score = address_score(camp.scoring, rec.priority, rec.best_cp, rec.attempts)

    # ----------------------------------------------------------------- placement
    def place(self, rec: Record, now: float) -> None:
        """Put ``rec`` (not leased) where its state says it belongs."""
        rec.ver += 1
        q = self._q(rec.campaign)
        if rec.state == CALLBACK:
            self.callbacks[rec.rid] = rec
        else:
            self.callbacks.pop(rec.rid, None)
        if rec.state in (READY, CALLBACK) and rec.callable_phone(self.listed) is None:
            self._set_slot(rec, S_NO_NUMBER)
        elif rec.state == HELD:
            self.records[rec.id] = rec
            if rec.due_at <= now:
                self._set_slot(rec, S_RESOLUTION)
            else:
                heapq.heappush(q.held, (rec.due_at, rec.rid, rec.ver, rec))
                self._set_slot(rec, S_HELD)
        elif rec.state == READY:
            if rec.due_at <= now:
                heap = q.zones.get(rec.timezone)
                if heap is None:
                    heap = q.zones[rec.timezone] = []
                heapq.heappush(heap, (-rec.score, rec.due_at, rec.rid, rec.ver, rec))
                self._set_slot(rec, S_DUE)
            else:
                heapq.heappush(q.dormant, (rec.due_at, rec.rid, rec.ver, rec))
                self._set_slot(rec, S_DORMANT)
        elif rec.state == CALLBACK:
            if rec.due_at <= now:
                self._push_due_callback(q, rec)
            else:
                heapq.heappush(q.cb_dormant, (rec.due_at, rec.rid, rec.ver, rec))
                self._set_slot(rec, S_CB_DORMANT)
        else:
            self._set_slot(rec, "")
            self.records.pop(rec.id, None)
            if rec.state == CLOSED:
                q.closed[rec.reason or "final"] += 1

    def _push_due_callback(self, q: Queues, rec: Record) -> None:
        cb = rec.callback
        scope = cb.scope if cb else "anyone"
        cp = -(cb.contact_priority if cb else 0)
        if scope in ("personal", "personal_then_team") and rec.owner:
            heapq.heappush(q.personal.setdefault(rec.owner, []),
                           (rec.due_at, rec.rid, rec.ver, rec))
        if scope in ("team", "personal_then_team") and rec.team:
            heapq.heappush(q.team.setdefault(rec.team, []), (cp, rec.due_at, rec.rid,
                                                             rec.ver, rec))
        elif scope == "anyone" or (scope == "personal_then_team" and not rec.team) \
                or (scope == "personal" and not rec.owner):
            heapq.heappush(q.anyone, (cp, rec.due_at, rec.rid, rec.ver, rec))
        self._set_slot(rec, S_CB_DUE)

    def add(self, rec: Record, now: float) -> None:
        """Take in a new or rebuilt record (leases are attached by ``restore_lease``)."""
        self.records[rec.id] = rec
        self.next_rid = max(self.next_rid, rec.rid + 1)
        self.rescore(rec)
        self.place(rec, now)

    def bulk_load(self, recs: Iterable[Record], now: float) -> int:
        """Rebuild: like ``add`` for many records, building each heap once (O(n)).

        The loop is the start-up hot path (a million records): per-campaign lookups are
        hoisted and ready records are appended to plain lists heapified at the end.
        """
        n = 0
        records = self.records
        max_rid = 0
        per_campaign: dict[str, tuple[Queues, Any, dict[str, list[Entry]], dict[str, int],
                                      list[Entry]]] = {}
        later: list[Record] = []
        for rec in recs:
            records[rec.id] = rec
            n += 1
            if rec.rid > max_rid:
                max_rid = rec.rid
            pc = per_campaign.get(rec.campaign)
            if pc is None:
                q = self._q(rec.campaign)
                camp = self.campaigns.get(rec.campaign)
                pc = per_campaign[rec.campaign] = (q, camp.scoring if camp else None,
                                                   q.zones, q.counts, q.dormant)
            q, w, zones, counts, dormant = pc
            if w is not None:
                a = rec.attempts
                cp = rec.best_cp
                rec.score = (w.priority * rec.priority + w.contact * (cp - 1 if cp > 1 else 0)
                             + w.attempt * (a if a < w.max_attempt_penalty
                                            else w.max_attempt_penalty))
            phones = rec.phones
            if rec.state != READY or ('"active"' not in phones if isinstance(phones, str)
                                      else rec.callable_phone(self.listed) is None):
                # callbacks and records with no usable number take the general path
                later.append(rec)
                continue
            rec.ver = 1
            if rec.due_at <= now:
                heap = zones.get(rec.timezone)
                if heap is None:
                    heap = zones[rec.timezone] = []
                heap.append((-rec.score, rec.due_at, rec.rid, 1, rec))
                rec.slot = S_DUE
                counts[S_DUE] += 1
            else:
                dormant.append((rec.due_at, rec.rid, 1, rec))
                rec.slot = S_DORMANT
                counts[S_DORMANT] += 1
        self.next_rid = max(self.next_rid, max_rid + 1)
        for q in self.queues.values():
            heapq.heapify(q.dormant)
            for heap in q.zones.values():
                heapq.heapify(heap)
        for rec in later:
            self.place(rec, now)
        return n

    def set_closed_counts(self, campaign: str, reason: str, count: int) -> None:
        """Rebuild: closed records stay in the database only; keep their counts."""
        self._q(campaign).closed[reason] = count

    # ----------------------------------------------------------------- time
    def promote(self, q: Queues, now: float) -> None:
        """Move records that became due from the dormant heaps to the due structures."""
        for rec in _pop_due(q.dormant, S_DORMANT, now):
            heap = q.zones.get(rec.timezone)
            if heap is None:
                heap = q.zones[rec.timezone] = []
            heapq.heappush(heap, (-rec.score, rec.due_at, rec.rid, rec.ver, rec))
            self._set_slot(rec, S_DUE)
        for rec in _pop_due(q.held, S_HELD, now):
            self._set_slot(rec, S_RESOLUTION)
        for rec in _pop_due(q.cb_dormant, S_CB_DORMANT, now):
            self._push_due_callback(q, rec)

    def expire(self, now: float) -> list[Lease]:
        """End every lease whose time is up; their records go back unchanged."""
        out = []
        exp = self.lease_expiry
        while exp and exp[0][0] <= now:
            _, lid, ver = heapq.heappop(exp)
            lease = self.leases.get(lid)
            if lease is None or lease.ver != ver:
                continue
            self._end(lease, "expired")
            self.place(lease.record, now)
            out.append(lease)
        return out

    def next_wake(self, campaigns: Iterable[str], now: float) -> float:
        """Earliest instant at which a hand-out might become possible for ``campaigns``:
        something becomes due, a window opens, a grace period ends or a lease expires."""
        wake = self.lease_expiry[0][0] if self.lease_expiry else INF
        for name in campaigns:
            q = self.queues.get(name)
            camp = self.campaigns.get(name)
            if q is None or camp is None or not camp.enabled:
                continue
            if q.dormant:
                wake = min(wake, q.dormant[0][0])
            if q.cb_dormant:
                wake = min(wake, q.cb_dormant[0][0])
            for tz_key, heap in q.zones.items():
                if heap:
                    is_open, until = self.window_open(camp, tz_key, now)
                    if not is_open:
                        wake = min(wake, until)
            for heap in (*q.personal.values(), *q.team.values(), q.anyone):
                for e in heap:
                    if _live(e, S_CB_DUE):
                        rec = e[-1]
                        cb = rec.callback
                        override = bool(cb and cb.override_window)
                        is_open, until = self.window_open(camp, rec.timezone, now, override)
                        wake = min(wake, until)
                        if cb and cb.scope == "personal_then_team":
                            g = rec.due_at + camp.grace_s
                            if g > now:
                                wake = min(wake, g)
        return max(wake, now)

    # ----------------------------------------------------------------- agents
    def login(self, agent: str, campaigns: Iterable[str], teams: Iterable[str]) -> AgentSession:
        """Log ``agent`` in to campaigns and teams (replacing a previous login).

        Raises:
            UnknownCampaign: a campaign does not exist.
        """
        cs = tuple(dict.fromkeys(campaigns))
        for i, c in enumerate(cs):
            self.campaign(c, f"campaigns[{i}]")
        s = AgentSession(agent, cs, tuple(dict.fromkeys(teams)))
        self.agents[agent] = s
        return s

    def logout(self, agent: str) -> None:
        """Mark ``agent`` logged out: its personal-then-team callbacks go to the team."""
        s = self.agents.get(agent)
        if s is not None:
            s.logged_in = False

    def _owner_present(self, owner: str | None, campaign: str) -> bool:
        s = self.agents.get(owner) if owner else None
        return bool(s and s.logged_in and campaign in s.campaigns)

    # ----------------------------------------------------------------- selection
    def _pick_callback(self, heap: list[Entry], camp: Campaign, now: float, agent: str,
                       team_side: bool) -> Entry | None:
        """Best eligible live entry of a due-callback heap, leaving the heap intact."""
        skipped: list[Entry] = []
        found = None
        while heap:
            e = heap[0]
            if not _live(e, S_CB_DUE):
                heapq.heappop(heap)
                continue
            rec: Record = e[-1]
            if self._park(rec):
                heapq.heappop(heap)
                continue
            cb = rec.callback
            ok = self.window_open(camp, rec.timezone, now, bool(cb and cb.override_window))[0]
            if ok and team_side and cb is not None and cb.scope == "personal_then_team" \
                    and rec.owner != agent:
                ok = now >= rec.due_at + camp.grace_s \
                    or not self._owner_present(rec.owner, camp.name)
            if ok:
                found = e
                break
            skipped.append(heapq.heappop(heap))
        for e in skipped:
            heapq.heappush(heap, e)
        return found

    def _park(self, rec: Record) -> bool:
        """Take a record whose numbers are all unusable out of circulation."""
        if rec.callable_phone(self.listed) is not None:
            return False
        rec.ver += 1
        self._set_slot(rec, S_NO_NUMBER)
        return True

    def _pick_pool(self, q: Queues, camp: Campaign, now: float) -> Entry | None:
        best = None
        for tz_key, heap in q.zones.items():
            while heap and (not _live(heap[0], S_DUE) or self._park(heap[0][-1])):
                heapq.heappop(heap)
            if not heap:
                continue
            if not self.window_open(camp, tz_key, now)[0]:
                continue
            if best is None or heap[0][:3] < best[:3]:
                best = heap[0]
        return best

    def select(self, agent: str, campaigns: tuple[str, ...], teams: tuple[str, ...],
               now: float) -> tuple[Record, str] | None:
        """The best record ``agent`` may call now, and why (SPEC §3), without leasing."""
        camps = [self.campaigns[c] for c in campaigns if c in self.campaigns]
        camps = [c for c in camps if c.enabled]
        for c in camps:
            self.promote(self._q(c.name), now)
        # 1. own due callbacks, earliest first
        best = None
        for c in camps:
            heap = self._q(c.name).personal.get(agent)
            if heap:
                e = self._pick_callback(heap, c, now, agent, False)
                if e is not None and (best is None or e[:2] < best[:2]):
                    best = e
        if best is not None:
            return best[-1], "personal_callback"
        # 2. due callbacks of the agent's teams and campaigns: contact priority, earliest
        for c in camps:
            q = self._q(c.name)
            heaps = [q.team[t] for t in teams if t in q.team] + [q.anyone]
            for heap in heaps:
                e = self._pick_callback(heap, c, now, agent, True)
                if e is not None and (best is None or e[:3] < best[:3]):
                    best = e
        if best is not None:
            return best[-1], "team_callback"
        # 3. the pool: score, due, import order
        for c in camps:
            e = self._pick_pool(self._q(c.name), c, now)
            if e is not None and (best is None or e[:3] < best[:3]):
                best = e
        if best is not None:
            return best[-1], "pool"
        return None

    def scope_for(self, agent: str, campaigns: list[str] | None
                  ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The campaigns and teams a ``next`` by ``agent`` draws from.

        Raises:
            UnknownCampaign: a named campaign does not exist.
            BadRequest: neither a login nor ``campaigns``.
        """
        s = self.agents.get(agent)
        teams = s.teams if s and s.logged_in else ()
        if campaigns:
            for i, c in enumerate(campaigns):
                self.campaign(c, f"campaigns[{i}]")
            return tuple(campaigns), teams
        if s is None or not s.logged_in:
            raise NotLoggedIn(f"agent {agent!r} is not logged in; log in or name campaigns",
                              field="campaigns")
        return s.campaigns, teams

    def lease(self, rec: Record, agent: str, uid: int, reason: str, now: float,
              lease_s: float) -> Lease:
        """Hand ``rec`` to ``agent`` until ``now + lease_s``."""
        picked = rec.callable_phone(self.listed)
        idx, phone = picked if picked is not None else (0, "")
        lid = self.next_lid
        self.next_lid += 1
        lease = Lease(lid, secrets.token_urlsafe(12), rec, agent, uid, now, now + lease_s,
                      phone, idx, reason)
        self._attach(lease)
        return lease

    def _attach(self, lease: Lease) -> None:
        rec = lease.record
        rec.ver += 1
        rec.lease = lease
        self._set_slot(rec, S_LEASED)
        self.leases[lease.lid] = lease
        heapq.heappush(self.lease_expiry, (lease.expires_at, lease.lid, lease.ver))

    def restore_lease(self, lease: Lease) -> None:
        """Rebuild: re-attach a persisted unexpired lease."""
        self.next_lid = max(self.next_lid, lease.lid + 1)
        self._attach(lease)

    def next(self, agent: str, campaigns: tuple[str, ...], teams: tuple[str, ...],
             count: int, uid: int, now: float, lease_s: float | None = None) -> list[Lease]:
        """Select and lease up to ``count`` records for ``agent``."""
        self.expire(now)
        out = []
        for _ in range(count):
            picked = self.select(agent, campaigns, teams, now)
            if picked is None:
                break
            rec, reason = picked
            camp = self.campaigns[rec.campaign]
            out.append(self.lease(rec, agent, uid, reason, now,
                                  lease_s if lease_s is not None else camp.lease_s))
        return out

    # ----------------------------------------------------------------- leases
    def find_lease(self, token: str) -> tuple[int, str]:
        """Split a token into (lid, secret).

        Raises:
            BadRequest: malformed token.
        """
        lid_s, _, secret = token.partition(".")
        if not lid_s.isdigit() or not secret:
            raise BadRequest("lease must be a token as returned by next", field="lease")
        return int(lid_s), secret

    def _end(self, lease: Lease, kind: str, result: dict[str, Any] | None = None,
             code: str | None = None) -> None:
        del self.leases[lease.lid]
        lease.ver += 1
        rec = lease.record
        rec.lease = None
        self._set_slot(rec, "")
        self.ended[lease.lid] = EndedLease(lease.secret, kind, result, code)
        if len(self.ended) > ENDED_MEMORY:
            self.ended.popitem(last=False)

    def release(self, lease: Lease, now: float) -> None:
        """Give the record back unchanged."""
        self._end(lease, "released")
        self.place(lease.record, now)

    def extend(self, lease: Lease, now: float, lease_s: float) -> None:
        """Renew the lease to ``now + lease_s``."""
        lease.expires_at = now + lease_s
        lease.ver += 1
        heapq.heappush(self.lease_expiry, (lease.expires_at, lease.lid, lease.ver))

    def dispose(self, lease: Lease, outcome: Outcome, now: float, result: dict[str, Any],
                code: str) -> Record:
        """Apply a decided outcome and end the lease."""
        rec = lease.record
        self._end(lease, "disposed", result, code)
        rec.state = outcome.state
        rec.reason = outcome.reason
        rec.due_at = outcome.due_at
        rec.attempts = outcome.attempts
        rec.owner = outcome.owner
        rec.team = outcome.team
        rec.best_cp = outcome.best_cp
        rec.phone_idx = outcome.phone_idx
        rec.callback = outcome.callback
        if outcome.phones is not None:
            rec.phones = outcome.phones
        if outcome.campaign is not None:
            rec.campaign = outcome.campaign
            rec.list = outcome.list_name or rec.list
        for number, which in outcome.listed:
            self.listed[number] = which
        self.rescore(rec)
        self.place(rec, now)
        return rec

    def reopen(self, rec: Record, now: float, due_at: float | None = None,
               callback: Any = None) -> None:
        """Put a closed, held or resolution record (or an open one) back: into the pool at
        ``due_at`` (now by default), or as a callback."""
        if rec.lease is not None:
            raise BadRequest("the record is leased; dispose or release it first",
                             field="record")
        self._set_slot(rec, "")
        if rec.state == CLOSED:
            closed = self._q(rec.campaign).closed
            closed[rec.reason or "final"] = max(closed[rec.reason or "final"] - 1, 0)
        rec.reason = None
        if callback is not None:
            rec.state, rec.callback = CALLBACK, callback
            rec.due_at, rec.owner = callback.at, callback.owner
            rec.team = callback.team or rec.team
        else:
            rec.state, rec.callback, rec.owner = READY, None, None
            rec.due_at = now if due_at is None else due_at
        self.records[rec.id] = rec
        self.rescore(rec)
        self.place(rec, now)

    def held_records(self, campaign: str | None, now: float) -> list[Record]:
        """Records waiting for reconciliation (appointment passed), oldest first."""
        out = []
        for name, q in self.queues.items():
            if campaign is None or name == campaign:
                self.promote(q, now)
        for rec in self.records.values():
            if rec.slot == S_RESOLUTION and (campaign is None or rec.campaign == campaign):
                out.append(rec)
        out.sort(key=lambda r: (r.due_at, r.rid))
        return out

    # ----------------------------------------------------------------- checks
    def check_invariants(self) -> None:
        """Assert the structures are consistent (tests and ``--check`` call this)."""
        counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SLOTS, 0))
        rids: set[int] = set()
        for rec in self.records.values():
            assert rec.rid not in rids, "duplicate rid"
            rids.add(rec.rid)
            assert rec.state in (READY, CALLBACK, HELD), (rec.id, rec.state)
            assert rec.slot in SLOTS, (rec.id, rec.slot)
            counts[rec.campaign][rec.slot] += 1
            if rec.slot == S_LEASED:
                assert rec.lease is not None and self.leases.get(rec.lease.lid) is rec.lease
            else:
                assert rec.lease is None
        for name, q in self.queues.items():
            assert q.counts == counts[name], (name, q.counts, dict(counts[name]))
            heaps = [q.dormant, q.cb_dormant, q.anyone, q.held, *q.zones.values(),
                     *q.personal.values(), *q.team.values()]
            for h in heaps:
                for i in range(1, len(h)):
                    assert not h[i] < h[(i - 1) // 2], "heap order"
            live: dict[str, int] = defaultdict(int)
            for slot, hs in ((S_DORMANT, [q.dormant]), (S_DUE, list(q.zones.values())),
                             (S_CB_DORMANT, [q.cb_dormant])):
                for h in hs:
                    for e in h:
                        if _live(e, slot):
                            live[slot] += 1
                            assert e[-1].campaign == name
            for slot in (S_DORMANT, S_DUE, S_CB_DORMANT):
                assert live[slot] == counts[name][slot], (name, slot, live[slot])
        assert self.callbacks == {r.rid: r for r in self.records.values()
                                  if r.state == CALLBACK}, "callback index"
        holders = set()
        for lid, lease in self.leases.items():
            assert lease.lid == lid
            assert lease.record.lease is lease
            assert lease.record.id not in holders, "record leased twice"
            holders.add(lease.record.id)

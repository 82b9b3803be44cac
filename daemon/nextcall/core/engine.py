"""The engine: every open record as columns, the priority structures, and who gets what next.

Memory is what makes a million-record heap affordable, so a record is not an object here.
Its scheduling fields live in typed arrays indexed by its record number (``rid``): about
45 bytes a record. Only what selection needs is kept: campaign, timezone, priority, due
time, attempts, best contact priority, the number to dial (as an integer, or a JSON list
for records with several numbers or non-active ones), state and slot. Free data, the
record's id and list stay in the database and are read when the record is handed out.
Callback and appointment records (few) also keep an ``Extra`` with id, owner, team and the
callback's intent.

Per campaign (``Queues``):

- ``dormant``: ready records not yet due, by due time;
- ``zones[tz]``: due ready records, one heap per timezone, by (-score, due, rid);
- ``heads``: a heap of the open zones' fronts, so the pool's best callable record is found
  without looking at closed zones or scanning zones at all; zones open and close at the
  instants ``calendar.window_state`` promises, kept in ``wheap``;
- ``cb_dormant``: callbacks not yet due; ``personal[agent]``, ``team[team]``, ``anyone``:
  due callbacks; ``held``: appointments not yet passed.

Entries are packed integer keys (``nextcall.core.keys``) carrying the record's placement
generation; a moved record's old entries are stale and skipped at the top (lazy deletion).
Selection is O(log n) amortised plus the due callbacks skipped because their window is
closed. Only the event-loop thread calls this and nothing here awaits, so no locks.
"""

from __future__ import annotations

import base64
import heapq
import os
from array import array
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from . import calendar
from .errors import BadRequest, NotLoggedIn, UnknownCampaign
from .keys import (DUE_SCALE, GEN_BITS, GEN_MASK, RID_MASK, RunHeap, callback_key, due_q,
                   due_q_of, gen_of, pool_key, rid_of, time_key)
from .model import Campaign, Scoring
from .records import CALLBACK, CLOSED, HELD, PHONE_ACTIVE, READY, CallbackIntent, Lease, Record
from .results import Outcome

INF = float("inf")
#: ended leases remembered for idempotent retries and precise errors (older ones are
#: looked up in the database)
ENDED_MEMORY = 20_000

# slots: where a record's live entry is (names as stats and metrics show them)
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
SLOT_NAMES = ("", *SLOTS)
(N_NONE, N_DORMANT, N_DUE, N_CB_DORMANT, N_CB_DUE, N_LEASED, N_NO_NUMBER, N_HELD,
 N_RESOLUTION) = range(len(SLOT_NAMES))
#: open states as stored in the state column
STATE_NAMES = (READY, CALLBACK, HELD)
_STATE_CODE = {name: i for i, name in enumerate(STATE_NAMES)}
ST_READY, ST_CALLBACK, ST_HELD = range(3)

#: the columns, by array type code
_COLUMNS = (("camp", "H"), ("tz", "H"), ("due", "d"), ("score", "d"), ("prio", "h"),
            ("att", "I"), ("bcp", "b"), ("pidx", "B"), ("slot", "B"), ("state", "B"),
            ("gen", "I"), ("phone", "q"))


@dataclass(slots=True)
class AgentSession:
    """An agent's login: which campaigns and teams it works."""

    agent: str
    campaigns: tuple[str, ...]
    teams: tuple[str, ...]
    logged_in: bool = True


@dataclass(slots=True)
class Extra:
    """What a callback or appointment record keeps beyond the columns."""

    id: str
    owner: str | None
    team: str | None
    callback: CallbackIntent | None


@dataclass(slots=True)
class Queues:
    """One campaign's priority structures (see the module docstring)."""

    dormant: RunHeap
    zones: dict[int, RunHeap] = field(default_factory=dict)
    #: per zone: open now, and until when that answer holds
    zone_open: dict[int, bool] = field(default_factory=dict)
    zone_until: dict[int, float] = field(default_factory=dict)
    #: due records per zone (live entries), for stats and metrics
    zone_due: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    wheap: list[tuple[float, int]] = field(default_factory=list)
    #: (key, zone): every open zone's representative, ``head_of[zone]``, whose key is at
    #: most the zone's best live key; entries whose key is no longer their zone's
    #: representative are outdated and dropped when they reach the top
    heads: list[tuple[int, int]] = field(default_factory=list)
    head_of: dict[int, int] = field(default_factory=dict)
    #: the latest instant the zone states were brought up to (a clock stepped back
    #: before it recomputes them all)
    win_asof: float = -INF
    #: no dormant record, upcoming callback or appointment falls due before this instant
    #: (a lower bound, so ``next`` does not look at those heaps at every call)
    promote_at: float = -INF
    cb_dormant: list[int] = field(default_factory=list)
    personal: dict[str, list[int]] = field(default_factory=dict)
    team: dict[str, list[int]] = field(default_factory=dict)
    anyone: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    #: open records by slot number (``SLOT_NAMES``); ``counts`` names them
    nslot: list[int] = field(default_factory=lambda: [0] * len(SLOT_NAMES))
    closed: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def counts(self) -> dict[str, int]:
        """Open records by slot name."""
        return dict(zip(SLOTS, self.nslot[1:], strict=True))


@dataclass(slots=True)
class EndedLease:
    """What became of a lease, for retried requests (``result``: the answer's JSON)."""

    secret: str
    kind: str  # disposed | released | expired
    result: bytes | None = None
    code: str | None = None


@dataclass(slots=True)
class ReadyGroup:
    """Ready records of one campaign and timezone, as a rebuild reads them (numpy arrays of
    equal length). ``phone`` is the number to dial as an integer, or 0 when the record's
    numbers are in ``Snapshot``'s ``phones`` (several numbers, or not all active)."""

    campaign: str
    timezone: str
    rid: npt.NDArray[np.int64]
    due: npt.NDArray[np.float64]
    priority: npt.NDArray[np.int64]
    attempts: npt.NDArray[np.int64]
    best_cp: npt.NDArray[np.int64]
    phone_idx: npt.NDArray[np.int64]
    phone: npt.NDArray[np.int64]


def ready_groups(records: Iterable[Record]
                 ) -> tuple[list[ReadyGroup], dict[int, str], list[Record]]:
    """Split record values into what ``Engine.bulk_load`` takes: ready records as columns
    by (campaign, timezone), the JSON numbers of those with several, and the rest."""
    cols: dict[tuple[str, str], list[tuple[int, float, int, int, int, int, int]]] = \
        defaultdict(list)
    phones: dict[int, str] = {}
    others: list[Record] = []
    for rec in records:
        if rec.state != READY:
            others.append(rec)
            continue
        plist = rec.phone_list()
        n = phone_int(plist[0][0]) if len(plist) == 1 and plist[0][1] == PHONE_ACTIVE else 0
        if not n:
            phones[rec.rid] = orjson.dumps(plist).decode()
        cols[(rec.campaign, rec.timezone)].append(
            (rec.rid, rec.due_at, rec.priority, rec.attempts, rec.best_cp, rec.phone_idx, n))
    groups = []
    for (campaign, tz), rows in cols.items():
        rid, due, prio, att, bcp, pidx, phone = (np.array(c) for c in zip(*rows, strict=True))
        groups.append(ReadyGroup(campaign, tz, rid.astype(np.int64), due.astype(np.float64),
                                 prio.astype(np.int64), att.astype(np.int64),
                                 bcp.astype(np.int64), pidx.astype(np.int64),
                                 phone.astype(np.int64)))
    return groups, phones, others


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


class Secrets:
    """Lease secrets: 12 random bytes each (16 URL-safe characters), taken from a block
    read from the system's CSPRNG 512 leases at a time, not one system call per lease
    (the same randomness as ``secrets.token_urlsafe(12)``)."""

    __slots__ = ("_block", "_pos")
    SIZE = 12
    BLOCK = 512

    def __init__(self) -> None:
        self._block = b""
        self._pos = 0

    def __call__(self) -> str:
        pos = self._pos
        if pos >= len(self._block):
            self._block, pos = os.urandom(self.SIZE * self.BLOCK), 0
        self._pos = pos + self.SIZE
        return base64.urlsafe_b64encode(self._block[pos:pos + self.SIZE]).decode()


def phone_int(number: str) -> int:
    """An E.164 number as the integer the columns hold (``+31612345678`` -> 31612345678)."""
    return int(number[1:]) if len(number) > 1 and number[0] == "+" and number[1:].isdigit() \
        and number[1] != "0" else 0


def score_of(w: Scoring, priority: int, best_cp: int, attempts: int) -> float:
    """The address score (``nextcall.core.scoring``), inlined for the hot paths."""
    return (w.priority * priority + w.contact * (best_cp - 1 if best_cp > 1 else 0)
            + w.attempt * (attempts if attempts < w.max_attempt_penalty
                           else w.max_attempt_penalty))


class Engine:
    """Holds every open record and decides hand-outs. Constructing it does nothing else."""

    def __init__(self, campaigns: dict[str, Campaign]) -> None:
        self.campaigns = campaigns
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
        self._listed_n: set[int] = set()
        self._camp_names: list[str] = [""]
        self._camp_idx: dict[str, int] = {}
        #: queues by campaign index (index 0: none)
        self._qs: list[Queues | None] = [None]
        self._zone_names: list[str] = [""]
        self._zone_idx: dict[str, int] = {}
        self.queues: dict[str, Queues] = {}
        #: complex numbers (several, or not all active): [[e164, status], ...] or its JSON
        self._phones: dict[int, list[list[str]] | str] = {}
        self._extras: dict[int, Extra] = {}
        #: rid -> lid of the live lease on it
        self._lease_of: dict[int, int] = {}
        self._open = 0
        self._cap = 0
        self._secret = Secrets()
        self.c_camp = array("H")
        self.c_tz = array("H")
        self.c_due = array("d")
        self.c_score = array("d")
        self.c_prio = array("h")
        self.c_att = array("I")
        self.c_bcp = array("b")
        self.c_pidx = array("B")
        self.c_slot = array("B")
        self.c_state = array("B")
        self.c_gen = array("I")
        self.c_phone = array("q")
        for name in self.campaigns:
            self._q(name)

    # ----------------------------------------------------------------- names, columns
    def campaign(self, name: str, field_: str = "campaign") -> Campaign:
        """The campaign named ``name``.

        Raises:
            UnknownCampaign: no such campaign.
        """
        c = self.campaigns.get(name)
        if c is None:
            raise UnknownCampaign(f"no campaign {name!r}", field=field_)
        return c

    def _cidx(self, name: str) -> int:
        i = self._camp_idx.get(name)
        if i is None:
            i = self._camp_idx[name] = len(self._camp_names)
            self._camp_names.append(name)
            self._qs.append(self._q(name))
        return i

    def _zidx(self, name: str) -> int:
        i = self._zone_idx.get(name)
        if i is None:
            i = self._zone_idx[name] = len(self._zone_names)
            self._zone_names.append(name)
        return i

    def _q(self, name: str) -> Queues:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = Queues(RunHeap(self._dormant_run_key))
        return q

    def _grow(self, rid: int) -> None:
        if rid < self._cap:
            return
        # a quarter more at a time: a ten-million-record engine does not double its columns
        # for one import
        cap = max(rid + 1, self._cap + self._cap // 4, 1024)
        extra = cap - self._cap
        for name, code in _COLUMNS:
            col: array[Any] = getattr(self, "c_" + name)
            col.frombytes(bytes(extra * col.itemsize))
        self._cap = cap

    def __len__(self) -> int:
        """Open records held."""
        return self._open

    def is_open(self, rid: int) -> bool:
        """Whether record ``rid`` is open (in memory)."""
        return 0 < rid < self._cap and self.c_camp[rid] != 0

    def campaign_of(self, rid: int) -> str | None:
        """The campaign of an open record."""
        return self._camp_names[self.c_camp[rid]] if self.is_open(rid) else None

    # ----------------------------------------------------------------- numbers
    def _set_phones(self, rid: int, phones: list[list[str]] | str) -> None:
        n = 0
        if isinstance(phones, str):
            # the stored JSON of one active number, recognised without parsing it
            if phones.startswith('[["+') and phones.endswith('","active"]]') \
                    and '"' not in phones[4:-12]:
                n = phone_int(phones[3:-12])
        elif len(phones) == 1 and phones[0][1] == PHONE_ACTIVE:
            n = phone_int(phones[0][0])
        if n:
            self.c_phone[rid] = n
            self._phones.pop(rid, None)
            return
        self.c_phone[rid] = 0
        self._phones[rid] = phones

    def phones(self, rid: int) -> list[list[str]]:
        """Record ``rid``'s numbers as ``[[e164, status], ...]``."""
        n = self.c_phone[rid]
        if n:
            return [[f"+{n}", PHONE_ACTIVE]]
        phones = self._phones.get(rid)
        if phones is None:
            return []
        if isinstance(phones, str):
            phones = self._phones[rid] = orjson.loads(phones)
        return phones

    def callable_phone(self, rid: int, start: int | None = None) -> tuple[int, str] | None:
        """The number to dial next: the first active one from the record's phone index (or
        ``start``) on, cyclic, that is not on the DNC or block list."""
        n = self.c_phone[rid]
        if n:
            return None if n in self._listed_n else (0, f"+{n}")
        phones = self.phones(rid)
        count = len(phones)
        first = self.c_pidx[rid] if start is None else start
        listed = self.listed
        for k in range(count):
            i = (first + k) % count
            number, status = phones[i]
            if status == PHONE_ACTIVE and number not in listed:
                return i, number
        return None

    def _callable(self, rid: int) -> bool:
        n = self.c_phone[rid]
        if n:
            return n not in self._listed_n
        return self.callable_phone(rid) is not None

    def add_listed(self, number: str, which: str) -> None:
        """Put ``number`` on the DNC (``"dnc"``) or block (``"block"``) list."""
        self.listed[number] = which
        n = phone_int(number)
        if n:
            self._listed_n.add(n)

    def set_listed(self, listed: Iterable[tuple[str, str]]) -> None:
        """Rebuild: the lists as stored."""
        self.listed.clear()
        self._listed_n.clear()
        for number, which in listed:
            self.add_listed(number, which)

    # ----------------------------------------------------------------- windows
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

    def _zone_state(self, q: Queues, camp: Campaign | None, z: int, now: float) -> None:
        """Recompute whether zone ``z`` is open for ``camp`` now; a zone that opened puts
        its front among the heads."""
        if camp is None:
            is_open, until = False, INF
        else:
            is_open, until = calendar.window_state(camp, calendar.zone(self._zone_names[z]),
                                                   now, False)
        was = q.zone_open.get(z, False)
        q.zone_open[z] = is_open
        q.zone_until[z] = until
        if until < INF:
            heapq.heappush(q.wheap, (until, z))
        if is_open and not was:
            self._represent(q, z)

    def _refresh_zones(self, q: Queues, camp: Campaign, now: float) -> None:
        if now < q.win_asof:
            self._reset_zones(q, camp, now)
        q.win_asof = now
        wheap = q.wheap
        while wheap and wheap[0][0] <= now:
            until, z = heapq.heappop(wheap)
            if q.zone_until.get(z) == until:
                self._zone_state(q, camp, z, now)

    def _represent(self, q: Queues, z: int) -> None:
        """Put open zone ``z``'s best entry among the heads as its representative."""
        top = self._zone_top(q, z)
        if top is None:
            q.head_of.pop(z, None)
        else:
            q.head_of[z] = top
            heapq.heappush(q.heads, (top, z))

    def _reset_zones(self, q: Queues, camp: Campaign | None, now: float) -> None:
        """Recompute every zone's window state and the heads (reload, clock stepped back)."""
        q.wheap.clear()
        q.heads.clear()
        q.head_of.clear()
        q.zone_open.clear()
        q.zone_until.clear()
        q.win_asof = now
        for z in q.zones:
            self._zone_state(q, camp, z, now)

    # ----------------------------------------------------------------- keys, liveness
    def _bump(self, rid: int) -> int:
        g = (self.c_gen[rid] + 1) & GEN_MASK
        if g == 0:
            g = 1  # generation 0 marks the rebuild's run entries
        self.c_gen[rid] = g
        return g

    def _live(self, key: int, slot: int) -> bool:
        rid = rid_of(key)
        return self.c_gen[rid] == gen_of(key) and self.c_slot[rid] == slot

    def _dormant_run_key(self, rid: int) -> int | None:
        if self.c_gen[rid] or self.c_slot[rid] != N_DORMANT:
            return None
        return time_key(self.c_due[rid], rid, 0)

    def _zone_run_key(self, rid: int) -> int | None:
        if self.c_gen[rid] or self.c_slot[rid] != N_DUE:
            return None
        return pool_key(self.c_score[rid], self.c_due[rid], rid, 0)

    def _zone_top(self, q: Queues, z: int) -> int | None:
        """Zone ``z``'s best live entry, popping stale ones."""
        zone = q.zones.get(z)
        if zone is None:
            return None
        while True:
            top = zone.top()
            if top is None or self._live(top, N_DUE):
                return top
            zone.pop()

    def _set_slot(self, rid: int, q: Queues, slot: int) -> None:
        c_slot = self.c_slot
        old = c_slot[rid]
        if old == slot:
            return
        nslot = q.nslot
        nslot[old] -= 1
        nslot[slot] += 1
        c_slot[rid] = slot
        if old == N_DUE:
            q.zone_due[self.c_tz[rid]] -= 1
        elif slot == N_DUE:
            q.zone_due[self.c_tz[rid]] += 1

    def rescore(self, rid: int) -> None:
        """Recompute record ``rid``'s address score from its campaign's weights."""
        camp = self.campaigns.get(self._camp_names[self.c_camp[rid]])
        self.c_score[rid] = score_of(camp.scoring, self.c_prio[rid], self.c_bcp[rid],
                                     self.c_att[rid]) if camp is not None else 0.0

    # ----------------------------------------------------------------- placement
    def _place(self, rid: int, now: float) -> None:
        """Put open record ``rid`` (not leased) where its state and due time say."""
        gen = self._bump(rid)
        name = self._camp_names[self.c_camp[rid]]
        q = self._q(name)
        state = self.c_state[rid]
        due = self.c_due[rid]
        if state != ST_HELD and not self._callable(rid):
            self._set_slot(rid, q, N_NO_NUMBER)
        elif state == ST_HELD:
            if due <= now:
                self._set_slot(rid, q, N_RESOLUTION)
            else:
                heapq.heappush(q.held, time_key(due, rid, gen))
                self._set_slot(rid, q, N_HELD)
                if due < q.promote_at:
                    q.promote_at = due
        elif state == ST_READY:
            if due <= now:
                self._push_due(rid, q, gen, now)
            else:
                q.dormant.push(time_key(due, rid, gen))
                self._set_slot(rid, q, N_DORMANT)
                if due < q.promote_at:
                    q.promote_at = due
        elif due <= now:
            self._push_due_callback(rid, q, gen)
        else:
            heapq.heappush(q.cb_dormant, time_key(due, rid, gen))
            self._set_slot(rid, q, N_CB_DORMANT)
            if due < q.promote_at:
                q.promote_at = due

    def _push_due(self, rid: int, q: Queues, gen: int, now: float) -> None:
        z = self.c_tz[rid]
        zone = q.zones.get(z)
        if zone is None:
            zone = q.zones[z] = RunHeap(self._zone_run_key)
        key = pool_key(self.c_score[rid], self.c_due[rid], rid, gen)
        zone.push(key)
        self._set_slot(rid, q, N_DUE)
        if z not in q.zone_until:
            # a zone this campaign has not seen yet: learn its window (pushes its front)
            self._zone_state(q, self.campaigns.get(self._camp_names[self.c_camp[rid]]), z,
                             now)
        elif q.zone_open.get(z):
            rep = q.head_of.get(z)
            if rep is None or key < rep:
                # better than the representative: it becomes the representative
                q.head_of[z] = key
                heapq.heappush(q.heads, (key, z))

    def _push_due_callback(self, rid: int, q: Queues, gen: int) -> None:
        ex = self._extras.get(rid)
        cb = ex.callback if ex is not None else None
        scope = cb.scope if cb is not None else "anyone"
        cp = cb.contact_priority if cb is not None else 0
        due = self.c_due[rid]
        owner = ex.owner if ex is not None else None
        team = ex.team if ex is not None else None
        if scope in ("personal", "personal_then_team") and owner:
            heapq.heappush(q.personal.setdefault(owner, []), time_key(due, rid, gen))
        if scope in ("team", "personal_then_team") and team:
            heapq.heappush(q.team.setdefault(team, []), callback_key(cp, due, rid, gen))
        elif scope == "anyone" or (scope == "personal_then_team" and not team) \
                or (scope == "personal" and not owner):
            heapq.heappush(q.anyone, callback_key(cp, due, rid, gen))
        self._set_slot(rid, q, N_CB_DUE)

    def _store(self, rec: Record) -> None:
        """Write a record value's fields into the columns (not placed yet)."""
        rid = rec.rid
        self._grow(rid)
        if not self.c_camp[rid]:
            self._open += 1
        self.c_camp[rid] = self._cidx(rec.campaign)
        self.c_tz[rid] = self._zidx(rec.timezone)
        self.c_due[rid] = rec.due_at
        self.c_prio[rid] = rec.priority
        self.c_att[rid] = min(rec.attempts, 0xFFFFFFFF)
        self.c_bcp[rid] = rec.best_cp
        self.c_pidx[rid] = rec.phone_idx
        self.c_state[rid] = _STATE_CODE[rec.state]
        self._set_phones(rid, rec.phones)
        if rec.state in (CALLBACK, HELD):
            self._extras[rid] = Extra(rec.id or "", rec.owner, rec.team, rec.callback)
        else:
            self._extras.pop(rid, None)
        self.rescore(rid)

    def add(self, rec: Record, now: float) -> None:
        """Take in a new or rebuilt open record (leases are attached by ``restore_lease``).

        Raises:
            BadRequest: the record is not in an open state.
        """
        if rec.state not in _STATE_CODE:
            raise BadRequest(f"record state {rec.state!r} is not an open state",
                             field="state")
        self.next_rid = max(self.next_rid, rec.rid + 1)
        self._store(rec)
        self._place(rec.rid, now)

    def _forget(self, rid: int, q: Queues) -> None:
        """Take a record out of memory (it closed)."""
        self._set_slot(rid, q, N_NONE)
        self._bump(rid)
        self.c_camp[rid] = 0
        self.c_phone[rid] = 0
        self._phones.pop(rid, None)
        self._extras.pop(rid, None)
        self._open -= 1

    def bulk_load(self, groups: Iterable[ReadyGroup], phones: dict[int, str],
                  others: Iterable[Record], now: float) -> int:
        """Rebuild: every open record in one go.

        ``groups`` are the ready records (columns, see ``ReadyGroup``); ``phones`` the
        numbers of those whose ``phone`` is 0, as stored (JSON); ``others`` the callback
        and appointment records as values. Each zone and the dormant records of each
        campaign become one sorted run (numpy sorts; no per-record objects are made), so a
        million records load in well under a second. Leases are attached afterwards by
        ``restore_lease``. Returns how many records were loaded.
        """
        groups = list(groups)
        others = list(others)
        max_rid = max([int(g.rid.max()) for g in groups if len(g.rid)]
                      + [r.rid for r in others] + [0])
        self._grow(max_rid)
        cap = self._cap
        cols = {name: np.frombuffer(getattr(self, "c_" + name), dtype=np.dtype(code)).copy()
                for name, code in _COLUMNS}
        dormant: dict[str, list[npt.NDArray[np.int64]]] = defaultdict(list)
        n = 0
        for g in groups:
            if not len(g.rid):
                continue
            ci, zi = self._cidx(g.campaign), self._zidx(g.timezone)
            camp = self.campaigns.get(g.campaign)
            w = camp.scoring if camp is not None else None
            rid = g.rid
            score = np.zeros(len(rid)) if w is None else (
                w.priority * g.priority + w.contact * np.maximum(g.best_cp - 1, 0)
                + w.attempt * np.minimum(g.attempts, w.max_attempt_penalty))
            has_number = g.phone != 0
            if not has_number.all():
                # several numbers: callable if any is active (listed ones are found when
                # the record reaches the top, as everywhere)
                others_ok = np.array(['"active"' in phones.get(r, "")
                                      for r in rid[~has_number].tolist()], dtype=bool)
                has_number = has_number.copy()
                has_number[~(g.phone != 0)] = others_ok
            due_now = g.due <= now
            slot = np.where(~has_number, N_NO_NUMBER, np.where(due_now, N_DUE, N_DORMANT))
            cols["camp"][rid] = ci
            cols["tz"][rid] = zi
            cols["due"][rid] = g.due
            cols["score"][rid] = score
            cols["prio"][rid] = g.priority
            cols["att"][rid] = np.minimum(g.attempts, 0xFFFFFFFF)
            cols["bcp"][rid] = g.best_cp
            cols["pidx"][rid] = g.phone_idx
            cols["slot"][rid] = slot
            cols["state"][rid] = ST_READY
            cols["gen"][rid] = 0
            cols["phone"][rid] = g.phone
            q = self._q(g.campaign)
            in_zone = slot == N_DUE
            if in_zone.any():
                zr = rid[in_zone]
                sq = _score_q(score[in_zone])
                dq = _due_q(g.due[in_zone])
                order = np.lexsort((zr, dq, sq))
                run = array("q")
                run.frombytes(zr[order].astype(np.int64).tobytes())
                zone = q.zones.get(zi)
                if zone is None:
                    q.zones[zi] = RunHeap(self._zone_run_key, run)
                else:  # one group per (campaign, zone) is expected; merge if not
                    zone.replace_all(zone.keys() + [
                        pool_key(float(s), float(d), int(r), 0)
                        for r, s, d in zip(zr, score[in_zone], g.due[in_zone], strict=True)])
                q.zone_due[zi] += int(in_zone.sum())
            later = slot == N_DORMANT
            if later.any():
                dormant[g.campaign].append(rid[later])
            for s in (N_DUE, N_DORMANT, N_NO_NUMBER):
                q.nslot[s] += int((slot == s).sum())
            n += len(rid)
        for name, parts in dormant.items():
            rid = np.concatenate(parts)
            order = np.lexsort((rid, _due_q(cols["due"][rid])))
            run = array("q")
            run.frombytes(rid[order].astype(np.int64).tobytes())
            q = self._q(name)
            if len(q.dormant):
                q.dormant.replace_all(q.dormant.keys() + [
                    time_key(float(cols["due"][r]), int(r), 0) for r in rid])
            else:
                q.dormant = RunHeap(self._dormant_run_key, run)
        for name, code in _COLUMNS:
            col = array(code)
            col.frombytes(cols[name][:cap].tobytes())
            setattr(self, "c_" + name, col)
        self._phones.update(phones)
        self._open += n
        self.next_rid = max(self.next_rid, max_rid + 1)
        n += self._load_others(others, now)
        for name, q in self.queues.items():
            q.promote_at = -INF
            self._reset_zones(q, self.campaigns.get(name), now)
        return n

    def _load_others(self, others: list[Record], now: float) -> int:
        """Rebuild: callback and appointment records. Those not yet due go straight into
        their heaps' lists (heapified once); the rest take the general path."""
        touched: set[int] = set()
        for rec in others:
            if rec.state not in (CALLBACK, HELD):
                self.add(rec, now)
                continue
            self.next_rid = max(self.next_rid, rec.rid + 1)
            self._store(rec)
            rid = rec.rid
            if rec.due_at <= now or (rec.state == CALLBACK and not self._callable(rid)):
                self._place(rid, now)
                continue
            gen = self._bump(rid)
            q = self._q(rec.campaign)
            if rec.state == HELD:
                q.held.append(time_key(rec.due_at, rid, gen))
                self._set_slot(rid, q, N_HELD)
            else:
                q.cb_dormant.append(time_key(rec.due_at, rid, gen))
                self._set_slot(rid, q, N_CB_DORMANT)
            touched.add(id(q))
        for q in self.queues.values():
            if id(q) in touched:
                heapq.heapify(q.held)
                heapq.heapify(q.cb_dormant)
                q.promote_at = -INF
        return len(others)

    def set_closed_counts(self, campaign: str, reason: str, count: int) -> None:
        """Rebuild: closed records stay in the database only; keep their counts."""
        self._q(campaign).closed[reason] = count

    # ----------------------------------------------------------------- views
    def record(self, rid: int) -> Record | None:
        """Open record ``rid`` as a value (``id``/``list``/``data`` None for pool records:
        they live in the database)."""
        if not self.is_open(rid):
            return None
        ex = self._extras.get(rid)
        rec = Record(rid, ex.id if ex is not None else None, self._camp_names[self.c_camp[rid]],
                     None, self.phones(rid), self._zone_names[self.c_tz[rid]],
                     self.c_prio[rid], None, STATE_NAMES[self.c_state[rid]], None,
                     self.c_due[rid], self.c_att[rid], ex.owner if ex is not None else None,
                     ex.team if ex is not None else None, self.c_bcp[rid], self.c_pidx[rid],
                     ex.callback if ex is not None else None)
        rec.score = self.c_score[rid]
        rec.slot = SLOT_NAMES[self.c_slot[rid]]
        lid = self._lease_of.get(rid)
        rec.lease = self.leases.get(lid) if lid is not None else None
        return rec

    def slot_of(self, rid: int) -> str:
        """Where open record ``rid`` is held (``""`` when not open)."""
        return SLOT_NAMES[self.c_slot[rid]] if self.is_open(rid) else ""

    def callback_rids(self) -> list[int]:
        """Every record in the callback state (leased or not, due or not)."""
        st = self.c_state
        return [rid for rid in self._extras if st[rid] == ST_CALLBACK and self.is_open(rid)]

    def callback_record(self, rid: int) -> Record | None:
        """Record ``rid`` if it is in the callback state."""
        if rid in self._extras and self.is_open(rid) and self.c_state[rid] == ST_CALLBACK:
            return self.record(rid)
        return None

    def rids_of(self, campaign: str) -> npt.NDArray[np.int64]:
        """Every open record of ``campaign`` (O(capacity), vectorised)."""
        ci = self._camp_idx.get(campaign)
        if ci is None:
            return np.zeros(0, dtype=np.int64)
        camp = np.frombuffer(self.c_camp, dtype=np.uint16)
        return np.flatnonzero(camp == ci).astype(np.int64)

    # ----------------------------------------------------------------- time
    def promote(self, name: str, now: float) -> None:
        """Move records of campaign ``name`` that became due to the due structures."""
        q = self.queues.get(name)
        if q is not None:
            self._promote(q, now)

    def _promote(self, q: Queues, now: float) -> None:
        if now < q.promote_at:
            return
        nq = due_q(now)
        dormant = q.dormant
        while True:
            top = dormant.top()
            if top is None or due_q_of(top) > nq:
                break
            rid = rid_of(top)
            if not self._live(top, N_DORMANT):
                dormant.pop()
                continue
            if self.c_due[rid] > now:
                break
            dormant.pop()
            gen = self._bump(rid)
            if self._callable(rid):
                self._push_due(rid, q, gen, now)
            else:
                self._set_slot(rid, q, N_NO_NUMBER)
        for heap, slot in ((q.held, N_HELD), (q.cb_dormant, N_CB_DORMANT)):
            while heap and due_q_of(heap[0]) <= nq:
                top = heap[0]
                rid = rid_of(top)
                if not self._live(top, slot):
                    heapq.heappop(heap)
                    continue
                if self.c_due[rid] > now:
                    break
                heapq.heappop(heap)
                gen = self._bump(rid)
                if slot == N_HELD:
                    self._set_slot(rid, q, N_RESOLUTION)
                elif self._callable(rid):
                    self._push_due_callback(rid, q, gen)
                else:
                    self._set_slot(rid, q, N_NO_NUMBER)
        # the earliest instant anything left may fall due (stale tops make it early,
        # which costs one more pass, never a miss)
        top = dormant.top()
        at = INF if top is None else due_q_of(top) / DUE_SCALE
        for heap in (q.held, q.cb_dormant):
            if heap:
                at = min(at, due_q_of(heap[0]) / DUE_SCALE)
        q.promote_at = at

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
            self._place(lease.record.rid, now)
            out.append(lease)
        return out

    def expiry_due(self, now: float) -> bool:
        """Whether a lease-expiry entry (maybe a stale one) is due at ``now``."""
        exp = self.lease_expiry
        return bool(exp) and exp[0][0] <= now

    def next_expiry(self) -> float:
        """When the earliest live lease runs out (inf when none)."""
        exp = self.lease_expiry
        while exp:
            at, lid, ver = exp[0]
            lease = self.leases.get(lid)
            if lease is not None and lease.ver == ver:
                return at
            heapq.heappop(exp)
        return INF

    def next_wake(self, campaigns: Iterable[str], now: float) -> float:
        """Earliest instant at which a hand-out might become possible for ``campaigns``:
        something becomes due, a window opens, a grace period ends or a lease expires."""
        wake = self.next_expiry()
        for name in campaigns:
            q = self.queues.get(name)
            camp = self.campaigns.get(name)
            if q is None or camp is None or not camp.enabled:
                continue
            top = q.dormant.top()
            if top is not None:
                wake = min(wake, self.c_due[rid_of(top)] if self._live(top, N_DORMANT)
                           else due_q_of(top) / DUE_SCALE)
            if q.cb_dormant:
                wake = min(wake, due_q_of(q.cb_dormant[0]) / DUE_SCALE)
            self._refresh_zones(q, camp, now)
            for z, due in q.zone_due.items():
                if due > 0 and not q.zone_open.get(z, False):
                    wake = min(wake, q.zone_until.get(z, INF))
            for heap in (*q.personal.values(), *q.team.values(), q.anyone):
                for k in heap:
                    if not self._live(k, N_CB_DUE):
                        continue
                    rid = rid_of(k)
                    ex = self._extras.get(rid)
                    cb = ex.callback if ex is not None else None
                    override = bool(cb and cb.override_window)
                    _, until = self.window_open(camp, self._zone_names[self.c_tz[rid]], now,
                                                override)
                    wake = min(wake, until)
                    if cb and cb.scope == "personal_then_team":
                        g = self.c_due[rid] + camp.grace_s
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
    def _pick_callback(self, heap: list[int], camp: Campaign, q: Queues, now: float,
                       agent: str, team_side: bool) -> int | None:
        """Best eligible live entry of a due-callback heap, leaving the heap intact."""
        skipped: list[int] = []
        found = None
        while heap:
            k = heap[0]
            if not self._live(k, N_CB_DUE):
                heapq.heappop(heap)
                continue
            rid = rid_of(k)
            if not self._callable(rid):
                heapq.heappop(heap)
                self._park(rid, q)
                continue
            ex = self._extras.get(rid)
            cb = ex.callback if ex is not None else None
            ok = self.window_open(camp, self._zone_names[self.c_tz[rid]], now,
                                  bool(cb and cb.override_window))[0]
            if ok and team_side and cb is not None and cb.scope == "personal_then_team" \
                    and ex is not None and ex.owner != agent:
                ok = now >= self.c_due[rid] + camp.grace_s \
                    or not self._owner_present(ex.owner, camp.name)
            if ok:
                found = k
                break
            skipped.append(heapq.heappop(heap))
        for k in skipped:
            heapq.heappush(heap, k)
        return found

    def _park(self, rid: int, q: Queues) -> None:
        """Take a record whose numbers are all unusable out of circulation."""
        self._bump(rid)
        self._set_slot(rid, q, N_NO_NUMBER)

    def _pick_pool(self, q: Queues, camp: Campaign, now: float) -> int | None:
        """The best live, callable entry among the open zones' fronts."""
        self._refresh_zones(q, camp, now)
        heads = q.heads
        if len(heads) > 4 * len(q.zones) + 64:
            self._rebuild_heads(q)
        head_of = q.head_of
        c_gen, c_slot = self.c_gen, self.c_slot
        while heads:
            h, z = heads[0]
            if head_of.get(z) != h:
                heapq.heappop(heads)  # outdated: the zone has a newer representative
                continue
            if not q.zone_open.get(z, False):
                heapq.heappop(heads)
                del head_of[z]  # a zone that opens again is represented anew
                continue
            rid = (h >> GEN_BITS) & RID_MASK
            if c_gen[rid] == h & GEN_MASK and c_slot[rid] == N_DUE:
                # a live representative is the zone's best entry (it is at most as good)
                if self._callable(rid):
                    return h
                self._park(rid, q)
                continue
            top = self._zone_top(q, z)
            if top is None:
                heapq.heappop(heads)
                del head_of[z]
                continue
            if top != h:
                head_of[z] = top
                heapq.heapreplace(heads, (top, z))
                continue
            rid = rid_of(h)
            if not self._callable(rid):
                self._park(rid, q)
                continue
            return h
        return None

    def _rebuild_heads(self, q: Queues) -> None:
        q.heads = [(h, z) for z, h in q.head_of.items()]
        heapq.heapify(q.heads)

    def select(self, agent: str, campaigns: tuple[str, ...], teams: tuple[str, ...],
               now: float) -> tuple[int, str] | None:
        """The best record ``agent`` may call now, and why (SPEC §3), without leasing."""
        camps = []
        for name in campaigns:
            c = self.campaigns.get(name)
            if c is not None and c.enabled:
                q = self._q(name)
                self._promote(q, now)
                camps.append((c, q))
        # 1. own due callbacks, earliest first
        best = None
        for c, q in camps:
            heap = q.personal.get(agent)
            if heap:
                k = self._pick_callback(heap, c, q, now, agent, False)
                if k is not None and (best is None or k < best):
                    best = k
        if best is not None:
            return rid_of(best), "personal_callback"
        # 2. due callbacks of the agent's teams and campaigns: contact priority, earliest
        for c, q in camps:
            for heap in [q.team[t] for t in teams if t in q.team] + [q.anyone]:
                k = self._pick_callback(heap, c, q, now, agent, True)
                if k is not None and (best is None or k < best):
                    best = k
        if best is not None:
            return rid_of(best), "team_callback"
        # 3. the pool: score, due, import order
        for c, q in camps:
            k = self._pick_pool(q, c, now)
            if k is not None and (best is None or k < best):
                best = k
        if best is not None:
            return rid_of(best), "pool"
        return None

    def scope_for(self, agent: str, campaigns: list[str] | None
                  ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The campaigns and teams a ``next`` by ``agent`` draws from.

        Raises:
            UnknownCampaign: a named campaign does not exist.
            NotLoggedIn: neither a login nor ``campaigns``.
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

    def lease(self, rid: int, agent: str, uid: int, reason: str, now: float,
              lease_s: float) -> Lease:
        """Hand record ``rid`` to ``agent`` until ``now + lease_s``."""
        picked = self.callable_phone(rid)
        idx, phone = picked if picked is not None else (0, "")
        rec = self.record(rid)
        assert rec is not None
        lid = self.next_lid
        self.next_lid += 1
        lease = Lease(lid, self._secret(), rec, agent, uid, now, now + lease_s, phone, idx,
                      reason)
        self._attach(lease)
        return lease

    def _attach(self, lease: Lease) -> None:
        rec = lease.record
        rid = rec.rid
        self._bump(rid)
        rec.lease = lease
        rec.slot = S_LEASED
        self._set_slot(rid, self._q(self._camp_names[self.c_camp[rid]]), N_LEASED)
        self.leases[lease.lid] = lease
        self._lease_of[rid] = lease.lid
        self._push_expiry(lease)

    def _push_expiry(self, lease: Lease) -> None:
        exp = self.lease_expiry
        heapq.heappush(exp, (lease.expires_at, lease.lid, lease.ver))
        if len(exp) > 2 * len(self.leases) + 1024:
            # entries of leases disposed long before their expiry would pile up for a
            # whole lease length (millions at full speed): keep the live ones only
            self.lease_expiry = [(lz.expires_at, lz.lid, lz.ver) for lz in self.leases.values()]
            heapq.heapify(self.lease_expiry)

    def restore_lease(self, lease: Lease) -> None:
        """Rebuild: re-attach a persisted unexpired lease to its open record."""
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
            rid, reason = picked
            camp = self.campaigns[self._camp_names[self.c_camp[rid]]]
            out.append(self.lease(rid, agent, uid, reason, now,
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

    def _end(self, lease: Lease, kind: str, result: bytes | None = None,
             code: str | None = None) -> None:
        del self.leases[lease.lid]
        lease.ver += 1
        rec = lease.record
        rec.lease = None
        rid = rec.rid
        self._lease_of.pop(rid, None)
        self._set_slot(rid, self._q(self._camp_names[self.c_camp[rid]]), N_NONE)
        self.ended[lease.lid] = EndedLease(lease.secret, kind, result, code)
        if len(self.ended) > ENDED_MEMORY:
            self.ended.popitem(last=False)

    def release(self, lease: Lease, now: float) -> None:
        """Give the record back unchanged."""
        self._end(lease, "released")
        self._place(lease.record.rid, now)

    def extend(self, lease: Lease, now: float, lease_s: float) -> None:
        """Renew the lease to ``now + lease_s``."""
        lease.expires_at = now + lease_s
        lease.ver += 1
        self._push_expiry(lease)

    def dispose(self, lease: Lease, outcome: Outcome, now: float, result: bytes,
                code: str) -> Record:
        """Apply a decided outcome and end the lease; returns the record's new value."""
        rec = lease.record
        self._end(lease, "disposed", result, code)
        rid = rec.rid
        if outcome.state == READY and self.c_state[rid] == ST_READY and outcome.phones is None \
                and outcome.campaign is None and not outcome.listed:
            # the common case (a retry): only the scheduling columns change
            rec.due_at, rec.attempts = outcome.due_at, outcome.attempts
            rec.best_cp, rec.phone_idx, rec.team = outcome.best_cp, outcome.phone_idx, \
                outcome.team
            self.c_due[rid] = outcome.due_at
            self.c_att[rid] = min(outcome.attempts, 0xFFFFFFFF)
            self.c_bcp[rid] = outcome.best_cp
            self.c_pidx[rid] = outcome.phone_idx
            self.rescore(rid)
            self._place(rid, now)
            rec.score = self.c_score[rid]
            rec.slot = SLOT_NAMES[self.c_slot[rid]]
            return rec
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
            self.add_listed(number, which)
        self._apply(rec, now)
        return rec

    def _apply(self, rec: Record, now: float) -> None:
        """Store ``rec``'s new fields: placed if open, forgotten (counted) if closed."""
        rid = rec.rid
        old_q = self._q(self._camp_names[self.c_camp[rid]]) if self.is_open(rid) else None
        if rec.state == CLOSED:
            if old_q is not None:
                self._forget(rid, old_q)
            self._q(rec.campaign).closed[rec.reason or "final"] += 1
            rec.slot, rec.score = "", 0.0
            return
        if old_q is not None:
            self._set_slot(rid, old_q, N_NONE)
        self._store(rec)
        self._place(rid, now)
        rec.score = self.c_score[rid]
        rec.slot = SLOT_NAMES[self.c_slot[rid]]

    def reopen(self, rec: Record, now: float, due_at: float | None = None,
               callback: CallbackIntent | None = None) -> None:
        """Put a record back (closed, held, in resolution, or open): into the pool at
        ``due_at`` (now by default), or as a callback. ``rec`` is its current value.

        Raises:
            BadRequest: the record is leased.
        """
        if rec.lease is not None or (self.is_open(rec.rid)
                                     and self.c_slot[rec.rid] == N_LEASED):
            raise BadRequest("the record is leased; dispose or release it first",
                             field="record")
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
        self.next_rid = max(self.next_rid, rec.rid + 1)
        self._apply(rec, now)

    def update_record(self, rec: Record, now: float) -> None:
        """Store changed fields of an open, unleased record (an import updated its numbers,
        timezone, priority or team) and place it again."""
        self._apply(rec, now)

    def held_records(self, campaign: str | None, now: float) -> list[Record]:
        """Records waiting for reconciliation (appointment passed), oldest first."""
        for name, q in self.queues.items():
            if campaign is None or name == campaign:
                self._promote(q, now)
        out = []
        for rid in self._extras:
            if self.is_open(rid) and self.c_slot[rid] == N_RESOLUTION:
                rec = self.record(rid)
                if rec is not None and (campaign is None or rec.campaign == campaign):
                    out.append(rec)
        out.sort(key=lambda r: (r.due_at, r.rid))
        return out

    # ----------------------------------------------------------------- reload
    def apply_campaigns(self, new: dict[str, Campaign], now: float) -> None:
        """Swap in ``new`` campaigns: windows are recomputed, and the due heaps of
        campaigns whose scoring weights changed are rebuilt with the new scores."""
        old = self.campaigns
        self.campaigns = new
        self._windows.clear()
        for name in new:
            self._q(name)
        for name, q in self.queues.items():
            camp = new.get(name)
            prev = old.get(name)
            if camp is not None and (prev is None or prev.scoring != camp.scoring):
                self._rescore_campaign(name, q)
            self._reset_zones(q, camp, now)

    def _rescore_campaign(self, name: str, q: Queues) -> None:
        for rid in self.rids_of(name).tolist():
            self.rescore(rid)
        for zone in q.zones.values():
            keys = []
            for k in zone.keys():
                if self._live(k, N_DUE):
                    rid = rid_of(k)
                    keys.append(pool_key(self.c_score[rid], self.c_due[rid], rid, gen_of(k)))
            zone.replace_all(keys)

    def zone_states(self, campaign: str, now: float, every: bool = False
                    ) -> dict[str, tuple[bool, float, int]]:
        """Per timezone with due records (``every``: every zone the campaign has seen):
        (open now, state holds until, due records)."""
        q = self.queues.get(campaign)
        camp = self.campaigns.get(campaign)
        if q is None:
            return {}
        if camp is not None:
            self._refresh_zones(q, camp, now)
        out = {}
        for z in q.zones:
            due = q.zone_due.get(z, 0)
            if due > 0 or every:
                out[self._zone_names[z]] = (bool(camp and q.zone_open.get(z, False)),
                                            q.zone_until.get(z, INF), due)
        return out

    def due_callback_rids(self, campaign: str) -> list[int]:
        """Due callbacks of ``campaign`` not handed out (each record once)."""
        q = self.queues.get(campaign)
        if q is None:
            return []
        seen: dict[int, None] = {}
        for heap in (*q.personal.values(), *q.team.values(), q.anyone):
            for k in heap:
                if self._live(k, N_CB_DUE):
                    seen[rid_of(k)] = None
        return list(seen)

    def due_rids(self, campaign: str, tz_key: str, limit: int) -> list[int]:
        """Up to ``limit`` due pool records of ``campaign`` in zone ``tz_key``."""
        q = self.queues.get(campaign)
        z = self._zone_idx.get(tz_key)
        zone = q.zones.get(z) if q is not None and z is not None else None
        if zone is None:
            return []
        out = []
        for k in zone.keys():
            if self._live(k, N_DUE):
                out.append(rid_of(k))
                if len(out) >= limit:
                    break
        return out

    def scores(self, campaign: str, w: Scoring
               ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64],
                          npt.NDArray[np.float64]]:
        """Every open record of ``campaign``: rids, present scores, scores under ``w``."""
        rids = self.rids_of(campaign)
        prio = np.frombuffer(self.c_prio, dtype=np.int16)[rids].astype(np.float64)
        bcp = np.frombuffer(self.c_bcp, dtype=np.int8)[rids].astype(np.float64)
        att = np.frombuffer(self.c_att, dtype=np.uint32)[rids].astype(np.float64)
        new = (w.priority * prio + w.contact * np.maximum(bcp - 1, 0)
               + w.attempt * np.minimum(att, w.max_attempt_penalty))
        return rids, np.frombuffer(self.c_score, dtype=np.float64)[rids], new

    def lease_of(self, rid: int) -> Lease | None:
        """The live lease on record ``rid``, if any."""
        lid = self._lease_of.get(rid)
        return self.leases.get(lid) if lid is not None else None

    # ----------------------------------------------------------------- checks
    def check_invariants(self) -> None:
        """Assert the structures are consistent (tests call this after every step)."""
        counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SLOTS, 0))
        zone_due: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        n_open = 0
        for rid in range(1, self._cap):
            if not self.c_camp[rid]:
                assert self.c_slot[rid] == N_NONE, (rid, self.c_slot[rid])
                continue
            n_open += 1
            name = self._camp_names[self.c_camp[rid]]
            slot = self.c_slot[rid]
            assert slot != N_NONE, ("open record without a slot", rid)
            counts[name][SLOT_NAMES[slot]] += 1
            if slot == N_DUE:
                zone_due[name][self.c_tz[rid]] += 1
            if self.c_state[rid] in (ST_CALLBACK, ST_HELD):
                assert rid in self._extras, ("extra missing", rid)
        assert n_open == self._open, (n_open, self._open)
        leased = {lz.record.rid for lz in self.leases.values()}
        assert len(leased) == len(self.leases), "record leased twice"
        for rid in leased:
            assert self.c_slot[rid] == N_LEASED, rid
        for name, q in self.queues.items():
            assert q.counts == counts[name], (name, q.counts, dict(counts[name]))
            assert {z: n for z, n in q.zone_due.items() if n} == dict(zone_due[name]), name
            for h in (q.cb_dormant, q.anyone, q.held, q.heads, *q.personal.values(),
                      *q.team.values()):  # type: ignore[assignment]
                for i in range(1, len(h)):
                    assert not h[i] < h[(i - 1) // 2], "heap order"
            live: dict[int, int] = defaultdict(int)
            for slot, keys in ((N_DORMANT, q.dormant.keys()),
                               (N_DUE, [k for z in q.zones.values() for k in z.keys()]),
                               (N_CB_DORMANT, q.cb_dormant)):
                for k in keys:
                    if self._live(k, slot):
                        live[slot] += 1
                        assert self._camp_names[self.c_camp[rid_of(k)]] == name
            for slot in (N_DORMANT, N_DUE, N_CB_DORMANT):
                assert live[slot] == counts[name][SLOT_NAMES[slot]], (name, slot, live[slot])
            for z, is_open in q.zone_open.items():
                if is_open:
                    top = self._zone_top(q, z)
                    rep = q.head_of.get(z)
                    assert top is None or (rep is not None and rep <= top
                                           and (rep, z) in q.heads), \
                        ("no representative for an open zone", name, z)
        for lid, lease in self.leases.items():
            assert lease.lid == lid
            assert lease.record.lease is lease


def _score_q(score: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """``keys.score_q`` over an array (same rounding: half to even)."""
    from .keys import SCORE_MAX, SCORE_SCALE, SCORE_ZERO
    q = SCORE_ZERO - np.round(score * SCORE_SCALE).astype(np.int64)
    return np.clip(q, 0, SCORE_MAX)


def _due_q(due: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """``keys.due_q`` over an array (same truncation)."""
    from .keys import DUE_MAX
    return np.clip((due * DUE_SCALE).astype(np.int64), 0, DUE_MAX)

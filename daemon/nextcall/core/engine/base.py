"""The engine's tables: the columns, the campaign and zone indexes, the numbers and the
DNC/block lists, the window cache, and the record views built from them.

``EngineBase`` is the root of the engine's class chain (``EngineBase`` -> ``Placement`` ->
``Leasing`` -> ``Selection`` -> ``Loading`` -> ``Explaining`` -> ``Engine``): each class
adds one concern and calls only itself and its ancestors. Everything here is state and
O(1) accessors; nothing moves a record between structures.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from .. import calendar
from ..errors import UnknownCampaign
from ..keys import GEN_MASK, RunHeap, gen_of, pool_key, rid_of, time_key
from ..model import Campaign
from ..records import PHONE_ACTIVE, Lease, Quote, Record
from ..scoring import ScoreTerms, score_terms
from .agents import AgentSession
from .columns import (
    COLUMNS,
    N_DORMANT,
    N_DUE,
    SLOT_NAMES,
    ST_CALLBACK,
    STATE_NAMES,
    phone_int,
    score_of,
)
from .queues import Extra, Queues
from .tokens import EndedLease, Secrets


class EngineBase:
    """The engine's state and its accessors (see the module docstring). Constructing it
    does nothing else."""

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
        #: each list's version: one more at every change to it (persisted, and written
        #: into each lease's audit facts)
        self.list_versions: dict[str, int] = {"dnc": 0, "block": 0}
        self._listed_n: set[int] = set()
        self._camp_names: list[str] = [""]
        self._camp_idx: dict[str, int] = {}
        self._zone_names: list[str] = [""]
        self._zone_idx: dict[str, int] = {}
        self.queues: dict[str, Queues] = {}
        #: complex numbers (several, or not all active): [[e164, status], ...] or its JSON
        self._phones: dict[int, list[list[str]] | str] = {}
        self._extras: dict[int, Extra] = {}
        #: open records' quotes (few: only where a campaign or import gave one)
        self.quotes: dict[int, Quote] = {}
        #: rid -> lid of the live lease on it
        self._lease_of: dict[int, int] = {}
        #: rid -> (until, budget) of records parked by an attempt budget (``budgeting``)
        self._held: dict[int, tuple[float, str]] = {}
        self._open = 0
        #: records taken out of memory so far (they closed): readers of stored rows tell
        #: by it whether a record may have closed while they read
        self.closings = 0
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
            self._q(name)
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
        for name, _ in COLUMNS:
            col: array[Any] = getattr(self, "c_" + name)
            col.frombytes(bytes(extra * col.itemsize))
        self._cap = cap

    def __len__(self) -> int:
        """Open records held."""
        return self._open

    def is_open(self, rid: int) -> bool:
        """Whether record ``rid`` is open (in memory)."""
        return 0 < rid < self._cap and self.c_camp[rid] != 0

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

    def add_listed(self, number: str, which: str) -> int:
        """Put ``number`` on the DNC (``"dnc"``) or block (``"block"``) list; returns the
        list's new version."""
        self.listed[number] = which
        n = phone_int(number)
        if n:
            self._listed_n.add(n)
        v = self.list_versions[which] = self.list_versions.get(which, 0) + 1
        return v

    def remove_listed(self, number: str) -> tuple[str, int] | None:
        """Take ``number`` off its list (an amendment undid the disposition that listed
        it); returns (list, its new version), or None when it was not listed."""
        which = self.listed.pop(number, None)
        if which is None:
            return None
        n = phone_int(number)
        if n:
            self._listed_n.discard(n)
        v = self.list_versions[which] = self.list_versions.get(which, 0) + 1
        return which, v

    def set_listed(self, listed: Iterable[tuple[str, str]],
                   versions: dict[str, int] | None = None) -> None:
        """Rebuild: the lists (and their versions) as stored."""
        self.listed.clear()
        self._listed_n.clear()
        for number, which in listed:
            self.add_listed(number, which)
        self.list_versions = {"dnc": 0, "block": 0, **(versions or {})}

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
        """Recompute record ``rid``'s pool score from its campaign's weights."""
        camp = self.campaigns.get(self._camp_names[self.c_camp[rid]])
        quote = self.quotes.get(rid)
        self.c_score[rid] = score_of(camp.scoring, self.c_prio[rid], self.c_bcp[rid],
                                     self.c_att[rid],
                                     quote.expected_value if quote is not None else 0.0
                                     ) if camp is not None else 0.0

    def score_terms(self, rid: int) -> ScoreTerms | None:
        """Open record ``rid``'s score taken apart under its campaign's weights (what
        ``explain`` shows); None when the record or its campaign is not in memory."""
        if not self.is_open(rid):
            return None
        camp = self.campaigns.get(self._camp_names[self.c_camp[rid]])
        if camp is None:
            return None
        return score_terms(camp.scoring, self.c_prio[rid], self.c_bcp[rid], self.c_att[rid],
                           self.quotes.get(rid))

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
                     ex.callback if ex is not None else None, self.quotes.get(rid))
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

    def lease_of(self, rid: int) -> Lease | None:
        """The live lease on record ``rid``, if any."""
        lid = self._lease_of.get(rid)
        return self.leases.get(lid) if lid is not None else None

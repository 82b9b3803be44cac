"""The complete engine: what reload, stats and the tests ask of it beyond the request path.
Swapping in new campaigns (rescoring where weights changed), per-campaign read-outs (zone
states, due records, score changes) and the consistency check.

``Engine`` is the last link of the engine's class chain (see ``base``), the one class the
rest of the daemon constructs and calls.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import numpy.typing as npt

from ..keys import gen_of, pool_key, rid_of
from ..model import Campaign, Scoring
from .columns import (
    N_BUDGET,
    N_CB_DORMANT,
    N_DORMANT,
    N_DUE,
    N_LEASED,
    N_NONE,
    SLOT_NAMES,
    SLOTS,
    ST_CALLBACK,
    ST_HELD,
    scores_of,
)
from .explaining import Explaining
from .queues import Queues


class Engine(Explaining):
    """Holds every open record and decides hand-outs. Constructing it does nothing else."""

    # ----------------------------------------------------------------- reload
    def apply_campaigns(self, new: dict[str, Campaign], now: float) -> None:
        """Swap in ``new`` campaigns: windows are recomputed, and the due heaps of
        campaigns whose scoring weights changed are rebuilt with the new scores."""
        old = self.campaigns
        self.campaigns = new
        self._windows.clear()
        if any((old[n].budgets if n in old else None) != c.budgets for n, c in new.items()) \
                or any(n not in new for n in old):
            self.reset_budgets(now)
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
            for k in zone.keys():  # noqa: SIM118 (a RunHeap, not a dict)
                if self._live(k, N_DUE):
                    rid = rid_of(k)
                    keys.append(pool_key(self.c_score[rid], self.c_due[rid], rid, gen_of(k)))
            zone.replace_all(keys)

    def due_rids(self, campaign: str, tz_key: str, limit: int) -> list[int]:
        """Up to ``limit`` due pool records of ``campaign`` in zone ``tz_key``."""
        q = self.queues.get(campaign)
        z = self._zone_idx.get(tz_key)
        zone = q.zones.get(z) if q is not None and z is not None else None
        if zone is None:
            return []
        out = []
        for k in zone.keys():  # noqa: SIM118 (a RunHeap, not a dict)
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
        quotes = self.quotes
        ev = np.array([quotes[r].expected_value if r in quotes else 0.0
                       for r in rids.tolist()], dtype=np.float64) if quotes else None
        new = scores_of(w, prio, bcp, att, ev)
        return rids, np.frombuffer(self.c_score, dtype=np.float64)[rids], new

    # ----------------------------------------------------------------- checks
    def check_invariants(self) -> None:
        """Assert the structures are consistent (tests call this after every step)."""
        counts, zone_due = self._check_columns()
        leased = {lz.record.rid for lz in self.leases.values()}
        assert len(leased) == len(self.leases), "record leased twice"
        for rid in leased:
            assert self.c_slot[rid] == N_LEASED, rid
        for name, q in self.queues.items():
            assert q.counts == counts[name], (name, q.counts, dict(counts[name]))
            assert {z: n for z, n in q.zone_due.items() if n} == dict(zone_due[name]), name
            self._check_heaps(name, q, counts[name])
        for lid, lease in self.leases.items():
            assert lease.lid == lid
            assert lease.record.lease is lease

    def _check_columns(self) -> tuple[dict[str, dict[str, int]], dict[str, dict[int, int]]]:
        """Open records by campaign and slot name, and due ones by campaign and zone, as
        the columns say."""
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
        return counts, zone_due

    def _check_heaps(self, name: str, q: Queues, counts: dict[str, int]) -> None:
        """Campaign ``name``'s heaps are ordered, hold one live entry per record of their
        slot (``counts``), and every open zone has a representative among the heads."""
        heaps: list[list[Any]] = [q.cb_dormant, q.anyone, q.held, q.heads, q.budget, q.ramp,
                                  *q.personal.values(), *q.team.values()]
        for h in heaps:
            for i in range(1, len(h)):
                assert not h[i] < h[(i - 1) // 2], "heap order"
        live: dict[int, int] = defaultdict(int)
        due_keys = [k for z in q.zones.values() for k in z.keys()]  # noqa: SIM118 (a RunHeap)
        for slot, keys in ((N_DORMANT, q.dormant.keys()), (N_DUE, due_keys),
                           (N_CB_DORMANT, q.cb_dormant), (N_BUDGET, q.budget)):
            for k in keys:
                if self._live(k, slot):
                    live[slot] += 1
                    assert self._camp_names[self.c_camp[rid_of(k)]] == name
        for slot in (N_DORMANT, N_DUE, N_CB_DORMANT, N_BUDGET):
            assert live[slot] == counts[SLOT_NAMES[slot]], (name, slot, live[slot])
        for z, is_open in q.zone_open.items():
            if is_open:
                top = self._zone_top(q, z)
                rep = q.head_of.get(z)
                assert top is None or (rep is not None and rep <= top
                                       and (rep, z) in q.heads), \
                    ("no representative for an open zone", name, z)

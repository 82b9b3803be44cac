"""The rebuild: every open record loaded in one go from what the store read.

Ready records arrive as columns (``ReadyGroup``) and each zone and each campaign's dormant
records become one sorted run (numpy sorts; no per-record objects), so a million records
load in well under a second. ``Loading`` is the fifth link of the engine's class chain
(see ``base``).
"""

from __future__ import annotations

import heapq
from array import array
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from ..keys import (
    DUE_MAX,
    DUE_SCALE,
    SCORE_MAX,
    SCORE_SCALE,
    SCORE_ZERO,
    RunHeap,
    pool_key,
    time_key,
)
from ..records import CALLBACK, HELD, Quote, Record
from .columns import (
    COLUMNS,
    INF,
    N_CB_DORMANT,
    N_DORMANT,
    N_DUE,
    N_HELD,
    N_NO_NUMBER,
    ST_READY,
    scores_of,
)
from .groups import ReadyGroup
from .queues import Queues
from .selection import Selection

#: the rebuild's writable copies of the columns, by name
Columns = dict[str, npt.NDArray[Any]]
#: the quoted records' numbers (sorted) and expected values
EvTable = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]


class Loading(Selection):
    """Bulk loading for the rebuild (see the module docstring)."""

    def bulk_load(self, groups: Iterable[ReadyGroup], phones: dict[int, str],
                  others: Iterable[Record], now: float,
                  quotes: dict[int, Quote] | None = None) -> int:
        """Rebuild: every open record in one go.

        ``groups`` are the ready records (columns, see ``ReadyGroup``); ``phones`` the
        numbers of those whose ``phone`` is 0, as stored (JSON); ``others`` the callback
        and appointment records as values. Each zone and the dormant records of each
        campaign become one sorted run (numpy sorts; no per-record objects are made), so a
        million records load in well under a second. Leases are attached afterwards by
        ``restore_lease``. ``quotes`` are the ready records' quotes (expected-value
        scoring). Returns how many records were loaded.
        """
        groups = list(groups)
        if quotes:
            self.quotes.update(quotes)
        evs = _ev_table(quotes or {})
        others = list(others)
        max_rid = max([int(g.rid.max()) for g in groups if len(g.rid)]
                      + [r.rid for r in others] + [0])
        self._grow(max_rid)
        cap = self._cap
        cols = {name: np.frombuffer(getattr(self, "c_" + name), dtype=np.dtype(code)).copy()
                for name, code in COLUMNS}
        dormant: dict[str, list[npt.NDArray[np.int64]]] = defaultdict(list)
        listed = np.fromiter(self._listed_n, dtype=np.int64, count=len(self._listed_n))
        n = 0
        for g in groups:
            if not len(g.rid):
                continue
            n += self._load_group(g, phones, now, cols, dormant, listed, evs)
        self._load_dormant(dormant, cols)
        for name, code in COLUMNS:
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

    def _load_group(self, g: ReadyGroup, phones: dict[int, str], now: float, cols: Columns,
                    dormant: dict[str, list[npt.NDArray[np.int64]]],
                    listed: npt.NDArray[np.int64], evs: EvTable) -> int:
        """One non-empty ready group into the column copies ``cols``: its due records
        become its zone's run, its dormant ones wait in ``dormant`` for their campaign's
        run. Returns how many records it held."""
        ci, zi = self._cidx(g.campaign), self._zidx(g.timezone)
        camp = self.campaigns.get(g.campaign)
        w = camp.scoring if camp is not None else None
        rid = g.rid
        score = np.zeros(len(rid)) if w is None else scores_of(
            w, g.priority, g.best_cp, g.attempts, _ev_of(evs, rid))
        slot = _group_slots(g, phones, now, listed)
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
            self._load_zone(q, zi, rid[in_zone], score[in_zone], g.due[in_zone])
        later = slot == N_DORMANT
        if later.any():
            dormant[g.campaign].append(rid[later])
        for s in (N_DUE, N_DORMANT, N_NO_NUMBER):
            q.nslot[s] += int((slot == s).sum())
        return len(rid)

    def _load_zone(self, q: Queues, zi: int, zr: npt.NDArray[np.int64],
                   score: npt.NDArray[np.float64], due: npt.NDArray[np.float64]) -> None:
        """Due records ``zr`` (with their scores and due times) as zone ``zi``'s run."""
        sq = _score_q(score)
        dq = _due_q(due)
        order = np.lexsort((zr, dq, sq))
        run = array("q")
        run.frombytes(zr[order].astype(np.int64).tobytes())
        zone = q.zones.get(zi)
        if zone is None:
            q.zones[zi] = RunHeap(self._zone_run_key, run)
        else:  # one group per (campaign, zone) is expected; merge if not
            zone.replace_all(zone.keys() + [
                pool_key(float(s), float(d), int(r), 0)
                for r, s, d in zip(zr, score, due, strict=True)])
        q.zone_due[zi] += len(zr)

    def _load_dormant(self, dormant: dict[str, list[npt.NDArray[np.int64]]],
                      cols: Columns) -> None:
        """Each campaign's dormant records (``cols`` holds their due times) as one run."""
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


def _group_slots(g: ReadyGroup, phones: dict[int, str], now: float,
                 listed: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The slot of each record of ``g``: no number, due or dormant. A record's one number
    on the DNC or block list (``listed``) leaves it no number, as ``_callable`` says."""
    has_number = g.phone != 0
    if listed.size:
        has_number &= ~np.isin(g.phone, listed)
    if not (g.phone != 0).all():
        # several numbers: callable if any is active (listed ones are found when the
        # record reaches the top, as everywhere)
        several = g.phone == 0
        others_ok = np.array(['"active"' in phones.get(r, "")
                              for r in g.rid[several].tolist()], dtype=bool)
        has_number[several] = others_ok
    due_now = g.due <= now
    return np.where(~has_number, N_NO_NUMBER, np.where(due_now, N_DUE, N_DORMANT))

def _ev_table(quotes: dict[int, Quote]) -> EvTable:
    """The quotes as sorted arrays, to look expected values up by record number."""
    rids = np.fromiter(quotes.keys(), dtype=np.int64, count=len(quotes))
    evs = np.fromiter((q.expected_value for q in quotes.values()), dtype=np.float64,
                      count=len(quotes))
    order = np.argsort(rids)
    return rids[order], evs[order]


def _ev_of(evs: EvTable, rid: npt.NDArray[np.int64]) -> npt.NDArray[np.float64] | None:
    """The expected value of each of ``rid`` (0 without a quote); None when none has one."""
    qr, qv = evs
    if not len(qr):
        return None
    at = np.minimum(np.searchsorted(qr, rid), len(qr) - 1)
    hit = qr[at] == rid
    return np.where(hit, qv[at], 0.0) if hit.any() else None


def _score_q(score: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """``keys.score_q`` over an array (same rounding: half to even)."""
    q = SCORE_ZERO - np.round(score * SCORE_SCALE).astype(np.int64)
    return np.clip(q, 0, SCORE_MAX)


def _due_q(due: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """``keys.due_q`` over an array (same truncation)."""
    return np.clip((due * DUE_SCALE).astype(np.int64), 0, DUE_MAX)

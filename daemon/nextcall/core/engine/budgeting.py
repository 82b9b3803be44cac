"""Attempt budgets in the engine: each hand-out's instant per record and per number, and
records held back until the instant their campaign's budgets allow them.

``Budgeting`` is a link of the engine's class chain between ``Leasing`` and
``Selection`` (see ``base``). Nothing is counted for a campaign without budgets, and
selection asks only about the record it is about to hand out: a blocked record is parked
in its campaign's ``budget`` heap until the instant ``core.budgets.held_until`` gives
(O(log n)), so it is not looked at again before then and ``next_wake`` knows the instant.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right, insort
from collections.abc import Iterable
from typing import TypeVar

from .. import calendar
from ..budgets import held_until
from ..keys import rid_of, time_key
from ..model import Campaign
from .columns import N_BUDGET
from .leasing import Leasing
from .queues import Queues

K = TypeVar("K", int, str)


def _pruned(log: dict[K, list[float]], key: K, cut: float) -> list[float]:
    """``log[key]`` without the instants at or before ``cut`` (dropped for good)."""
    times = log.get(key)
    if not times:
        return []
    k = bisect_right(times, cut)
    if k:
        del times[:k]
        if not times:
            del log[key]
    return times


class Budgeting(Leasing):
    """Attempt counts and budget holds (see the module docstring)."""

    #: rid -> instants the record was handed out (ascending)
    _att_rec: dict[int, list[float]]
    #: E.164 number -> instants it was handed out to be dialled (ascending)
    _att_num: dict[str, list[float]]

    def __init__(self, campaigns: dict[str, Campaign]) -> None:
        super().__init__(campaigns)
        self._att_rec = {}
        self._att_num = {}
        self.budget_horizon_s = self._horizon()

    def _horizon(self) -> float:
        """The longest window of any campaign's budgets (0: no budgets anywhere)."""
        return max((c.budgets.horizon_s for c in self.campaigns.values()
                    if c.budgets is not None), default=0.0)

    def note_attempt(self, rid: int, number: str, at: float) -> None:
        """Count a hand-out of record ``rid`` dialling ``number`` at ``at``."""
        insort(self._att_rec.setdefault(rid, []), at)
        if number:
            insort(self._att_num.setdefault(number, []), at)

    def load_attempts(self, rows: Iterable[tuple[int, str | None, float]]) -> int:
        """Rebuild: the hand-outs (rid, number, issued at), oldest first, within the
        longest window, from the lease history; those of open records of campaigns with
        budgets are counted. Returns how many."""
        n = 0
        for rid, number, at in rows:
            if self.is_open(rid):
                camp = self.campaigns.get(self._camp_names[self.c_camp[rid]])
                if camp is not None and camp.budgets is not None:
                    self.note_attempt(rid, number or "", at)
                    n += 1
        return n

    def attempts(self, rid: int, number: str | None, now: float
                 ) -> tuple[list[float], list[float]]:
        """Record ``rid``'s and ``number``'s hand-out instants that can still count."""
        cut = now - self.budget_horizon_s
        rec = _pruned(self._att_rec, rid, cut)
        num = _pruned(self._att_num, number, cut) if number else []
        return rec, num

    def budget_hold(self, rid: int, now: float) -> tuple[float, str] | None:
        """Whether record ``rid``'s campaign budgets hold it back at ``now``: until when,
        and which budget (``core.budgets``); None when they allow it (or there are none).
        This is the fact ``explain`` reports; it does not move the record."""
        if not self.is_open(rid):
            return None
        camp = self.campaigns.get(self._camp_names[self.c_camp[rid]])
        if camp is None or camp.budgets is None:
            return None
        ex = self._extras.get(rid)
        if ex is not None and ex.callback is not None and ex.callback.ignore_budgets:
            return None
        picked = self.callable_phone(rid)
        rec, num = self.attempts(rid, picked[1] if picked else None, now)
        if not rec and not num:
            return None
        tz = calendar.zone(self._zone_names[self.c_tz[rid]])
        return held_until(camp.budgets, rec, num, tz, now)

    def _held_back(self, rid: int, q: Queues, now: float) -> bool:
        """Park record ``rid`` until its budgets allow it, if they hold it back now."""
        hold = self.budget_hold(rid, now)
        if hold is None:
            return False
        gen = self._bump(rid)
        heapq.heappush(q.budget, time_key(hold[0], rid, gen))
        self._set_slot(rid, q, N_BUDGET)
        self._held[rid] = hold
        q.promote_at = min(q.promote_at, hold[0])
        return True

    def held_by_budget(self, rid: int) -> tuple[float, str] | None:
        """(until, budget) of a record parked by a budget, None when it is not parked."""
        if self.is_open(rid) and self.c_slot[rid] == N_BUDGET:
            return self._held.get(rid)
        return None

    def reset_budgets(self, now: float) -> None:
        """Campaigns changed (reload): records parked by the old budgets are placed again
        (the new budgets are asked at their next selection)."""
        self.budget_horizon_s = self._horizon()
        for q in self.queues.values():
            heap, q.budget = q.budget, []
            for k in heap:
                if self._live(k, N_BUDGET):
                    self._place(rid_of(k), now)
        self._held.clear()

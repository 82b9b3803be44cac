"""Putting records where their state and due time say: the zone heaps and their heads
(zones open and close with their calling windows), the dormant, callback and appointment
heaps, promotion of what fell due, and storing a changed record's fields.

``Placement`` is the second link of the engine's class chain (see ``base``). Placing is
O(log n); a record's earlier entries become stale when its generation is bumped.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

import numpy as np

from .. import calendar
from ..errors import BadRequest, MovedOn
from ..keys import DUE_SCALE, RunHeap, callback_key, due_q, due_q_of, pool_key, rid_of, time_key
from ..model import Campaign
from ..records import CALLBACK, CLOSED, HELD, READY, CallbackIntent, Record
from ..windows import window_priority
from .base import EngineBase
from .callbacks import callback_route
from .columns import (
    INF,
    N_BUDGET,
    N_CB_DORMANT,
    N_CB_DUE,
    N_DORMANT,
    N_DUE,
    N_HELD,
    N_LEASED,
    N_NO_NUMBER,
    N_NONE,
    N_RESOLUTION,
    SLOT_NAMES,
    ST_HELD,
    ST_READY,
    STATE_CODE,
    phone_int,
)
from .queues import Extra, Queues

#: slots a record leaves when its one number is listed (leased and held ones keep theirs:
#: a lease ends or an appointment resolves through ``_place``, which checks the number)
_WITHDRAWABLE = frozenset((N_DORMANT, N_DUE, N_CB_DORMANT, N_CB_DUE))


class Placement(EngineBase):
    """Places, promotes, stores and forgets records (see the module docstring)."""

    # ----------------------------------------------------------------- zones
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

    def _rids_of_number(self, number: str) -> list[int]:
        """The records whose one number is ``number`` (a scan of one column: only when a
        number joins or leaves a list)."""
        n = phone_int(number)
        if not n or not len(self.c_phone):
            return []
        return np.flatnonzero(np.frombuffer(self.c_phone, dtype=np.int64) == n).tolist()

    def _withdraw_number(self, number: str) -> None:
        """``number`` was just put on the DNC or block list: the open records whose one
        number it is leave circulation now (``no_number``), so the counts say so at once
        and as after a restart. Records with several numbers find it listed when they
        reach the top."""
        c_slot, c_camp, names = self.c_slot, self.c_camp, self._camp_names
        for rid in self._rids_of_number(number):
            if c_slot[rid] in _WITHDRAWABLE and c_camp[rid] != 0:
                self._bump(rid)
                self._set_slot(rid, self._q(names[c_camp[rid]]), N_NO_NUMBER)

    def restore_number(self, number: str, now: float) -> None:
        """``number`` left its list (an amendment undid the disposition that listed it):
        the open records withdrawn for want of it are placed again."""
        c_slot, c_camp = self.c_slot, self.c_camp
        for rid in self._rids_of_number(number):
            if c_slot[rid] == N_NO_NUMBER and c_camp[rid] != 0:
                self._place(rid, now)

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
            self._push_due_callback(rid, q, gen, now)
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

    def _push_due_callback(self, rid: int, q: Queues, gen: int, now: float) -> None:
        ex = self._extras.get(rid)
        cb = ex.callback if ex is not None else None
        scope = cb.scope if cb is not None else "anyone"
        cp = cb.contact_priority if cb is not None else 0
        if cb is not None and cb.until is not None:
            # a window: the priority rises in steps; re-filed at each (``core.windows``)
            cp, step = window_priority(cp, cb.at, cb.until, now)
            if step < INF:
                heapq.heappush(q.ramp, time_key(step, rid, gen))
                if step < q.promote_at:
                    q.promote_at = step
        due = self.c_due[rid]
        owner = ex.owner if ex is not None else None
        team = ex.team if ex is not None else None
        personal, team_heap, anyone = callback_route(scope, owner, team)
        if personal is not None:
            heapq.heappush(q.personal.setdefault(personal, []), time_key(due, rid, gen))
        if team_heap is not None:
            heapq.heappush(q.team.setdefault(team_heap, []), callback_key(cp, due, rid, gen))
        elif anyone:
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
        self.c_state[rid] = STATE_CODE[rec.state]
        self._set_phones(rid, rec.phones)
        if rec.state in (CALLBACK, HELD):
            self._extras[rid] = Extra(rec.id or "", rec.owner, rec.team, rec.callback)
        else:
            self._extras.pop(rid, None)
        if rec.quote is not None:
            self.quotes[rid] = rec.quote
        else:
            self.quotes.pop(rid, None)
        self.rescore(rid)

    def add(self, rec: Record, now: float) -> None:
        """Take in a new or rebuilt open record (leases are attached by ``restore_lease``).

        Raises:
            BadRequest: the record is not in an open state.
        """
        if rec.state not in STATE_CODE:
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
        self.quotes.pop(rid, None)
        self._open -= 1
        self.closings += 1

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
        self._promote_dormant(q, dormant, now, nq)
        self._promote_timed(q, now, nq)
        if q.budget:
            self._promote_budget(q, now, nq)
        if q.ramp:
            self._promote_ramp(q, now, nq)
        # the earliest instant anything left may fall due (stale tops make it early,
        # which costs one more pass, never a miss)
        top = dormant.top()
        at = INF if top is None else due_q_of(top) / DUE_SCALE
        for heap in (q.held, q.cb_dormant, q.budget, q.ramp):
            if heap:
                at = min(at, due_q_of(heap[0]) / DUE_SCALE)
        q.promote_at = at

    def _promote_ramp(self, q: Queues, now: float, nq: int) -> None:
        """Windowed callbacks whose priority rose are filed again at the new priority."""
        heap = q.ramp
        risen = []
        while heap and due_q_of(heap[0]) <= nq:
            top = heapq.heappop(heap)
            if self._live(top, N_CB_DUE):
                risen.append(rid_of(top))
        for rid in risen:  # after the loop: a step within the same microsecond waits
            self._push_due_callback(rid, q, self._bump(rid), now)

    def _promote_budget(self, q: Queues, now: float, nq: int) -> None:
        """Records whose attempt budget allows them again go back where they belong."""
        heap = q.budget
        while heap and due_q_of(heap[0]) <= nq:
            top = heapq.heappop(heap)
            if self._live(top, N_BUDGET):
                self._held.pop(rid_of(top), None)
                self._place(rid_of(top), now)

    def _promote_dormant(self, q: Queues, dormant: RunHeap, now: float, nq: int) -> None:
        """Ready records that fell due (``nq``: ``now`` quantised) go to their zone."""
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

    def _promote_timed(self, q: Queues, now: float, nq: int) -> None:
        """Appointments that passed go to resolution, callbacks that fell due to their
        heaps."""
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
                    self._push_due_callback(rid, q, gen, now)
                else:
                    self._set_slot(rid, q, N_NO_NUMBER)

    def clock_set_back(self, now: float) -> int:
        """The wall clock was set back to ``now``: due callbacks and appointments gone to
        resolution whose instant lies ahead again wait for it again (a promise is kept
        by the clock as it reads now). Due pool records stay due: a step back never
        holds back the list being dialled. Returns how many moved; O(callbacks and
        appointments)."""
        moved = 0
        for rid in list(self._extras):
            slot = self.c_slot[rid]
            if slot in (N_CB_DUE, N_RESOLUTION) and self.c_due[rid] > now:
                self._place(rid, now)
                moved += 1
        return moved

    # ----------------------------------------------------------------- changed records
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

    def amend(self, current: Record, new: Record, listed: Iterable[tuple[str, str]],
              now: float) -> None:
        """An amended disposition: record ``current`` (its present value, not leased)
        becomes ``new``; the numbers in ``listed`` join their lists.

        Raises:
            MovedOn: the record is leased.
        """
        if current.lease is not None or self._lease_of.get(current.rid) is not None:
            raise MovedOn("the record is leased again", field="lease")
        if current.state == CLOSED and not self.is_open(current.rid):
            closed = self._q(current.campaign).closed
            closed[current.reason or "final"] = max(closed[current.reason or "final"] - 1, 0)
        for number, which in listed:
            self.add_listed(number, which)
            self._withdraw_number(number)
        self.next_rid = max(self.next_rid, new.rid + 1)
        self._apply(new, now)

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

"""Long polls: ``next`` requests that wait for a record (``wait`` seconds at most).

One timer serves them all, armed for the earliest instant any of them may be served: a
record falls due, a window opens, a grace period ends, a lease expires, a deadline. Any
change that may free a record calls ``notify``, which serves them once per loop
iteration, oldest first.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core import transitions
from ..roles import Peer
from .base import Reply, hand_out

if TYPE_CHECKING:
    from ..service import Service
    from .leases import NextReq

#: a long poll's wake-up timer is armed this much early, then the loop spins to the
#: instant (timers on both event loops have millisecond granularity)
SPIN_S = 0.002


@dataclass(slots=True, eq=False)
class Waiter:
    """A long-polling ``next``."""

    req: NextReq
    peer: Peer
    reply: Reply
    campaigns: tuple[str, ...]
    teams: tuple[str, ...]
    deadline: float
    t0: float


class LongPolls:
    """The ``next`` requests waiting now, in arrival order, and their one timer."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.waiters: list[Waiter] = []
        #: the waiters of the round ``serve`` is in (empty outside one)
        self._serving: list[Waiter] = []
        self._scheduled = False
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._timer_at = float("inf")

    def waiting(self) -> Counter[str]:
        """Long polls waiting now, by campaign they draw from."""
        c: Counter[str] = Counter()
        for w in self.waiters:
            c.update(w.campaigns)
        return c

    def add(self, w: Waiter, now: float) -> None:
        """Park ``w`` until a record comes or its deadline passes."""
        self.waiters.append(w)
        self._arm(now)

    def notify(self) -> None:
        """Something may have become available: serve once this loop iteration."""
        if self.waiters and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.serve)

    def serve(self) -> None:
        """Hand records to waiting long polls, oldest first; answer those whose time is
        up; arm the timer for the next instant something may become possible."""
        self._scheduled = False
        if not self.waiters:
            return
        svc = self.service
        # a hand-out's commit may answer at once, and waiters may come or go meanwhile:
        # serve the ones waiting now, each at its own instant
        waiting, self.waiters = self.waiters, []
        self._serving = waiting
        keep = []
        now = svc.clock()
        for w in waiting:
            if w.peer.gone:
                continue
            now = svc.clock()
            svc.expire(now)
            leases, changes = transitions.issue(svc.engine, w.req.agent, w.campaigns,
                                                w.teams, w.req.count, w.peer.uid, now)
            if leases:
                hand_out(svc, leases, changes, now, w.reply, time.perf_counter())
            elif now >= w.deadline or svc.stopping:
                svc.observer.next_answered(0.0, [])
                w.reply({"leases": []})
            else:
                keep.append(w)
        self._serving = []
        self.waiters = keep + self.waiters
        self._arm(now)

    def shift(self, step: float) -> list[Waiter]:
        """The wall clock was set by ``step``: every wait keeps the time it had left (the
        ones being served this round too). Returns the waits moved."""
        moved = [*self._serving, *self.waiters]
        for w in moved:
            w.deadline += step
        return moved

    def _arm(self, now: float) -> None:
        if not self.waiters:
            return
        svc = self.service
        at = min(w.deadline for w in self.waiters)
        for camps in {w.campaigns for w in self.waiters}:
            at = min(at, svc.engine.next_wake(camps, now))
        if self._timer is not None:
            if at == self._timer_at:
                return
            self._timer.cancel()
        self._timer_at = at
        loop = asyncio.get_running_loop()
        delay = at - svc.clock()
        if delay <= SPIN_S:
            self._timer = loop.call_soon(self._on_timer)
        else:
            self._timer = loop.call_at(loop.time() + delay - SPIN_S, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        at, self._timer_at = self._timer_at, float("inf")
        clock = self.service.clock
        if clock() < at and at - clock() <= SPIN_S + 0.001:
            # early by less than the timer's granularity: spin to the instant
            self._timer_at = at
            self._timer = asyncio.get_running_loop().call_soon(self._on_timer)
            return
        self.serve()

    def discard(self, conn_id: int) -> None:
        """Forget a closed connection's long polls (nobody is left to answer)."""
        self.waiters = [w for w in self.waiters if w.peer.conn_id != conn_id]

    def end(self, conn_id: int) -> None:
        """A client half-closed: answer its long polls now (empty)."""
        keep = []
        for w in self.waiters:
            if w.peer.conn_id == conn_id:
                w.reply({"leases": []})
            else:
                keep.append(w)
        self.waiters = keep

    def stop(self) -> None:
        """Shutdown: answer every long poll now (empty) and stop the timer."""
        for w in self.waiters:
            if not w.peer.gone:
                w.reply({"leases": []})
        self.waiters = []
        if self._timer is not None:
            self._timer.cancel()

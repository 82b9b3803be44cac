"""Who gets what next: an agent's own due callbacks, then its teams' and
anyone's, then the pool's best record among the open zones; ``next`` leases the picks and
``next_wake`` says when waiting could end.

``Selection`` is the fourth link of the engine's class chain (see ``base``). Selection is
O(log n) amortised plus the due callbacks skipped because their window is closed.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from ..errors import NotLoggedIn
from ..keys import DUE_SCALE, GEN_BITS, GEN_MASK, RID_MASK, due_q_of, rid_of
from ..model import Campaign
from ..records import Lease
from .agents import AgentSession
from .budgeting import Budgeting
from .columns import INF, N_CB_DUE, N_DORMANT, N_DUE, N_NO_NUMBER
from .queues import Queues


class Selection(Budgeting):
    """Logins, selection and hand-out (see the module docstring)."""

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

    # ----------------------------------------------------------------- predicates
    # (selection and ``explain`` both read these, so they cannot disagree)
    def callback_window(self, camp: Campaign, rid: int, now: float) -> tuple[bool, float]:
        """Whether record ``rid``'s calling window is open now (a callback's own
        ``override_window`` lifts the weekday window), and until when that holds."""
        ex = self._extras.get(rid)
        cb = ex.callback if ex is not None else None
        return self.window_open(camp, self._zone_names[self.c_tz[rid]], now,
                                bool(cb and cb.override_window))

    def grace_end(self, camp: Campaign, rid: int) -> float | None:
        """When a personal-then-team callback's owner loses it to the team (None for
        other scopes)."""
        ex = self._extras.get(rid)
        cb = ex.callback if ex is not None else None
        if cb is None or cb.scope != "personal_then_team":
            return None
        return cb.deadline + camp.grace_s  # a callback window's grace runs from its end

    def _team_side_open(self, camp: Campaign, rid: int, agent: str, now: float) -> bool:
        """Whether ``agent`` may take due callback ``rid`` from a team or ``anyone``
        heap now: a personal-then-team callback waits for its present owner until the
        grace period ends."""
        ex = self._extras.get(rid)
        end = self.grace_end(camp, rid)
        if end is None or ex is None or ex.owner == agent:
            return True
        return now >= end or not self._owner_present(ex.owner, camp.name)

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
            ok = self.callback_window(camp, rid, now)[0]
            if ok and team_side:
                ok = self._team_side_open(camp, rid, agent, now)
            if ok and camp.budgets is not None and self._held_back(rid, q, now):
                heapq.heappop(heap)  # parked until its budgets allow it
                continue
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
        budgets = camp.budgets
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
                if not self._callable(rid):
                    self._park(rid, q)
                elif budgets is None or not self._held_back(rid, q, now):
                    return h
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
            if budgets is not None and self._held_back(rid, q, now):
                continue
            return h
        return None

    def _rebuild_heads(self, q: Queues) -> None:
        q.heads = [(h, z) for z, h in q.head_of.items()]
        heapq.heapify(q.heads)

    def _enabled_queues(self, campaigns: tuple[str, ...], now: float
                        ) -> list[tuple[Campaign, Queues]]:
        """The enabled ones of ``campaigns`` with their queues, promoted to ``now``."""
        camps = []
        for name in campaigns:
            c = self.campaigns.get(name)
            if c is not None and c.enabled:
                q = self._q(name)
                self._promote(q, now)
                camps.append((c, q))
        return camps

    def select(self, agent: str, campaigns: tuple[str, ...], teams: tuple[str, ...],
               now: float) -> tuple[int, str] | None:
        """The best record ``agent`` may call now, and why, without leasing."""
        camps = self._enabled_queues(campaigns, now)
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
            lease = self.lease(rid, agent, uid, reason, now,
                               lease_s if lease_s is not None else camp.lease_s)
            if camp.budgets is not None:
                self.note_attempt(rid, lease.phone, now)
            out.append(lease)
        return out

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
            for timed in (q.cb_dormant, q.budget):
                if timed:
                    wake = min(wake, due_q_of(timed[0]) / DUE_SCALE)
            self._refresh_zones(q, camp, now)
            for z, due in q.zone_due.items():
                if due > 0 and not q.zone_open.get(z, False):
                    wake = min(wake, q.zone_until.get(z, INF))
            wake = min(wake, self._callbacks_wake(q, camp, now))
        return max(wake, now)

    def _callbacks_wake(self, q: Queues, camp: Campaign, now: float) -> float:
        """When a due callback of ``q`` might become eligible: its window opens, or its
        grace period ends."""
        wake = INF
        for heap in (*q.personal.values(), *q.team.values(), q.anyone):
            for k in heap:
                if not self._live(k, N_CB_DUE):
                    continue
                rid = rid_of(k)
                wake = min(wake, self.callback_window(camp, rid, now)[1])
                g = self.grace_end(camp, rid)
                if g is not None and g > now:
                    wake = min(wake, g)
        return wake

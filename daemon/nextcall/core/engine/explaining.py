"""Why a record is or is not handed out, and why a campaign hands out nothing: read-only
answers built from the predicates selection itself uses (``Selection.callback_window``,
``_team_side_open``, ``callback_route``, ``_callable``), never from a second copy of the
rules.

A record's answer is a list of blockers, each ``(reason, detail, until)``: one function
per reason in ``BLOCKERS``, so a new reason (an attempt budget, say) is one more
function. ``until`` is the instant the blocker lifts by itself, or None when it needs a
person or a config change. Record explain is O(numbers); campaign explain reads the slot
counts, the zone states and the due callbacks (as the metrics do), never every record.

``Explaining`` is the sixth link of the engine's class chain (see ``base``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .. import calendar
from ..keys import rid_of
from ..model import Campaign
from ..records import PHONE_ACTIVE, CallbackIntent, Lease
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
    N_RESOLUTION,
    SLOT_NAMES,
    ST_CALLBACK,
    STATE_NAMES,
)
from .loading import Loading
from .queues import Queues

#: blocking reasons, as ``explain`` names them (campaign counts list every one)
REASONS = ("disabled", "leased", "held", "dormant", "no_number", "legal_window",
           "outside_window", "callback_other", "attempt_cap", "budget")
#: at most this many window changes are followed looking for the next opening (a DST
#: transition is a change that does not open it)
_MAX_STEPS = 64


@dataclass(frozen=True, slots=True)
class Blocker:
    """One reason a record is not handed out now."""

    reason: str
    detail: str
    #: when it lifts by itself; None: it needs a person or a config change
    until: float | None


@dataclass(frozen=True, slots=True)
class WindowFacts:
    """A window at one instant: open now, until when that holds, when it next opens."""

    open: bool
    until: float
    next_open: float | None


@dataclass(slots=True)
class RecordFacts:
    """What the engine knows of one open record, and what holds it back."""

    rid: int
    campaign: str
    state: str
    slot: str
    due_at: float
    timezone: str
    attempts: int
    max_attempts: int
    window: WindowFacts
    legal: WindowFacts
    #: (number, status, list it is on or None, dialable)
    numbers: list[tuple[str, str, str | None, bool]]
    next_number: str | None
    lease: Lease | None
    owner: str | None
    team: str | None
    callback: CallbackIntent | None
    grace_end: float | None
    blockers: list[Blocker] = field(default_factory=list)
    #: when it may next be handed out (now if no blocker), None: not by itself
    eligible_at: float | None = None
    #: who may take it then: ``agent:NAME``, ``team:NAME``, ``campaign:NAME``
    eligible_for: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CampaignFacts:
    """Why a campaign hands out what it does: open records by what holds them back."""

    name: str
    enabled: bool
    open: int
    #: what ``next`` could hand out now: due pool records in open zones, due callbacks
    available_pool: int = 0
    available_callbacks: int = 0
    blocked: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    #: ``nextcall_records_blocked`` as the metrics compute it
    gauges: dict[str, int] = field(default_factory=dict)
    #: the earliest instant a blocked record becomes eligible, which, and why
    next_at: float | None = None
    next_rid: int | None = None
    next_reason: str = ""


def blocked_gauges(slots: dict[str, int], window: int, disabled: int) -> dict[str, int]:
    """``nextcall_records_blocked`` by reason from the slot counts and the due pool
    records held by a closed window or a disabled campaign (metrics and ``explain``)."""
    return {"window": window,
            "dormant": slots.get("dormant", 0) + slots.get("callback_upcoming", 0),
            "leased": slots.get("leased", 0),
            "held": slots.get("held", 0) + slots.get("resolution", 0),
            "no_number": slots.get("no_number", 0), "disabled": disabled,
            "budget": slots.get("budget", 0), "attempts": 0, "dnc": 0}


@dataclass(frozen=True, slots=True)
class _Ctx:
    rid: int
    camp: Campaign
    facts: RecordFacts
    agent: str | None
    teams: tuple[str, ...]
    now: float


def next_open(camp: Campaign, tz_key: str, at: float, override: bool) -> float | None:
    """The first instant from ``at`` on at which the window is open (None: not within
    the calendar's horizon)."""
    tz = calendar.zone(tz_key)
    t = at
    for _ in range(_MAX_STEPS):
        is_open, until = calendar.window_state(camp, tz, t, override)
        if is_open:
            return t
        if until == INF:
            return None
        t = until
    return None


class Explaining(Loading):
    """Read-only explanations (see the module docstring)."""

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

    def _window_facts(self, camp: Campaign, tz_key: str, now: float, override: bool
                      ) -> WindowFacts:
        is_open, until = self.window_open(camp, tz_key, now, override)
        return WindowFacts(is_open, until, now if is_open
                           else next_open(camp, tz_key, until, override))

    def _numbers(self, rid: int) -> tuple[list[tuple[str, str, str | None, bool]], str | None]:
        nxt = self.callable_phone(rid)
        out = []
        for number, status in self.phones(rid):
            listed = self.listed.get(number)
            out.append((number, status, listed, status == PHONE_ACTIVE and listed is None))
        return out, nxt[1] if nxt is not None else None

    def may_take_callback(self, camp: Campaign, rid: int, agent: str | None,
                          teams: tuple[str, ...], now: float) -> tuple[bool, float | None]:
        """Whether due callback ``rid`` may be handed to ``agent`` now (None: to anyone
        present), as selection's heaps and grace period decide; if not, when it may."""
        ex = self._extras.get(rid)
        cb = ex.callback if ex is not None else None
        personal, team, anyone = callback_route(cb.scope if cb else "anyone",
                                                ex.owner if ex else None,
                                                ex.team if ex else None)
        if agent is None:
            own = personal is not None and self._owner_present(personal, camp.name)
            side = team is not None or anyone
            who = ""
        else:
            own = personal == agent
            side = (team is not None and team in teams) or anyone
            who = agent
        if own or (side and self._team_side_open(camp, rid, who, now)):
            return True, None
        end = self.grace_end(camp, rid)
        return False, end if side and end is not None and end > now else None

    def explain_record(self, rid: int, agent: str | None, now: float) -> RecordFacts | None:
        """Why open record ``rid`` is or is not handed out now (to ``agent`` if given),
        and when and to whom it next may be. None when the record is not open."""
        if not self.is_open(rid):
            return None
        name = self._camp_names[self.c_camp[rid]]
        camp = self.campaigns.get(name)
        if camp is None:
            camp = Campaign(name=name, codes={}, window=((),) * 7, enabled=False)
        self.promote(name, now)
        ex = self._extras.get(rid)
        cb = ex.callback if ex is not None else None
        tz = self._zone_names[self.c_tz[rid]]
        override = bool(cb and cb.override_window)
        numbers, nxt = self._numbers(rid)
        facts = RecordFacts(
            rid, name, STATE_NAMES[self.c_state[rid]], SLOT_NAMES[self.c_slot[rid]],
            self.c_due[rid], tz, self.c_att[rid], camp.max_attempts,
            self._window_facts(camp, tz, now, override),
            self._window_facts(camp, tz, now, True), numbers, nxt, self.lease_of(rid),
            ex.owner if ex else None, ex.team if ex else None, cb,
            self.grace_end(camp, rid) if cb else None)
        s = self.agents.get(agent) if agent else None
        ctx = _Ctx(rid, camp, facts, agent, s.teams if s and s.logged_in else (), now)
        facts.blockers = [b for check in BLOCKERS if (b := check(self, ctx)) is not None]
        facts.eligible_at = self._eligible_at(ctx, override)
        facts.eligible_for = self._takers(ctx)
        return facts

    def _eligible_at(self, ctx: _Ctx, override: bool) -> float | None:
        """The first instant no blocker holds: every lifting blocker has lifted and the
        window is open."""
        t = ctx.now
        for b in ctx.facts.blockers:
            if b.until is None:
                return None
            if b.reason not in ("legal_window", "outside_window"):
                t = max(t, b.until)
        return next_open(ctx.camp, ctx.facts.timezone, t, override)

    def _takers(self, ctx: _Ctx) -> list[str]:
        """Who may be handed the record once it is eligible."""
        f = ctx.facts
        if f.callback is None or self.c_state[ctx.rid] != ST_CALLBACK:
            return [f"campaign:{f.campaign}"]
        personal, team, anyone = callback_route(f.callback.scope, f.owner, f.team)
        out = [f"agent:{personal}"] if personal else []
        if team:
            out.append(f"team:{team}")
        if anyone:
            out.append(f"campaign:{f.campaign}")
        return out

    # ----------------------------------------------------------------- campaigns
    def explain_campaign(self, name: str, agent: str | None, now: float) -> CampaignFacts:
        """Open records of campaign ``name`` by what holds them back now, and the next
        one to become eligible. O(zones + due callbacks + dormant tops).

        Raises:
            UnknownCampaign: no such campaign.
        """
        camp = self.campaign(name)
        self.promote(name, now)
        q = self._q(name)
        slots = q.counts
        f = CampaignFacts(name, camp.enabled, sum(slots.values()))
        b = f.blocked
        b["dormant"] = slots["dormant"] + slots["callback_upcoming"]
        b["leased"] = slots["leased"]
        b["held"] = slots["held"] + slots["resolution"]
        b["no_number"] = slots["no_number"]
        b["budget"] = slots.get("budget", 0)
        window = self._explain_zones(f, camp, q, now)
        self._explain_budget(f, q)
        self._explain_callbacks(f, camp, agent, now)
        self._explain_dormant(f, camp, q, now)
        f.gauges = blocked_gauges(slots, window, 0 if camp.enabled else slots["due"])
        return f

    def _candidate(self, f: CampaignFacts, at: float | None, rid: int, why: str) -> None:
        if at is not None and (f.next_at is None or (at, rid) < (f.next_at, f.next_rid or 0)):
            f.next_at, f.next_rid, f.next_reason = at, rid, why

    def _explain_zones(self, f: CampaignFacts, camp: Campaign, q: Queues, now: float
                       ) -> int:
        """Due pool records by zone: available, or held by a window (legal or the
        campaign's); returns how many a window holds (the metrics' ``window``)."""
        window = 0
        for tz, (is_open, _, due) in self.zone_states(f.name, now).items():
            if not camp.enabled:
                f.blocked["disabled"] += due
                continue
            if is_open:
                f.available_pool += due
                continue
            window += due
            legal = self.window_open(camp, tz, now, True)[0]
            f.blocked["outside_window" if legal else "legal_window"] += due
            z = self._zone_idx[tz]
            top = self._zone_top(q, z)
            if top is not None:
                self._candidate(f, next_open(camp, tz, now, False), rid_of(top),
                                "window_opens")
        return window

    def _explain_callbacks(self, f: CampaignFacts, camp: Campaign, agent: str | None,
                           now: float) -> None:
        """Due callbacks: available, or held by the campaign, their numbers, a window or
        their owner (callback for someone else)."""
        s = self.agents.get(agent) if agent else None
        teams = s.teams if s and s.logged_in else ()
        for rid in self.due_callback_rids(f.name):
            reason = None
            until: float | None = None
            is_open, wuntil = self.callback_window(camp, rid, now)
            if not camp.enabled:
                reason = "disabled"
            elif not self._callable(rid):
                reason = "no_number"
            elif not is_open:
                legal = self.window_open(camp, self._zone_names[self.c_tz[rid]], now,
                                         True)[0]
                reason = "outside_window" if legal else "legal_window"
                ex = self._extras.get(rid)
                until = next_open(camp, self._zone_names[self.c_tz[rid]], wuntil,
                                  bool(ex and ex.callback and ex.callback.override_window))
            else:
                ok, until = self.may_take_callback(camp, rid, agent, teams, now)
                reason = None if ok else "callback_other"
            if reason is None:
                f.available_callbacks += 1
            else:
                f.blocked[reason] += 1
                self._candidate(f, until, rid, reason)

    def _explain_budget(self, f: CampaignFacts, q: Queues) -> None:
        """The record an attempt budget releases first (records wait in ``q.budget``
        from the ``next`` that found them held back)."""
        for k in sorted(q.budget):
            if self._live(k, N_BUDGET):
                rid = rid_of(k)
                hold = self.held_by_budget(rid)
                if hold is not None:
                    self._candidate(f, hold[0], rid, "budget_allows")
                return

    def _explain_dormant(self, f: CampaignFacts, camp: Campaign, q: Queues, now: float
                         ) -> None:
        """The dormant record and the upcoming callback that fall due first."""
        top = q.dormant.top()
        while top is not None and not self._live(top, N_DORMANT):
            q.dormant.pop()  # stale (lazy deletion, as promotion does)
            top = q.dormant.top()
        if top is not None and camp.enabled:
            rid = rid_of(top)
            facts = self.explain_record(rid, None, now)
            self._candidate(f, facts.eligible_at if facts else None, rid, "falls_due")
        live = [k for k in q.cb_dormant if self._live(k, N_CB_DORMANT)]
        if live and camp.enabled:
            rid = rid_of(min(live))
            facts = self.explain_record(rid, None, now)
            self._candidate(f, facts.eligible_at if facts else None, rid, "callback_due")


# ----------------------------------------------------------------- blockers
Check = Callable[[Explaining, _Ctx], Blocker | None]


def _disabled(eng: Explaining, c: _Ctx) -> Blocker | None:
    if c.camp.enabled and c.camp.name in eng.campaigns:
        return None
    return Blocker("disabled", f"campaign {c.camp.name} is disabled", None)


def _leased(eng: Explaining, c: _Ctx) -> Blocker | None:
    lz = c.facts.lease
    if lz is None and eng.c_slot[c.rid] != N_LEASED:
        return None
    if lz is None:
        return Blocker("leased", "leased", None)
    return Blocker("leased", f"leased to {lz.agent} (lease {lz.lid}) until "
                   f"{calendar.utc_iso(lz.expires_at)}", lz.expires_at)


def _held(eng: Explaining, c: _Ctx) -> Blocker | None:
    slot = eng.c_slot[c.rid]
    if slot == N_HELD:
        return Blocker("held", "held for an appointment at "
                       f"{calendar.local_iso(c.facts.due_at, c.facts.timezone)}; it then "
                       "waits for an admin's resolution", None)
    if slot == N_RESOLUTION:
        return Blocker("held", "its appointment has passed; waiting for an admin's "
                       "resolution", None)
    return None


def _dormant(eng: Explaining, c: _Ctx) -> Blocker | None:
    if eng.c_slot[c.rid] not in (N_DORMANT, N_CB_DORMANT):
        return None
    what = "callback" if eng.c_slot[c.rid] == N_CB_DORMANT else "record"
    return Blocker("dormant", f"{what} due at "
                   f"{calendar.local_iso(c.facts.due_at, c.facts.timezone)}",
                   c.facts.due_at)


def _no_number(eng: Explaining, c: _Ctx) -> Blocker | None:
    if eng.c_slot[c.rid] in (N_HELD, N_RESOLUTION) or c.facts.next_number is not None:
        return None
    return Blocker("no_number", "no active number off the DNC and block lists", None)


def _window(eng: Explaining, c: _Ctx) -> Blocker | None:
    f = c.facts
    if f.window.open or eng.c_slot[c.rid] in (N_HELD, N_RESOLUTION):
        return None
    opens = ("opens " + calendar.local_iso(f.window.next_open, f.timezone)
             if f.window.next_open is not None else "does not open within 400 days")
    if not f.legal.open:
        return Blocker("legal_window", f"legal window {c.camp.legal_window} closed in "
                       f"{f.timezone}; the calling window {opens}", f.window.next_open)
    return Blocker("outside_window", f"calling window closed in {f.timezone}; it {opens}",
                   f.window.next_open)


def _callback_other(eng: Explaining, c: _Ctx) -> Blocker | None:
    if eng.c_slot[c.rid] != N_CB_DUE:
        return None
    ok, until = eng.may_take_callback(c.camp, c.rid, c.agent, c.teams, c.now)
    if ok:
        return None
    who = f"agent {c.agent}" if c.agent else "any agent logged in now"
    return Blocker("callback_other", f"a {c.facts.callback.scope if c.facts.callback else ''}"
                   f" callback (owner {c.facts.owner}, team {c.facts.team}) not for {who}",
                   until)


def _budget(eng: Explaining, c: _Ctx) -> Blocker | None:
    """An attempt budget: the record waits parked, or a due one would be parked by the
    next ``next`` that reaches it (the same ``budget_hold`` selection asks)."""
    if eng.c_slot[c.rid] not in (N_BUDGET, N_DUE, N_CB_DUE):
        return None
    hold = eng.held_by_budget(c.rid) or eng.budget_hold(c.rid, c.now)
    if hold is None:
        return None
    until, name = hold
    return Blocker("budget", f"attempt budget {name} allows the next call at "
                   f"{calendar.local_iso(until, c.facts.timezone)}", until)


#: one function per reason, in the order they are reported
BLOCKERS: tuple[Check, ...] = (_disabled, _leased, _held, _dormant, _no_number, _window,
                               _callback_other, _budget)

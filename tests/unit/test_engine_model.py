"""The engine against a brute-force reference model (hypothesis state machine).

The model keeps a plain dict of records with their state, due time, history and lease,
and answers SPEC §3 by scanning everything: among records that are due, not leased (or
whose lease has run out), in a campaign the agent draws from and inside their calling
window now (``calendar.window_state``, uncached):

1. the agent's own due callbacks (scope personal / personal_then_team), earliest first;
2. due callbacks of the agent's teams (scope team, personal_then_team) and of anyone,
   a personal_then_team one of another owner only after ``grace_s`` or while that owner
   is not logged in to the campaign; highest contact priority, then earliest;
3. ready records: highest pool score, then earliest due (campaign "beta" scores by
   expected value: its records carry quotes, from the start or from a QUOTE disposition's
   fields, and the model computes the documented formula itself);

ties broken by import order (rid). Each ``next`` must hand out exactly the model's picks,
and when it comes back short, nothing may become possible before ``next_wake``.
Dispositions are decided on a copy of the model's record (``decide`` has its own tests);
after every step the engine's records, leases and closed counts must match the model and
``check_invariants`` must pass. Some records have no callable number (never handed out)
and some carry their numbers as JSON text, as a rebuild from the database does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from nextcall.core import calendar
from nextcall.core.engine import Engine, ready_groups, ready_quotes
from nextcall.core.errors import NextcallError, NotLoggedIn
from nextcall.core.model import Campaign, FieldSpec, Interval, ResultCode, Scoring
from nextcall.core.records import (
    CALLBACK,
    CLOSED,
    PHONE_ACTIVE,
    PHONE_DNC,
    PHONE_REMOVED,
    READY,
    CallbackIntent,
    Quote,
    Record,
)
from nextcall.core.results import CallbackRequest, Disposition, decide
from nextcall.core.scoring import address_score

ZONES = ("UTC", "America/New_York", "Europe/Amsterdam", "Europe/Dublin",
         "Australia/Lord_Howe", "Asia/Kolkata")
AGENTS = ("ann", "bob", "cy")
TEAMS = ("t1", "t2")
SCOPES = ("personal", "personal_then_team", "team", "anyone")


def _iv(text: str) -> tuple[Interval, ...]:
    return tuple(Interval.parse(p) for p in text.split(",") if p)


def _codes(na_delays: tuple[int, ...], busy_s: int) -> dict[str, ResultCode]:
    return {rc.code: rc for rc in (
        ResultCode("NA", "no answer", "retry", dial_status="no_answer", delays_s=na_delays),
        ResultCode("BUSY", "busy", "retry", dial_status="busy", delay_s=busy_s),
        ResultCode("CB", "call back", "callback", contact=True, contact_priority=6),
        ResultCode("CBP", "personal callback", "callback", scope="personal",
                   contact_priority=5),
        ResultCode("CBT", "team callback", "callback", scope="team", contact_priority=4),
        ResultCode("CBA", "anyone callback", "callback", scope="anyone", contact_priority=3),
        ResultCode("NOPE", "not interested", "close", contact=True, contact_priority=4),
        ResultCode("QUOTE", "quote sent", "retry", contact=True, contact_priority=4,
                   delay_s=60, fields=(FieldSpec("amount", "money", required=True),
                                       FieldSpec("kans", "percent"))),
    )}


CAMPAIGNS = {
    "alpha": Campaign(
        "alpha", _codes((300, 3600, 86400), 120),
        window=(*[_iv("09:00-12:30,13:30-17:00")] * 5, _iv("10:00-14:00"), ()),
        holidays=frozenset({date(2026, 3, 10), date(2026, 10, 27), date(2026, 4, 6)}),
        max_attempts=3, lease_s=300, grace_s=900),
    "beta": Campaign(
        "beta", _codes((60, 900), 30),
        window=tuple(_iv("07:00-22:00") for _ in range(7)),
        legal_window=Interval(8 * 60 + 30, 20 * 60 + 45),
        max_attempts=5, lease_s=120, grace_s=600,
        scoring=Scoring(priority=3.0, contact=2.0, attempt=-0.5, max_attempt_penalty=4,
                        mode="expected_value", value_field="fields.amount",
                        chance_field="fields.kans", value=0.01)),
}
CAMPAIGN_NAMES = tuple(CAMPAIGNS)
# Fridays before DST changes and a quiet Wednesday, at hours when different zones are open
STARTS = st.builds(
    lambda d, h: datetime.combine(d, time(h), tzinfo=UTC).timestamp(),
    st.sampled_from(tuple(date(2026, m, d) for m, d in (
        (3, 6), (3, 27), (4, 3), (10, 2), (10, 23), (10, 30), (6, 10)))),
    st.sampled_from((1, 6, 9, 13, 16, 20)))
LOGINS = st.fixed_dictionaries({a: st.tuples(
    st.lists(st.sampled_from(("alpha", "beta")), min_size=1, max_size=2, unique=True),
    st.lists(st.sampled_from(("t1", "t2")), max_size=2, unique=True)) for a in AGENTS})


@dataclass
class MLease:
    lid: int
    agent: str
    expires_at: float


@dataclass
class MRec:
    """The model's record: plain fields, no structures."""

    rid: int
    id: str
    campaign: str
    tz: str
    priority: int
    phones: list[list[str]]
    state: str
    reason: str | None
    due_at: float
    attempts: int
    best_cp: int
    phone_idx: int
    owner: str | None
    team: str | None
    cb: CallbackIntent | None
    lease: MLease | None = None
    quote: Quote | None = None

    def to_record(self) -> Record:
        return Record(self.rid, self.id, self.campaign, "list", [list(p) for p in self.phones],
                      self.tz, self.priority, "{}", state=self.state, reason=self.reason,
                      due_at=self.due_at, attempts=self.attempts, owner=self.owner,
                      team=self.team, best_cp=self.best_cp, phone_idx=self.phone_idx,
                      callback=None if self.cb is None else replace(self.cb),
                      quote=self.quote)

    def score(self) -> float:
        """The documented formula, written out: address score, plus in expected-value mode
        value_w * max(1 + priority, 0) * value * chance / 100."""
        w = CAMPAIGNS[self.campaign].scoring
        s = address_score(w, self.priority, self.best_cp, self.attempts)
        if w.mode == "expected_value" and self.quote is not None and self.priority > -1:
            ev = self.quote.value * self.quote.chance / 100
            s += w.value * (1 + self.priority) * ev if ev else 0.0
        return s

    def phone(self) -> tuple[int, str] | None:
        n = len(self.phones)
        for k in range(n):
            i = (self.phone_idx + k) % n
            if self.phones[i][1] == PHONE_ACTIVE:
                return i, self.phones[i][0]
        return None


@dataclass
class MAgent:
    campaigns: tuple[str, ...]
    teams: tuple[str, ...]
    logged_in: bool = True


class Model:
    """SPEC §3 by brute force."""

    def __init__(self) -> None:
        self.recs: dict[str, MRec] = {}
        self.agents: dict[str, MAgent] = {}

    def by_rid(self, rid: int) -> MRec:
        return next(r for r in self.recs.values() if r.rid == rid)

    def present(self, owner: str | None, campaign: str) -> bool:
        a = self.agents.get(owner) if owner else None
        return bool(a and a.logged_in and campaign in a.campaigns)

    def team_side(self, r: MRec, agent: str, teams: tuple[str, ...], t: float) -> bool:
        assert r.cb is not None
        scope = r.cb.scope
        if scope == "anyone":
            return True
        if scope == "team":
            return r.team in teams
        if scope == "personal_then_team":
            if r.team is not None and r.team not in teams:
                return False
            return (r.owner == agent or t >= r.due_at + CAMPAIGNS[r.campaign].grace_s
                    or not self.present(r.owner, r.campaign))
        return False

    def best(self, agent: str, campaigns: tuple[str, ...], teams: tuple[str, ...],
             t: float) -> tuple[MRec, str] | None:
        memo: dict[tuple[str, str, bool], bool] = {}

        def is_open(r: MRec) -> bool:
            override = bool(r.state == CALLBACK and r.cb and r.cb.override_window)
            key = (r.campaign, r.tz, override)
            if key not in memo:
                memo[key] = calendar.window_state(CAMPAIGNS[r.campaign], calendar.zone(r.tz),
                                                  t, override)[0]
            return memo[key]

        cands = [r for r in self.recs.values()
                 if r.state in (READY, CALLBACK) and r.campaign in campaigns
                 and CAMPAIGNS[r.campaign].enabled and r.due_at <= t
                 and (r.lease is None or r.lease.expires_at <= t) and r.phone() is not None]
        own = [r for r in cands if r.state == CALLBACK and r.cb is not None
               and r.cb.scope in ("personal", "personal_then_team") and r.owner == agent
               and is_open(r)]
        if own:
            return min(own, key=lambda r: (r.due_at, r.rid)), "personal_callback"
        team = [r for r in cands if r.state == CALLBACK and self.team_side(r, agent, teams, t)
                and is_open(r)]
        if team:
            return min(team, key=lambda r: (-r.cb.contact_priority,  # type: ignore[union-attr]
                                            r.due_at, r.rid)), "team_callback"
        pool = [r for r in cands if r.state == READY and is_open(r)]
        if pool:
            return min(pool, key=lambda r: (-r.score(), r.due_at, r.rid)), "pool"
        return None

    def live_leases(self, now: float) -> list[MRec]:
        return sorted((r for r in self.recs.values()
                       if r.lease is not None and r.lease.expires_at > now),
                      key=lambda r: r.lease.lid)  # type: ignore[union-attr]

    def expire(self, now: float) -> set[int]:
        out = set()
        for r in self.recs.values():
            if r.lease is not None and r.lease.expires_at <= now:
                out.add(r.lease.lid)
                r.lease = None
        return out


# ------------------------------------------------------------------------- strategies
@st.composite
def record_specs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 3))
    alive = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    if not any(alive) and draw(st.integers(0, 3)):
        alive[draw(st.integers(0, n - 1))] = True  # mostly callable; sometimes no number
    dead = draw(st.sampled_from((PHONE_DNC, PHONE_REMOVED)))
    # small ranges on purpose: ties in score, due time and contact priority are common,
    # so the tie-breaks (due, then rid) are exercised across zones and campaigns
    spec: dict[str, Any] = {
        "campaign": draw(st.sampled_from(CAMPAIGN_NAMES)),
        "tz": draw(st.sampled_from(ZONES)),
        "priority": draw(st.integers(0, 2)),
        "due": draw(st.one_of(
            st.sampled_from((0.0, 0.0, -600.0, 900.0, 3600.0)),
            st.sampled_from((-86400.0, 60.0, 4 * 3600.0, 86400.0, 3 * 86400.0)),
            st.integers(-3600, 2 * 86400).map(float))),
        "attempts": draw(st.integers(0, 1)),
        "best_cp": draw(st.sampled_from((0, 4))),
        "statuses": [PHONE_ACTIVE if a else dead for a in alive],
        "phone_idx": draw(st.integers(0, n - 1)),
        "team": draw(st.sampled_from((None, "t1", "t2"))),
        "cb": None,
        "json_phones": draw(st.booleans()),  # as a rebuild hands them over
        # a quote from the start (imported from data, or kept from an earlier disposition)
        "quote": draw(st.one_of(st.none(), st.builds(
            Quote, st.sampled_from((0.0, 100.0, 250.5, 2000.0)),
            st.sampled_from((0.0, 50.0, 100.0))))),
    }
    if draw(st.booleans()):
        scope = draw(st.sampled_from((*SCOPES, "personal_then_team")))
        team = spec["team"] if scope != "team" else draw(st.sampled_from(TEAMS))
        owner = None if scope == "team" else draw(st.sampled_from(AGENTS))
        spec["team"] = team
        spec["cb"] = (scope, owner, draw(st.sampled_from((3, 6))), draw(st.booleans()))
    return spec


DELTAS = st.one_of(
    st.sampled_from((0.5, 1.0, 59.0, 60.0, 61.0, 120.0, 299.0, 300.0, 600.0, 899.0, 900.0,
                     901.0, 3600.0, 4 * 3600.0, 86400.0, 3 * 86400.0)),
    st.integers(1, 2 * 86400).map(float))


class EngineModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(dict(CAMPAIGNS))
        self.model = Model()
        self.now = 0.0
        self.rid = 0

    # ----------------------------------------------------------------- building
    def _make(self, spec: dict[str, Any]) -> tuple[MRec, Record]:
        self.rid += 1
        rid = self.rid
        phones = [[f"+3120{rid:05d}{k}", s] for k, s in enumerate(spec["statuses"])]
        due = self.now + spec["due"]
        cb = None
        state = READY
        owner = None
        if spec["cb"] is not None:
            scope, owner, cp, override = spec["cb"]
            state = CALLBACK
            cb = CallbackIntent(at=due, timezone=spec["tz"], local="", scope=scope,
                                owner=owner, team=spec["team"], contact_priority=cp,
                                override_window=override, code="CB")
        m = MRec(rid, f"r{rid}", spec["campaign"], spec["tz"], spec["priority"], phones, state,
                 None, due, spec["attempts"], spec["best_cp"], spec["phone_idx"], owner,
                 spec["team"], cb, quote=spec["quote"])
        self.model.recs[m.id] = m
        r = m.to_record()
        if spec["json_phones"]:
            r.phones = json.dumps(r.phones)
        return m, r

    @initialize(start=STARTS, specs=st.lists(record_specs(), max_size=10), logins=LOGINS)
    def start(self, start: float, specs: list[dict[str, Any]],
              logins: dict[str, tuple[list[str], list[str]]]) -> None:
        self.now = start
        records = [self._make(s)[1] for s in specs]
        assert self.engine.bulk_load(*ready_groups(records), self.now,
                                     ready_quotes(records)) == len(specs)
        for agent, (campaigns, teams) in logins.items():
            self.login(agent, campaigns, teams)

    @rule(specs=st.lists(record_specs(), min_size=1, max_size=4))
    def import_records(self, specs: list[dict[str, Any]]) -> None:
        for s in specs:
            self.engine.add(self._make(s)[1], self.now)

    # ----------------------------------------------------------------- agents
    @rule(agent=st.sampled_from(AGENTS),
          campaigns=st.lists(st.sampled_from(CAMPAIGN_NAMES), min_size=1, max_size=2,
                             unique=True),
          teams=st.lists(st.sampled_from(TEAMS), max_size=2, unique=True))
    def login(self, agent: str, campaigns: list[str], teams: list[str]) -> None:
        self.engine.login(agent, campaigns, teams)
        self.model.agents[agent] = MAgent(tuple(campaigns), tuple(teams))

    @rule(agent=st.sampled_from(AGENTS))
    def logout(self, agent: str) -> None:
        self.engine.logout(agent)
        if agent in self.model.agents:
            self.model.agents[agent].logged_in = False

    def _scope(self, agent: str, explicit: list[str] | None
               ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        a = self.model.agents.get(agent)
        teams = a.teams if a and a.logged_in else ()
        if explicit:
            return tuple(explicit), teams
        if a is None or not a.logged_in:
            return None
        return a.campaigns, teams

    # ----------------------------------------------------------------- hand-outs
    @rule(agent=st.sampled_from(AGENTS), count=st.integers(1, 3),
          explicit=st.one_of(st.none(), st.lists(st.sampled_from(CAMPAIGN_NAMES), min_size=1,
                                                 max_size=2, unique=True)))
    def next(self, agent: str, count: int, explicit: list[str] | None) -> None:
        scope = self._scope(agent, explicit)
        if scope is None:
            try:
                self.engine.scope_for(agent, explicit)
            except NotLoggedIn:
                return
            raise AssertionError("scope_for accepted an agent that is not logged in")
        assert self.engine.scope_for(agent, explicit) == scope
        camps, teams = scope
        self.model.expire(self.now)
        expected = []
        for _ in range(count):
            got = self.model.best(agent, camps, teams, self.now)
            if got is None:
                break
            m, reason = got
            m.lease = MLease(-1, agent, self.now + CAMPAIGNS[m.campaign].lease_s)
            expected.append((m, reason))
        leases = self.engine.next(agent, camps, teams, count, 1000, self.now)
        assert [(x.record.rid, x.reason) for x in leases] == \
            [(m.rid, reason) for m, reason in expected], self._explain(agent, camps, teams)
        for x, (m, _) in zip(leases, expected, strict=False):
            # what the daemon reads from the database for a record it hands out
            x.record.id, x.record.list, x.record.data = m.id, "list", "{}"
            if x.record.state == READY:
                x.record.team = m.team
            assert m.lease is not None
            assert x.expires_at == m.lease.expires_at
            assert (x.phone_idx, x.phone) == m.phone()
            assert x.agent == agent
            m.lease.lid = x.lid
        if len(leases) < count:
            self._check_wake(agent, camps, teams)

    def _check_wake(self, agent: str, camps: tuple[str, ...], teams: tuple[str, ...]) -> None:
        """Nothing may become possible for ``agent`` before ``next_wake``."""
        wake = self.engine.next_wake(camps, self.now)
        assert wake > self.now
        horizon = min(wake, self.now + 30 * 86400)
        span = horizon - self.now
        probes = [self.now + span * f for f in (0.0, 0.25, 0.5, 0.75, 0.999)]
        if wake < math.inf:
            probes.append(wake - 0.001)
        for t in probes:
            if self.now <= t < wake:
                got = self.model.best(agent, camps, teams, t)
                assert got is None, (
                    f"{got[0].id} becomes possible at {datetime.fromtimestamp(t, UTC)}, "
                    f"before next_wake {wake}")

    @rule(agent=st.sampled_from(AGENTS))
    def peek(self, agent: str) -> None:
        scope = self._scope(agent, None)
        if scope is None:
            return
        camps, teams = scope
        got = self.engine.select(agent, camps, teams, self.now)
        got_id = None if got is None else self.model.by_rid(got[0]).id
        # select does not expire leases: the model must not either
        held = {id(r): r.lease for r in self.model.recs.values()}
        try:
            for r in self.model.recs.values():
                if r.lease is not None:
                    r.lease = replace(r.lease, expires_at=math.inf)
            want = self.model.best(agent, camps, teams, self.now)
        finally:
            for r in self.model.recs.values():
                r.lease = held[id(r)]
        assert (None if got is None else (got_id, got[1])) == \
            (None if want is None else (want[0].id, want[1]))

    def _explain(self, agent: str, camps: tuple[str, ...], teams: tuple[str, ...]) -> str:
        rows = [(f"now={datetime.fromtimestamp(self.now, UTC)} agent={agent} camps={camps} "
                 f"teams={teams} agents={self.model.agents}")]
        for r in self.model.recs.values():
            if r.state in (READY, CALLBACK):
                rows.append(f"  {r.id} {r.campaign} {r.tz} {r.state} due="
                            f"{datetime.fromtimestamp(r.due_at, UTC)} score={r.score()} "
                            f"owner={r.owner} team={r.team} cb={r.cb} lease={r.lease}")
        return "\n".join(rows)

    # ----------------------------------------------------------------- lease holders
    def _has_live(self) -> bool:
        return bool(self.model.live_leases(self.now))

    @precondition(_has_live)
    @rule(data=st.data())
    def dispose(self, data: st.DataObject) -> None:
        self._dispose(data.draw(st.sampled_from(self.model.live_leases(self.now))), data)

    @rule(agent=st.sampled_from(AGENTS), count=st.integers(1, 3), data=st.data())
    def work(self, agent: str, count: int, data: st.DataObject) -> None:
        """An agent's (or dialer's) cycle: next, then a disposition or a release for each."""
        if self._scope(agent, None) is None:
            return
        before = {r.lease.lid for r in self.model.recs.values() if r.lease}
        self.next(agent, count, None)
        for m in sorted((r for r in self.model.recs.values()
                         if r.lease and r.lease.lid not in before), key=lambda r: r.rid):
            if data.draw(st.integers(0, 4)):
                self._dispose(m, data)
            else:
                assert m.lease is not None
                self.engine.release(self.engine.leases[m.lease.lid], self.now)
                m.lease = None

    def _dispose(self, m: MRec, data: st.DataObject) -> None:
        assert m.lease is not None
        lease = self.engine.leases[m.lease.lid]
        camp = CAMPAIGNS[m.campaign]
        code = data.draw(st.sampled_from(sorted(camp.codes)))
        req = None
        if camp.codes[code].action == "callback" and data.draw(st.integers(0, 9)) > 0:
            if data.draw(st.booleans()):
                tz = data.draw(st.sampled_from((m.tz, m.tz, *ZONES)))
                day = (datetime.fromtimestamp(self.now, calendar.zone(tz)).date()
                       + timedelta(days=data.draw(st.integers(0, 3))))
                hour = data.draw(st.one_of(st.integers(9, 16), st.integers(6, 22)))
                text = f"{day}T{hour:02d}:" \
                       f"{data.draw(st.sampled_from((0, 15, 30, 45, 59))):02d}"
            else:
                tz = None
                off = data.draw(st.sampled_from((-900.0, -60.0, 0.0, 1.0, 600.0, 3600.0,
                                                 86400.0)))
                text = datetime.fromtimestamp(self.now + off, UTC).isoformat()
            req = CallbackRequest(
                at=text, timezone=tz,
                scope=data.draw(st.sampled_from((None, *SCOPES))),
                owner=data.draw(st.sampled_from((None, *AGENTS))),
                team=data.draw(st.sampled_from((None, *TEAMS))),
                override_window=data.draw(st.integers(0, 2)) > 0)
        fields: dict[str, object] = {}
        if code == "QUOTE":
            fields = {"amount": data.draw(st.sampled_from((10.0, 99.99, 1500.0)))}
            if data.draw(st.booleans()):
                fields["kans"] = data.draw(st.sampled_from((0, 25, 80, 100)))
        d = Disposition(code=code, agent=lease.agent, phone_idx=lease.phone_idx, callback=req,
                        fields=fields)
        try:
            out = decide(m.to_record(), camp, d, self.now)
        except NextcallError as exc:
            # the engine's record is the same record, so it is refused the same way
            try:
                decide(lease.record, camp, d, self.now)
            except NextcallError as exc2:
                assert (type(exc2), exc2.field) == (type(exc), exc.field)
            else:
                raise AssertionError("engine record decided differently from the model's")
            return
        assert decide(lease.record, camp, d, self.now) == out
        rec = self.engine.dispose(lease, out, self.now, b'{"code":"%s"}' % code.encode(),
                                  code)
        assert rec is lease.record and rec.lease is None
        m.lease = None
        m.state, m.reason, m.due_at, m.attempts = out.state, out.reason, out.due_at, \
            out.attempts
        m.owner, m.team, m.best_cp, m.phone_idx = out.owner, out.team, out.best_cp, \
            out.phone_idx
        m.cb = None if out.callback is None else replace(out.callback)
        if fields and camp.scoring.mode == "expected_value":
            m.quote = Quote(float(fields["amount"]),  # type: ignore[arg-type]
                            float(fields.get("kans", 100)))  # type: ignore[arg-type]
        assert rec.quote == m.quote

    @precondition(_has_live)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        m = data.draw(st.sampled_from(self.model.live_leases(self.now)))
        assert m.lease is not None
        self.engine.release(self.engine.leases[m.lease.lid], self.now)
        m.lease = None

    @precondition(_has_live)
    @rule(data=st.data(), lease_s=st.sampled_from((1.0, 30.0, 300.0, 3600.0)))
    def extend(self, data: st.DataObject, lease_s: float) -> None:
        m = data.draw(st.sampled_from(self.model.live_leases(self.now)))
        assert m.lease is not None
        lease = self.engine.leases[m.lease.lid]
        self.engine.extend(lease, self.now, lease_s)
        m.lease.expires_at = self.now + lease_s
        assert lease.expires_at == m.lease.expires_at

    @rule()
    def expire(self) -> None:
        got = {x.lid for x in self.engine.expire(self.now)}
        assert got == self.model.expire(self.now)

    # ----------------------------------------------------------------- time
    @rule(delta=DELTAS)
    def advance(self, delta: float) -> None:
        self.now += delta

    @precondition(lambda self: any(r.lease for r in self.model.recs.values()))
    @rule(data=st.data())
    def advance_to_lease_expiry(self, data: st.DataObject) -> None:
        leased = sorted((r for r in self.model.recs.values() if r.lease), key=lambda r: r.rid)
        m = data.draw(st.sampled_from(leased))
        assert m.lease is not None
        self.now = max(self.now, m.lease.expires_at)

    @rule(agent=st.sampled_from(AGENTS))
    def advance_to_wake(self, agent: str) -> None:
        """Jump to exactly the instant the engine would wake a long-polling ``next``."""
        scope = self._scope(agent, None)
        if scope is None:
            return
        camps, teams = scope
        self.engine.expire(self.now)
        self.model.expire(self.now)
        if self.engine.select(agent, camps, teams, self.now) is not None:
            return
        wake = self.engine.next_wake(camps, self.now)
        if wake < self.now + 30 * 86400:
            self.now = wake

    # ----------------------------------------------------------------- invariants
    @invariant()
    def engine_is_consistent(self) -> None:
        self.engine.check_invariants()

    @invariant()
    def engine_matches_model(self) -> None:
        e = self.engine
        open_ids = {r.id for r in self.model.recs.values() if r.state in (READY, CALLBACK)}
        assert len(e) == len(open_ids)
        for m in self.model.recs.values():
            assert e.is_open(m.rid) == (m.id in open_ids)
        for rid in open_ids:
            m = self.model.recs[rid]
            r = e.record(m.rid)
            assert r is not None
            # a pool record's team lives in the database, not in memory
            team = m.team if m.state == CALLBACK else None
            assert (r.state, r.reason, r.due_at, r.attempts, r.best_cp, r.phone_idx, r.owner,
                    r.team, r.campaign, r.timezone) == \
                (m.state, m.reason, m.due_at, m.attempts, m.best_cp, m.phone_idx, m.owner,
                 team, m.campaign, m.tz)
            assert r.callback == m.cb
            assert r.score == m.score()
            assert r.quote == m.quote
            assert (r.lease.lid if r.lease else None) == (m.lease.lid if m.lease else None)
            if m.lease is not None:
                assert r.lease is not None
                assert (r.lease.expires_at, r.lease.agent) == (m.lease.expires_at, m.lease.agent)
        assert set(e.leases) == {r.lease.lid for r in self.model.recs.values() if r.lease}
        for name in CAMPAIGN_NAMES:
            closed: dict[str, int] = {}
            for m in self.model.recs.values():
                if m.campaign == name and m.state == CLOSED:
                    closed[m.reason or ""] = closed.get(m.reason or "", 0) + 1
            assert {k: v for k, v in e.queues[name].closed.items() if v} == closed


EngineModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TestEngineModel = EngineModel.TestCase

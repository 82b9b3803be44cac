"""The engine by example: selection order (SPEC §3), windows, dormant records, leases,
``next_wake`` and ``bulk_load``. Every engine operation here is followed by
``check_invariants`` (see ``CheckedEngine``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import pytest

from nextcall.core import calendar
from nextcall.core.engine import Engine, ready_groups
from nextcall.core.errors import BadRequest, NotLoggedIn, UnknownCampaign
from nextcall.core.model import Campaign, Interval, ResultCode
from nextcall.core.records import (
    CALLBACK,
    CLOSED,
    PHONE_ACTIVE,
    PHONE_BLOCKED,
    PHONE_DNC,
    PHONE_REMOVED,
    READY,
    CallbackIntent,
    Lease,
    Record,
)
from nextcall.core.results import CallbackRequest, Disposition, decide

INF = float("inf")


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, tz: str = "UTC") -> float:
    return datetime(y, mo, d, h, mi, tzinfo=calendar.zone(tz)).timestamp()


# Wednesday 2026-03-04 12:00 UTC
T0 = at(2026, 3, 4, 12)

CODES = {rc.code: rc for rc in (
    ResultCode("NA", "no answer", "retry", delay_s=600),
    ResultCode("CB", "call back", "callback", contact_priority=6),
    ResultCode("NOPE", "no", "close", contact_priority=4),
    ResultCode("DNC", "do not call", "dnc"),
)}
LEGAL_ONLY = tuple((Interval(0, 24 * 60),) for _ in range(7))
OFFICE = tuple((Interval(9 * 60, 17 * 60),) if i < 5 else () for i in range(7))


def campaign(name: str = "alpha", window: tuple[tuple[Interval, ...], ...] = LEGAL_ONLY,
             **kw: Any) -> Campaign:
    return Campaign(name=name, codes=CODES, window=window, **kw)


def _checked(name: str) -> Callable[..., Any]:
    method = getattr(Engine, name)

    def wrapper(self: Engine, *args: Any, **kw: Any) -> Any:
        out = method(self, *args, **kw)
        self.check_invariants()
        return out
    wrapper.__name__ = name
    return wrapper


class CheckedEngine(Engine):
    """An engine that checks its invariants after every operation."""


for _name in ("add", "bulk_load", "select", "next", "lease", "release", "extend", "dispose",
              "expire", "next_wake", "login", "logout"):
    setattr(CheckedEngine, _name, _checked(_name))


def engine(*camps: Campaign) -> CheckedEngine:
    camps = camps or (campaign(),)
    return CheckedEngine({c.name: c for c in camps})


def rec(rid: int, *, campaign: str = "alpha", tz: str = "UTC", priority: int = 1,
        due_at: float = 0.0, phones: list[list[str]] | str | None = None,
        **kw: Any) -> Record:
    if phones is None:
        phones = [[f"+3120{rid:07d}", PHONE_ACTIVE], [f"+3160{rid:07d}", PHONE_ACTIVE]]
    return Record(rid, f"r{rid}", campaign, "list1", phones, tz, priority, "{}",
                  due_at=due_at, **kw)


def cbrec(rid: int, scope: str, *, owner: str | None = None, team: str | None = None,
          due_at: float = T0, cp: int = 4, override: bool = False, **kw: Any) -> Record:
    intent = CallbackIntent(at=due_at, timezone=kw.get("tz", "UTC"), local="", scope=scope,
                            owner=owner, team=team, contact_priority=cp,
                            override_window=override, code="CB")
    return rec(rid, state=CALLBACK, due_at=due_at, owner=owner, team=team, callback=intent,
               **kw)


def take(e: Engine, agent: str, now: float, count: int = 1,
         campaigns: list[str] | None = None) -> list[tuple[str, str]]:
    camps, teams = e.scope_for(agent, campaigns)
    return [(f"r{lease.record.rid}", lease.reason)
            for lease in e.next(agent, camps, teams, count, 1000, now)]


def leases(e: Engine, agent: str, now: float, count: int = 1) -> list[Lease]:
    camps, teams = e.scope_for(agent, None)
    return e.next(agent, camps, teams, count, 1000, now)


def picked(e: Engine, agent: str, now: float) -> str | None:
    camps, teams = e.scope_for(agent, None)
    got = e.select(agent, camps, teams, now)
    return None if got is None else f"r{got[0]}"


def stored(e: Engine, rid: int) -> Record:
    """What the engine holds for record ``rid`` now."""
    got = e.record(rid)
    assert got is not None
    return got


def durable(r: Record) -> tuple[object, ...]:
    return (*r.snapshot(), r.score, r.priority, r.timezone)


# ------------------------------------------------------------------------- selection order
def test_selection_order_personal_then_team_then_pool() -> None:
    e = engine()
    for r in (rec(1, priority=9),
              cbrec(2, "personal", owner="ann", due_at=T0 - 100),
              cbrec(3, "personal_then_team", owner="ann", team="t1", due_at=T0 - 500, cp=1),
              cbrec(4, "anyone", owner="cy", due_at=T0 - 1000, cp=6),
              cbrec(5, "team", team="t1", due_at=T0 - 900, cp=6),
              cbrec(6, "personal", owner="bob", due_at=T0 - 5000, cp=6)):
        e.add(r, T0)
    e.login("ann", ["alpha"], ["t1"])
    got = [take(e, "ann", T0)[0] for _ in range(5)]
    assert got == [("r3", "personal_callback"), ("r2", "personal_callback"),
                   ("r4", "team_callback"), ("r5", "team_callback"), ("r1", "pool")]
    assert take(e, "ann", T0) == []  # r6 is bob's alone


def test_batch_next_follows_the_same_order() -> None:
    e = engine()
    e.add(rec(1, priority=9), T0)
    e.add(cbrec(2, "personal", owner="ann", due_at=T0 - 1), T0)
    e.add(cbrec(3, "anyone", due_at=T0 - 1), T0)
    e.login("ann", ["alpha"], [])
    assert take(e, "ann", T0, count=3) == [("r2", "personal_callback"),
                                           ("r3", "team_callback"), ("r1", "pool")]


def test_team_callbacks_by_contact_priority_then_earliest_then_import_order() -> None:
    e = engine()
    for r in (cbrec(10, "team", team="t1", due_at=T0 - 1000, cp=3),
              cbrec(11, "team", team="t1", due_at=T0 - 10, cp=6),
              cbrec(13, "anyone", owner="x", due_at=T0 - 500, cp=6),
              cbrec(12, "anyone", owner="x", due_at=T0 - 500, cp=6),
              cbrec(14, "team", team="t2", due_at=T0 - 9000, cp=9)):
        e.add(r, T0)
    e.login("ann", ["alpha"], ["t1"])
    assert [take(e, "ann", T0)[0][0] for _ in range(4)] == ["r12", "r13", "r11", "r10"]
    assert take(e, "ann", T0) == []  # r14 belongs to team t2
    e.login("ann", ["alpha"], ["t1", "t2"])
    assert take(e, "ann", T0) == [("r14", "team_callback")]


def test_own_callbacks_earliest_first_across_campaigns() -> None:
    e = engine(campaign("alpha"), campaign("beta"))
    # import order disagrees with due order across the two campaigns
    e.add(cbrec(1, "personal", owner="ann", due_at=T0 - 10, campaign="beta"), T0)
    e.add(cbrec(2, "personal", owner="ann", due_at=T0 - 20, campaign="beta"), T0)
    e.add(cbrec(3, "personal", owner="ann", due_at=T0 - 30, campaign="alpha"), T0)
    e.add(cbrec(4, "personal", owner="ann", due_at=T0 - 10, campaign="alpha"), T0)
    e.login("ann", ["alpha", "beta"], [])
    assert [x for x, _ in take(e, "ann", T0, count=4)] == ["r3", "r2", "r1", "r4"]


def test_personal_callback_stays_with_its_owner() -> None:
    e = engine()
    e.add(cbrec(1, "personal", owner="bob", team="t1", due_at=T0), T0)
    e.login("ann", ["alpha"], ["t1"])
    assert take(e, "ann", T0 + 86400) == []  # bob never logged in: still bob's
    e.login("bob", ["alpha"], [])
    e.logout("bob")
    assert take(e, "ann", T0 + 2 * 86400) == []
    e.login("bob", ["alpha"], [])
    assert take(e, "bob", T0 + 2 * 86400) == [("r1", "personal_callback")]


def test_personal_then_team_waits_for_grace() -> None:
    e = engine(campaign(grace_s=900))
    e.add(cbrec(1, "personal_then_team", owner="bob", team="t1", due_at=T0), T0 - 3600)
    e.login("bob", ["alpha"], [])
    e.login("ann", ["alpha"], ["t1"])
    e.login("cy", ["alpha"], ["t2"])
    assert picked(e, "ann", T0) is None
    assert picked(e, "ann", T0 + 899.5) is None
    assert picked(e, "bob", T0 + 899.5) == "r1"
    assert picked(e, "ann", T0 + 900) == "r1"
    assert picked(e, "cy", T0 + 5000) is None  # not in the team
    assert take(e, "ann", T0 + 900) == [("r1", "team_callback")]


def test_personal_then_team_goes_to_team_when_owner_logs_out() -> None:
    e = engine(campaign(grace_s=900))
    e.add(cbrec(1, "personal_then_team", owner="bob", team="t1", due_at=T0), T0)
    e.login("bob", ["alpha"], [])
    e.login("ann", ["alpha"], ["t1"])
    assert picked(e, "ann", T0 + 10) is None
    e.logout("bob")
    assert picked(e, "ann", T0 + 10) == "r1"
    e.login("bob", ["alpha"], [])
    assert picked(e, "ann", T0 + 10) is None


def test_personal_then_team_owner_in_another_campaign_counts_as_absent() -> None:
    e = engine(campaign("alpha", grace_s=900), campaign("beta"))
    e.add(cbrec(1, "personal_then_team", owner="bob", team="t1", due_at=T0), T0)
    e.login("bob", ["beta"], [])
    e.login("ann", ["alpha"], ["t1"])
    assert take(e, "ann", T0 + 1) == [("r1", "team_callback")]


def test_personal_then_team_without_team_goes_to_anyone_after_grace() -> None:
    e = engine(campaign(grace_s=600))
    e.add(cbrec(1, "personal_then_team", owner="bob", due_at=T0), T0)
    e.login("bob", ["alpha"], [])
    e.login("ann", ["alpha"], [])
    assert picked(e, "ann", T0 + 599) is None
    assert picked(e, "ann", T0 + 600) == "r1"


def test_pool_by_score_then_due_then_import_order() -> None:
    e = engine()
    for r in (rec(1, priority=1, due_at=T0 - 10),
              rec(2, priority=2, due_at=T0),
              rec(3, priority=2, due_at=T0 - 50),
              rec(5, priority=2, due_at=T0 - 50),
              rec(4, priority=2, due_at=T0 - 50),
              rec(6, priority=1, best_cp=4),                # 100 + 15 beats r1 (100)
              rec(7, priority=2, attempts=3, due_at=T0 - 99),  # 200 - 3
              rec(8, priority=0, tz="Asia/Kolkata")):
        e.add(r, T0)
    e.login("ann", ["alpha"], [])
    assert [take(e, "ann", T0)[0] for _ in range(8)] == [
        (f"r{i}", "pool") for i in (3, 4, 5, 2, 7, 6, 1, 8)]


def test_pool_compares_across_zones_and_campaigns() -> None:
    e = engine(campaign("alpha", lease_s=7200), campaign("beta", lease_s=7200))
    e.add(rec(1, priority=1, tz="Europe/Amsterdam"), T0)
    e.add(rec(2, priority=3, tz="Asia/Kolkata", campaign="beta"), T0)
    e.add(rec(3, priority=2, tz="America/New_York"), T0 + 0.0)
    e.login("ann", ["alpha", "beta"], [])
    # 12:00 UTC: Kolkata 17:30, New York 07:00 (before the legal window), Amsterdam 13:00
    assert [take(e, "ann", T0)[0][0] for _ in range(2)] == ["r2", "r1"]
    assert take(e, "ann", T0) == []
    assert take(e, "ann", at(2026, 3, 4, 13)) == [("r3", "pool")]


def test_pool_ties_across_zones_and_campaigns_go_by_import_order() -> None:
    e = engine(campaign("alpha", lease_s=86400), campaign("beta", lease_s=86400))
    # the Amsterdam heap is created first, by r1, and later holds r4 and r5
    e.add(rec(1, priority=5, tz="Europe/Amsterdam"), T0)
    e.add(rec(2, priority=2, tz="Asia/Kolkata", due_at=T0 - 60), T0)
    e.add(rec(3, priority=2, tz="UTC", due_at=T0 - 60, campaign="beta"), T0)
    e.add(rec(4, priority=2, tz="Europe/Amsterdam", due_at=T0 - 60), T0)
    e.add(rec(5, priority=2, tz="Europe/Amsterdam", due_at=T0 - 61), T0)
    e.login("ann", ["alpha", "beta"], [])
    assert [x for x, _ in take(e, "ann", T0, count=5)] == ["r1", "r5", "r2", "r3", "r4"]


def test_team_callback_ties_across_heaps_and_campaigns() -> None:
    e = engine(campaign("alpha"), campaign("beta"))
    e.add(cbrec(1, "team", team="t1", due_at=T0 - 10, cp=6), T0)
    e.add(cbrec(2, "anyone", due_at=T0 - 20, cp=6), T0)
    e.add(cbrec(3, "team", team="t2", due_at=T0 - 20, cp=6, campaign="beta"), T0)
    e.add(cbrec(4, "team", team="t1", due_at=T0 - 20, cp=6, campaign="beta"), T0)
    e.login("ann", ["alpha", "beta"], ["t1", "t2"])
    assert [x for x, _ in take(e, "ann", T0, count=4)] == ["r2", "r3", "r4", "r1"]


def test_closed_window_zones_are_skipped() -> None:
    e = engine(campaign(window=OFFICE))
    e.add(rec(1, priority=9, tz="Asia/Kolkata"), T0)      # 17:30 local: closed
    e.add(rec(2, priority=5, tz="America/New_York"), T0)  # 07:00 local: closed
    e.add(rec(3, priority=1, tz="Europe/Amsterdam"), T0)  # 13:00 local: open
    e.login("ann", ["alpha"], [])
    assert picked(e, "ann", T0) == "r3"
    assert picked(e, "ann", at(2026, 3, 4, 14)) == "r2"   # 09:00 in New York
    assert picked(e, "ann", at(2026, 3, 5, 3, 30)) == "r1"  # 09:00 in Kolkata
    assert picked(e, "ann", at(2026, 3, 7, 12)) is None   # Saturday everywhere


def test_callback_windows_and_override() -> None:
    e = engine(campaign(window=OFFICE))
    ny = "America/New_York"
    e.add(cbrec(1, "personal", owner="ann", due_at=T0 - 7200, tz=ny), T0)
    e.add(cbrec(2, "personal", owner="ann", due_at=T0 - 3600, tz=ny, override=True), T0)
    e.login("ann", ["alpha"], [])
    assert picked(e, "ann", T0) is None                   # 07:00 in New York: not legal
    assert picked(e, "ann", at(2026, 3, 4, 13)) == "r2"   # 08:00: legal, before the window
    assert picked(e, "ann", at(2026, 3, 4, 14)) == "r1"   # 09:00: both open, r1 earlier
    # Saturday: only the override callback
    assert picked(e, "ann", at(2026, 3, 7, 14)) == "r2"


def test_dormant_records_become_eligible_exactly_at_due() -> None:
    e = engine()
    e.add(rec(1, due_at=T0 + 600), T0)
    e.add(cbrec(2, "personal", owner="ann", due_at=T0 + 1200), T0)
    e.login("ann", ["alpha"], [])
    assert picked(e, "ann", T0 + 599.999) is None
    assert picked(e, "ann", T0 + 600) == "r1"
    assert picked(e, "ann", T0 + 1199.999) == "r1"
    assert picked(e, "ann", T0 + 1200) == "r2"


def test_disabled_campaign_hands_out_nothing() -> None:
    e = engine(campaign("alpha", enabled=False), campaign("beta"))
    e.add(rec(1, priority=9), T0)
    e.add(rec(2, priority=1, campaign="beta"), T0)
    e.login("ann", ["alpha", "beta"], [])
    assert take(e, "ann", T0, count=3) == [("r2", "pool")]


def test_records_of_unknown_campaigns_are_ignored() -> None:
    e = engine()
    e.add(rec(1, campaign="gone"), T0)
    assert e.select("ann", ("alpha", "gone"), (), T0) is None


# Regression: SPEC §3 selects only records "with a callable number"; the engine handed
# out a record whose numbers were all dnc / removed / blocked, with phone "".
def test_record_without_callable_number_is_not_handed_out() -> None:
    e = engine()
    e.add(rec(1, priority=9, phones=[["+31201", PHONE_DNC], ["+31202", PHONE_REMOVED],
                                     ["+31203", PHONE_BLOCKED]]), T0)
    e.add(rec(2, priority=1), T0)
    e.login("ann", ["alpha"], [])
    got = leases(e, "ann", T0, count=2)
    assert [f"r{lease.record.rid}" for lease in got] == ["r2"]
    assert all(lease.phone for lease in got)


DEAD = [["+31201", PHONE_DNC], ["+31202", PHONE_REMOVED], ["+31203", PHONE_BLOCKED]]


def test_no_number_records_leave_circulation() -> None:
    e = engine()
    e.add(rec(1, phones=[list(p) for p in DEAD]), T0)
    e.add(rec(2, phones=[list(p) for p in DEAD], due_at=T0 + 600), T0)
    e.add(cbrec(3, "personal", owner="ann", phones=[list(p) for p in DEAD]), T0)
    assert {e.slot_of(i) for i in (1, 2, 3)} == {"no_number"}
    assert e.queues["alpha"].counts["no_number"] == 3
    e.login("ann", ["alpha"], [])
    assert take(e, "ann", T0 + 700, count=3) == []
    assert e.next_wake(["alpha"], T0 + 700) == INF  # nothing to wait for


def test_phones_as_json_text_from_a_rebuild() -> None:
    e = engine()
    e.bulk_load(*ready_groups([rec(1, phone_idx=1, phones='[["+311","active"],'
                                   '["+312","dnc"],["+313","active"]]')]), T0)
    e.login("ann", ["alpha"], [])
    got = leases(e, "ann", T0)
    assert [(x.phone, x.phone_idx) for x in got] == [("+313", 2)]
    r = _dispose(e, got[0], "NA", T0 + 1)
    assert r.phone_idx == 0 and r.phones[0] == ["+311", "active"]


def test_a_rebuilt_record_whose_one_number_is_listed_has_no_number() -> None:
    """After a restart a record whose only number is on the DNC list counts as
    ``no_number`` at once, as before the restart (it counted as due until a ``next``
    reached it)."""
    e = engine()
    e.set_listed([("+31201", "dnc")])
    e.bulk_load(*ready_groups([rec(1, phones=[["+31201", PHONE_ACTIVE]]),
                               rec(2, phones=[["+31202", PHONE_ACTIVE]])]), T0)
    assert (e.slot_of(1), e.slot_of(2)) == ("no_number", "due")
    assert e.queues["alpha"].counts["no_number"] == 1
    e.login("ann", ["alpha"], [])
    assert take(e, "ann", T0, count=2) == [("r2", "pool")]


# ------------------------------------------------------------------------- leases
def test_lease_fields_and_exclusivity() -> None:
    e = engine(campaign(lease_s=300))
    for i in range(1, 6):
        e.add(rec(i, priority=i), T0)
    e.login("ann", ["alpha"], [])
    e.login("bob", ["alpha"], [])
    a = leases(e, "ann", T0, count=3)
    b = leases(e, "bob", T0, count=3)
    assert [x.record.rid for x in a] == [5, 4, 3]
    assert [x.record.rid for x in b] == [2, 1]
    assert leases(e, "bob", T0) == []
    ids = [x.record.rid for x in a + b]
    assert len(set(ids)) == 5
    for x in a + b:
        assert x.expires_at == T0 + 300
        assert x.reason == "pool"
        assert x.record.lease is x
        lid, secret = e.find_lease(x.token)
        assert lid == x.lid and secret == x.secret and len(secret) >= 16
        assert x.phone == x.record.phones[0][0] and x.phone_idx == 0
    assert len({x.token for x in a + b}) == 5
    assert len(e.leases) == 5


def test_lease_length_override() -> None:
    e = engine(campaign(lease_s=300))
    e.add(rec(1), T0)
    lease = e.next("ann", ("alpha",), (), 1, 0, T0, lease_s=45)[0]
    assert lease.expires_at == T0 + 45


def test_lease_phone_follows_phone_idx_skipping_dead_numbers() -> None:
    e = engine()
    e.add(rec(1, phone_idx=1, phones=[["+311", PHONE_ACTIVE], ["+312", PHONE_DNC],
                                      ["+313", PHONE_ACTIVE]]), T0)
    e.add(rec(2, priority=0, phone_idx=2, phones=[["+321", PHONE_ACTIVE],
                                                  ["+322", PHONE_ACTIVE],
                                                  ["+323", PHONE_REMOVED]]), T0)
    e.login("ann", ["alpha"], [])
    got = leases(e, "ann", T0, count=2)
    assert [(x.phone, x.phone_idx) for x in got] == [("+313", 2), ("+321", 0)]


def test_release_puts_the_record_back_unchanged() -> None:
    e = engine()
    e.add(rec(1, priority=3, attempts=2, best_cp=3, due_at=T0 - 60), T0)
    e.add(rec(2, priority=1), T0)
    before = durable(stored(e, 1))
    e.login("ann", ["alpha"], [])
    e.login("bob", ["alpha"], [])
    lease = leases(e, "ann", T0)[0]
    assert lease.record.rid == 1 and stored(e, 1).lease is lease
    assert picked(e, "bob", T0 + 5) == "r2"
    e.release(lease, T0 + 10)
    assert durable(stored(e, 1)) == before and stored(e, 1).lease is None
    assert lease.lid not in e.leases and e.ended[lease.lid].kind == "released"
    assert picked(e, "bob", T0 + 10) == "r1"


def test_released_callback_stays_a_callback() -> None:
    e = engine()
    e.add(cbrec(1, "personal", owner="ann", due_at=T0 - 60), T0)
    e.login("ann", ["alpha"], [])
    before = durable(stored(e, 1))
    e.release(leases(e, "ann", T0)[0], T0 + 1)
    assert durable(stored(e, 1)) == before
    assert take(e, "ann", T0 + 2) == [("r1", "personal_callback")]


def test_expire_exactly_at_expiry_puts_record_back() -> None:
    e = engine(campaign(lease_s=300))
    e.add(rec(1, best_cp=1), T0)
    before = durable(stored(e, 1))
    e.login("ann", ["alpha"], [])
    e.login("bob", ["alpha"], [])
    lease = leases(e, "ann", T0)[0]
    assert e.expire(T0 + 299.999) == []
    assert picked(e, "bob", T0 + 299.999) is None
    assert e.expire(T0 + 300) == [lease]
    assert durable(stored(e, 1)) == before and stored(e, 1).lease is None
    assert e.ended[lease.lid].kind == "expired"
    assert e.expire(T0 + 400) == []
    assert take(e, "bob", T0 + 300) == [("r1", "pool")]


def test_next_expires_leases_first() -> None:
    e = engine(campaign(lease_s=300))
    e.add(rec(1), T0)
    e.login("ann", ["alpha"], [])
    e.login("bob", ["alpha"], [])
    first = leases(e, "ann", T0)[0]
    assert take(e, "bob", T0 + 299) == []
    assert take(e, "bob", T0 + 300) == [("r1", "pool")]
    assert first.lid not in e.leases


def test_extend_moves_expiry() -> None:
    e = engine(campaign(lease_s=300))
    e.add(rec(1), T0)
    e.login("ann", ["alpha"], [])
    lease = leases(e, "ann", T0)[0]
    e.extend(lease, T0 + 200, 300)
    assert lease.expires_at == T0 + 500
    assert e.expire(T0 + 300) == []
    assert e.leases[lease.lid] is lease
    assert e.next_wake(["alpha"], T0 + 300) == T0 + 500
    assert e.expire(T0 + 499) == []
    assert e.expire(T0 + 500) == [lease]


def test_released_lease_does_not_expire_later() -> None:
    e = engine(campaign(lease_s=300))
    e.add(rec(1), T0)
    e.login("ann", ["alpha"], [])
    e.login("bob", ["alpha"], [])
    lease = leases(e, "ann", T0)[0]
    e.release(lease, T0 + 1)
    second = leases(e, "bob", T0 + 100)[0]
    assert e.expire(T0 + 300) == []  # the first lease's expiry entry is stale
    assert e.leases[second.lid] is second


def _dispose(e: Engine, lease: Lease, code: str, now: float, **kw: Any) -> Record:
    d = Disposition(code=code, agent=lease.agent, phone_idx=lease.phone_idx, **kw)
    out = decide(lease.record, e.campaigns[lease.record.campaign], d, now)
    return e.dispose(lease, out, now, orjson.dumps({"code": code}), code)


def test_records_whose_one_number_is_listed_leave_circulation_at_once() -> None:
    """A DNC disposition lists the number: other records whose one number it is count as
    ``no_number`` now (as after a restart), whatever slot they waited in; a record with a
    second number stays due."""
    e = engine()
    same = [["+31201", PHONE_ACTIVE]]
    e.add(rec(1, priority=9, phones=[list(p) for p in same]), T0)
    e.add(rec(2, phones=[list(p) for p in same]), T0)
    e.add(rec(3, phones=[list(p) for p in same], due_at=T0 + 600), T0)
    e.add(cbrec(4, "anyone", phones=[list(p) for p in same], due_at=T0 + 300), T0)
    e.add(rec(5, phones=[["+31201", PHONE_ACTIVE], ["+31205", PHONE_ACTIVE]]), T0)
    e.login("ann", ["alpha"], [])
    (first,) = leases(e, "ann", T0)
    assert first.record.rid == 1
    _dispose(e, first, "DNC", T0 + 1)
    assert [e.slot_of(i) for i in (2, 3, 4, 5)] == ["no_number"] * 3 + ["due"]
    assert e.queues["alpha"].counts["no_number"] == 3  # r1 itself closed (dnc)
    assert take(e, "ann", T0 + 700, count=5) == [("r5", "pool")]


def test_dispose_retry_makes_record_dormant_until_due() -> None:
    e = engine()
    e.add(rec(1, priority=5), T0)
    e.add(rec(2, priority=1), T0)
    e.login("ann", ["alpha"], [])
    lease = leases(e, "ann", T0)[0]
    r = _dispose(e, lease, "NA", T0 + 30)
    assert (r.state, r.attempts, r.due_at, r.phone_idx) == (READY, 1, T0 + 630, 1)
    assert r.score == 500 + 0 - 1
    assert e.ended[lease.lid].kind == "disposed"
    assert take(e, "ann", T0 + 629) == [("r2", "pool")]
    got = leases(e, "ann", T0 + 630)
    assert [(x.record.rid, x.phone) for x in got] == [(1, r.phones[1][0])]


def test_dispose_close_removes_record() -> None:
    e = engine()
    e.add(rec(1), T0)
    e.login("ann", ["alpha"], [])
    _dispose(e, leases(e, "ann", T0)[0], "NOPE", T0 + 1)
    assert not e.is_open(1)
    assert e.queues["alpha"].closed["final"] == 1
    assert take(e, "ann", T0 + 10 ** 6) == []


def test_dispose_callback_is_handed_to_its_owner() -> None:
    e = engine()
    e.add(rec(1), T0)
    e.login("ann", ["alpha"], [])
    e.login("bob", ["alpha"], [])
    lease = leases(e, "ann", T0)[0]
    r = _dispose(e, lease, "CB", T0 + 1,
                 callback=CallbackRequest("2026-03-04T15:00", scope="personal"))
    assert (r.state, r.owner, r.due_at) == (CALLBACK, "ann", at(2026, 3, 4, 15))
    assert take(e, "ann", at(2026, 3, 4, 14, 59)) == []
    assert take(e, "bob", at(2026, 3, 4, 16)) == []
    assert take(e, "ann", at(2026, 3, 4, 16)) == [("r1", "personal_callback")]


def test_dispose_exhausted_closes() -> None:
    e = engine(campaign(max_attempts=2))
    e.add(rec(1, attempts=1), T0)
    e.login("ann", ["alpha"], [])
    r = _dispose(e, leases(e, "ann", T0)[0], "NA", T0 + 1)
    assert (r.state, r.reason) == (CLOSED, "exhausted")
    assert not e.is_open(1) and e.queues["alpha"].closed["exhausted"] == 1


# ------------------------------------------------------------------------- next_wake
def test_next_wake_nothing_is_inf() -> None:
    e = engine()
    assert e.next_wake(["alpha"], T0) == INF
    assert e.next_wake(["nope"], T0) == INF


def test_next_wake_due_instant() -> None:
    e = engine()
    e.add(rec(1, due_at=T0 + 600), T0)
    e.add(rec(2, due_at=T0 + 900), T0)
    e.add(cbrec(3, "anyone", due_at=T0 + 300), T0)
    assert e.next_wake(["alpha"], T0) == T0 + 300
    e.login("ann", ["alpha"], [])
    take(e, "ann", T0 + 300)
    assert e.next_wake(["alpha"], T0 + 300) == T0 + 600


def test_next_wake_window_opening() -> None:
    e = engine(campaign(window=OFFICE))
    e.add(rec(1, tz="America/New_York"), T0)
    e.login("ann", ["alpha"], [])
    assert take(e, "ann", T0) == []
    assert e.next_wake(["alpha"], T0) == at(2026, 3, 4, 9, tz="America/New_York")


def test_next_wake_callback_window_opening() -> None:
    e = engine(campaign(window=OFFICE))
    e.add(cbrec(1, "anyone", due_at=T0 - 60, tz="America/New_York"), T0)
    e.login("ann", ["alpha"], [])
    assert take(e, "ann", T0) == []
    assert e.next_wake(["alpha"], T0) == at(2026, 3, 4, 9, tz="America/New_York")


def test_next_wake_grace_end() -> None:
    e = engine(campaign(grace_s=900))
    e.add(cbrec(1, "personal_then_team", owner="bob", team="t1", due_at=T0), T0)
    e.login("bob", ["alpha"], [])
    e.login("ann", ["alpha"], ["t1"])
    assert take(e, "ann", T0 + 100) == []
    assert e.next_wake(["alpha"], T0 + 100) == T0 + 900


def test_next_wake_lease_expiry() -> None:
    e = engine(campaign(lease_s=120))
    e.add(rec(1), T0)
    e.login("ann", ["alpha"], [])
    leases(e, "ann", T0)
    assert e.next_wake(["alpha"], T0 + 1) == T0 + 120


def test_next_wake_is_earliest_of_all() -> None:
    e = engine(campaign("alpha", window=OFFICE), campaign("beta"))
    e.add(rec(1, tz="America/New_York"), T0)               # opens 14:00 UTC
    e.add(rec(2, due_at=T0 + 1800, campaign="beta"), T0)   # due 12:30 UTC
    assert e.next_wake(["alpha"], T0) == at(2026, 3, 4, 14)
    assert e.next_wake(["alpha", "beta"], T0) == T0 + 1800


# Regression: select() skips disabled campaigns, so it never promotes their dormant
# records, but next_wake() read their dormant heap: once such a record was past due,
# next_wake returned ``now`` forever and a long-polling ``next`` spun.
def test_next_wake_ignores_disabled_campaigns() -> None:
    e = engine(campaign("alpha", enabled=False))
    e.add(rec(1, due_at=T0 + 60), T0)
    assert take(e, "ann", T0 + 120, campaigns=["alpha"]) == []
    assert e.next_wake(["alpha"], T0 + 120) > T0 + 120


# ------------------------------------------------------------------------- agents
def test_login_validates_campaigns() -> None:
    e = engine()
    with pytest.raises(UnknownCampaign) as exc:
        e.login("ann", ["alpha", "zeta"], [])
    assert (exc.value.code, exc.value.field) == ("unknown_campaign", "campaigns[1]")
    assert "ann" not in e.agents


def test_scope_for() -> None:
    e = engine(campaign("alpha"), campaign("beta"))
    with pytest.raises(NotLoggedIn) as exc:
        e.scope_for("ann", None)
    assert exc.value.field == "campaigns"
    assert e.scope_for("ann", ["beta"]) == (("beta",), ())
    e.login("ann", ["alpha", "alpha"], ["t1", "t2", "t1"])
    assert e.scope_for("ann", None) == (("alpha",), ("t1", "t2"))
    assert e.scope_for("ann", ["beta"]) == (("beta",), ("t1", "t2"))
    with pytest.raises(UnknownCampaign):
        e.scope_for("ann", ["beta", "zeta"])
    e.logout("ann")
    with pytest.raises(NotLoggedIn):
        e.scope_for("ann", None)
    assert e.scope_for("ann", ["alpha"]) == (("alpha",), ())


@pytest.mark.parametrize("token", ["", "abc", "12", "12.", ".xyz", "-1.abc", "x.y"])
def test_find_lease_bad_token(token: str) -> None:
    with pytest.raises(BadRequest) as exc:
        engine().find_lease(token)
    assert exc.value.field == "lease"


# ------------------------------------------------------------------------- bulk_load
def _population() -> list[Record]:
    zones = ("UTC", "Europe/Amsterdam", "America/New_York", "Asia/Kolkata")
    out = []
    for i in range(1, 41):
        kw: dict[str, Any] = {"campaign": "alpha" if i % 3 else "beta", "tz": zones[i % 4],
                              "priority": i % 4, "attempts": i % 5, "best_cp": (0, 1, 4)[i % 3]}
        due = T0 + (i % 7 - 3) * 1800
        if i % 6 == 0:
            out.append(cbrec(i, "personal", owner=("ann", "bob")[i % 2], due_at=due, **kw))
        elif i % 6 == 1:
            out.append(cbrec(i, "personal_then_team", owner="bob", team="t1", due_at=due,
                             cp=i % 7, **kw))
        elif i % 6 == 2:
            out.append(cbrec(i, "team", team=("t1", "t2")[i % 2], due_at=due, cp=i % 5, **kw))
        elif i % 11 == 0:
            out.append(cbrec(i, "anyone", due_at=due, override=True, **kw))
        elif i % 13 == 0:
            out.append(rec(i, due_at=due, phones=[list(p) for p in DEAD], **kw))
        else:
            out.append(rec(i, due_at=due, **kw))
    return out


def test_bulk_load_selects_like_add() -> None:
    camps = (campaign("alpha", window=OFFICE, grace_s=1200), campaign("beta"))
    one, two = engine(*camps), engine(*camps)
    for r in _population():
        one.add(r, T0)
    assert two.bulk_load(*ready_groups(_population()), T0) == 40
    assert two.next_rid == one.next_rid == 41
    for e in (one, two):
        e.login("ann", ["alpha", "beta"], ["t1"])
        e.login("bob", ["alpha"], ["t2"])
    seq: list[list[tuple[str, str, str]]] = [[], []]
    now = T0
    for step in range(60):
        now += 731
        agent = ("ann", "bob")[step % 2]
        for k, e in enumerate((one, two)):
            got = leases(e, agent, now, count=1 + step % 3)
            seq[k].extend((x.record.rid, x.reason, x.phone) for x in got)
            for x in got:
                if step % 4 == 0:
                    e.release(x, now)
                else:
                    _dispose(e, x, "NA", now)
        assert seq[0] == seq[1]
    assert len(seq[0]) > 30


# A ready record whose numbers are all dead is parked in ``no_number`` by a rebuild as by
# ``add`` (not left in ``dormant`` / ``due``, counted there and waking long polls).
def test_bulk_load_slots_match_add() -> None:
    camps = (campaign("alpha", window=OFFICE, grace_s=1200), campaign("beta"))
    one, two = engine(*camps), engine(*camps)
    for r in _population():
        one.add(r, T0)
    two.bulk_load(*ready_groups(_population()), T0)
    assert [one.slot_of(i) for i in range(1, 41)] == [two.slot_of(i) for i in range(1, 41)]
    assert {n: q.counts for n, q in one.queues.items()} == \
        {n: q.counts for n, q in two.queues.items()}


def test_window_cache_survives_a_clock_stepped_back() -> None:
    from nextcall.core.model import Interval
    nine_to_five = tuple((Interval(9 * 60, 17 * 60),) for _ in range(7))
    e = engine(campaign(window=nine_to_five))
    day = 1_800_000_000 - 1_800_000_000 % 86400  # a UTC midnight
    c = e.campaigns["alpha"]
    assert e.window_open(c, "UTC", day + 10 * 3600)[0] is True
    # the clock steps back to 08:00: the cached "open until 17:00" must not be reused
    assert e.window_open(c, "UTC", day + 8 * 3600)[0] is False

"""Attempt budgets (``core.budgets`` and the engine's budget heap) against brute force:
counting hand-outs in windows, one by one, with local days taken from ``datetime``."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nextcall.core.budgets import held_until
from nextcall.core.engine import Engine
from nextcall.core.model import Budgets, Campaign, Interval, ResultCode
from nextcall.core.records import CALLBACK, PHONE_ACTIVE, CallbackIntent, Record

DAY = 86_400.0
ZONES = ("UTC", "America/New_York", "Europe/Amsterdam")
# 2027-03-13 12:00 UTC: the day before New York's spring change, two weeks before
# Amsterdam's
T0 = datetime(2027, 3, 13, 12, tzinfo=ZoneInfo("UTC")).timestamp()
ALWAYS = tuple((Interval(0, 24 * 60),) for _ in range(7))
CODES = {"NA": ResultCode("NA", "no answer", "retry"),
         "CB": ResultCode("CB", "call back", "callback")}


def allowed(b: Budgets, rec: list[float], num: list[float], tz: str, at: float) -> bool:
    """Whether a hand-out at ``at`` keeps every budget, counted naively."""
    z = ZoneInfo(tz)
    day = datetime.fromtimestamp(at, z).date()

    def same_day(ts: list[float]) -> int:
        return sum(1 for t in ts if datetime.fromtimestamp(t, z).date() == day)

    def within(ts: list[float], w: float) -> int:
        return sum(1 for t in ts if at - w < t <= at)

    checks = (
        (b.record_per_day, same_day(rec)), (b.record_per_24h, within(rec, DAY)),
        (b.record_per_days, within(rec, b.record_days * DAY)),
        (b.number_per_day, same_day(num)), (b.number_per_24h, within(num, DAY)))
    if any(cap is not None and n >= cap for cap, n in checks):
        return False
    return not (b.number_gap_s and num and max(num) + b.number_gap_s > at)


def first_allowed(b: Budgets, rec: list[float], num: list[float], tz: str, now: float
                  ) -> float:
    """The earliest instant >= now a hand-out is allowed: budgets change their answer
    only where an attempt leaves a window, a gap ends or a local day begins."""
    z = ZoneInfo(tz)
    cands = {now}
    for t in rec + num:
        cands |= {t + DAY, t + b.record_days * DAY, t + b.number_gap_s}
    d = datetime.fromtimestamp(now, z).date()
    for k in range(1, 12):
        day = d.fromordinal(d.toordinal() + k)
        cands.add(datetime(day.year, day.month, day.day, tzinfo=z).timestamp())
    return min(c for c in cands if c >= now and allowed(b, rec, num, tz, c))


caps = st.one_of(st.none(), st.integers(1, 4))
budgets = st.builds(Budgets, record_per_day=caps, record_per_24h=caps,
                    record_days=st.integers(1, 7), record_per_days=caps,
                    number_per_day=caps, number_per_24h=caps,
                    number_gap_s=st.sampled_from([0, 0, 600, 3600, 5 * 3600]))


@settings(max_examples=150, deadline=None)
@given(b=budgets, tz=st.sampled_from(ZONES),
       gaps=st.lists(st.floats(0, 2 * DAY), max_size=12),
       mine=st.lists(st.booleans(), min_size=12, max_size=12),
       wait=st.floats(0, 3 * DAY))
def test_held_until_is_the_first_allowed_instant(b: Budgets, tz: str, gaps: list[float],
                                                 mine: list[bool], wait: float) -> None:
    t, num, rec = T0, [], []
    for g, is_rec in zip(gaps, mine, strict=False):
        t += g
        num.append(t)
        if is_rec:
            rec.append(t)
    now = t + wait
    got = held_until(b, rec, num, ZoneInfo(tz), now)
    expect = first_allowed(b, rec, num, tz, now)
    if got is None:
        assert expect == now and allowed(b, rec, num, tz, now)
    else:
        assert not allowed(b, rec, num, tz, now)
        assert abs(got[0] - expect) < 1e-6, (got, expect)


# ---------------------------------------------------------------------------- the engine
def _campaign(b: Budgets) -> Campaign:
    return Campaign(name="c", codes=CODES, window=ALWAYS, legal_window=Interval(0, 24 * 60),
                    budgets=b, lease_s=7200)


def _record(rid: int, number: str, tz: str, state: str = "ready",
            ignore: bool = False) -> Record:
    cb = CallbackIntent(at=T0 - 60, timezone=tz, local="", scope="anyone", owner=None,
                        team=None, contact_priority=1, code="CB", ignore_budgets=ignore) \
        if state == CALLBACK else None
    return Record(rid, f"r{rid}", "c", "l", [[number, PHONE_ACTIVE]], tz, 1, "{}",
                  state=state, due_at=T0 - 60, callback=cb)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(b=budgets, tz=st.sampled_from(ZONES),
       numbers=st.lists(st.integers(0, 2), min_size=1, max_size=4),
       steps=st.lists(st.tuples(st.floats(0, 10 * 3600), st.integers(0, 3)), min_size=1,
                      max_size=20))
def test_engine_hands_out_within_budgets(b: Budgets, tz: str, numbers: list[int],
                                         steps: list[tuple[float, int]]) -> None:
    """Random hand-outs and clock advances: every hand-out keeps the budgets, an empty
    answer means every record is held back, and ``next_wake`` is the first instant one
    is allowed again (as brute force counts the hand-outs)."""
    e = Engine({"c": _campaign(b)})
    nums = {rid: f"+3120000000{n}" for rid, n in enumerate(numbers, 1)}
    for rid, n in nums.items():
        e.add(_record(rid, n, tz), T0)
    handed: list[tuple[int, str, float]] = []
    now = T0
    for advance, count in steps:
        now += advance
        got = e.next("ann", ("c",), (), count, 1, now)
        for lz in got:
            rid = lz.record.rid
            rec_t = [t for r, _, t in handed if r == rid]
            num_t = [t for _, n, t in handed if n == lz.phone]
            assert allowed(b, rec_t, num_t, tz, now), (rid, lz.phone, now)
            handed.append((rid, lz.phone, now))
        for lz in got:
            e.release(lz, now)
        e.check_invariants()
        if not got and count:
            firsts = []
            for rid, n in nums.items():
                rec_t = [t for r, _, t in handed if r == rid]
                num_t = [t for _, m, t in handed if m == n]
                assert not allowed(b, rec_t, num_t, tz, now), (rid, now)
                firsts.append(first_allowed(b, rec_t, num_t, tz, now))
            assert abs(e.next_wake(("c",), now) - min(firsts)) < 1e-5
            assert e.queues["c"].counts["budget"] == len(nums)


def test_a_callback_waits_for_the_budget_unless_its_code_ignores_budgets() -> None:
    b = Budgets(number_gap_s=3600)
    e = Engine({"c": _campaign(b)})
    e.add(_record(1, "+31200000001", "UTC"), T0)
    e.add(_record(2, "+31200000001", "UTC", CALLBACK), T0)
    e.add(_record(3, "+31200000001", "UTC", CALLBACK, ignore=True), T0)
    # the callbacks come first (the same priority: import order)
    assert e.next("ann", ("c",), (), 1, 1, T0)[0].record.rid == 2
    # a second later the number is within its gap: only the callback whose code
    # ignores budgets is handed out; that call counts too
    got = e.next("ann", ("c",), (), 3, 1, T0 + 1)
    assert [lz.record.rid for lz in got] == [3]
    assert e.held_by_budget(1) == (T0 + 1 + 3600, "number_gap")
    assert e.budget_hold(1, T0 + 2) == (T0 + 1 + 3600, "number_gap")
    assert e.next_wake(("c",), T0 + 2) == T0 + 1 + 3600
    assert e.queues["c"].counts["budget"] == 1
    assert e.next("ann", ("c",), (), 1, 1, T0 + 3600) == []
    assert [lz.record.rid for lz in e.next("ann", ("c",), (), 1, 1, T0 + 3601)] == [1]
    e.check_invariants()


def test_budgets_off_count_nothing() -> None:
    e = Engine({"c": Campaign(name="c", codes=CODES, window=ALWAYS,
                              legal_window=Interval(0, 24 * 60))})
    e.add(_record(1, "+31200000001", "UTC"), T0)
    lz = e.next("ann", ("c",), (), 1, 1, T0)[0]
    e.release(lz, T0)
    assert e.next("ann", ("c",), (), 1, 1, T0)[0].record.rid == 1
    assert e.budget_horizon_s == 0 and not e._att_rec and not e._att_num


def test_attempts_rebuilt_from_the_lease_history_hold_the_record() -> None:
    e = Engine({"c": _campaign(Budgets(record_per_day=2))})
    e.add(_record(1, "+31200000001", "America/New_York"), T0)
    assert e.load_attempts([(1, "+31200000001", T0 - 3600), (1, "+31200000001", T0 - 60),
                            (99, "+31200000009", T0 - 60)]) == 2
    assert e.next("ann", ("c",), (), 1, 1, T0) == []
    # T0 is 07:00 in New York on 13 March: the next local day starts at 05:00 UTC
    midnight = datetime(2027, 3, 14, tzinfo=ZoneInfo("America/New_York")).timestamp()
    assert e.next_wake(("c",), T0) == midnight
    assert e.next("ann", ("c",), (), 1, 1, midnight - 1) == []
    assert [lz.record.rid for lz in e.next("ann", ("c",), (), 1, 1, midnight)] == [1]


def test_a_reload_that_changes_the_budgets_puts_held_records_back() -> None:
    e = Engine({"c": _campaign(Budgets(number_gap_s=3600))})
    e.add(_record(1, "+31200000001", "UTC"), T0)
    e.release(e.next("ann", ("c",), (), 1, 1, T0)[0], T0)
    assert e.next("ann", ("c",), (), 1, 1, T0 + 1) == []
    assert e.queues["c"].counts["budget"] == 1
    e.apply_campaigns({"c": _campaign(Budgets(number_gap_s=60))}, T0 + 61)
    assert e.queues["c"].counts["budget"] == 0 and e.held_by_budget(1) is None
    e.check_invariants()
    assert [lz.record.rid for lz in e.next("ann", ("c",), (), 1, 1, T0 + 61)] == [1]

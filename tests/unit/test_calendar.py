"""Calling windows in the callee's local time: weekday windows, the legal window, holidays,
``override_window``, DST on real dates, and ``resolve_local``.

``window_state`` promises two things, checked here by brute force as well as by tables:
the answer holds from ``now`` up to (not including) ``until``, and ``until > now``. Every
window boundary and every UTC offset in the zones used here falls on a whole UTC minute,
so probing each whole minute in ``[now, until)`` against a reference that reads the wall
clock directly is an exhaustive check that ``until`` is never later than the real change.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nextcall.core import calendar
from nextcall.core.errors import BadRequest, InvalidTime
from nextcall.core.model import WEEKDAYS, Campaign, Interval

INF = float("inf")
ALL_DAY = Interval(0, 24 * 60)


# ------------------------------------------------------------------------- helpers
def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: float = 0.0,
       tz: str = "UTC", fold: int = 0) -> float:
    """The instant of a wall-clock time in ``tz`` (``fold`` picks the occurrence)."""
    whole = int(s)
    us = round((s - whole) * 1e6)
    return datetime(y, mo, d, h, mi, whole, us, tzinfo=calendar.zone(tz),
                    fold=fold).timestamp()


def campaign(window: dict[str, str] | str = "", *, legal: Interval | None = None,
             holidays: tuple[date, ...] = ()) -> Campaign:
    """A campaign whose weekday windows are given as ``{"mon": "09:00-12:00,13:00-17:00"}``
    (a plain string applies to every day)."""
    if isinstance(window, str):
        window = dict.fromkeys(WEEKDAYS, window)
    days = tuple(
        tuple(Interval.parse(p) for p in window.get(day, "").split(",") if p)
        for day in WEEKDAYS
    )
    kw: dict[str, object] = {"holidays": frozenset(holidays)}
    if legal is not None:
        kw["legal_window"] = legal
    return Campaign("c", {}, days, **kw)  # type: ignore[arg-type]


def ref_open(c: Campaign, tz_key: str, t: float, override: bool = False) -> bool:
    """Reference: read the callee's wall clock at ``t`` and look the time up."""
    local = datetime.fromtimestamp(t, calendar.zone(tz_key))
    if local.date() in c.holidays:
        return False
    sod = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    ivs = (ALL_DAY,) if override else c.window[local.weekday()]
    lg = c.legal_window
    return any(max(iv.start_min, lg.start_min) * 60 <= sod < min(iv.end_min, lg.end_min) * 60
               for iv in ivs)


def brute_next_change(c: Campaign, tz_key: str, now: float, override: bool = False,
                      horizon_s: float = 10 * 86400) -> float:
    """First whole-minute instant after ``now`` at which ``ref_open`` flips (or inf)."""
    s0 = ref_open(c, tz_key, now, override)
    t = math.floor(now / 60) * 60 + 60
    while t <= now + horizon_s:
        if ref_open(c, tz_key, t, override) != s0:
            return float(t)
        t += 60
    return INF


def sound_state(c: Campaign, tz_key: str, now: float, override: bool = False,
                horizon_s: float = 10 * 86400) -> tuple[bool, float]:
    """``window_state``, after checking its answer against the wall clock at ``now`` and
    at every whole minute up to ``until`` (or the horizon)."""
    is_open, until = calendar.window_state(c, calendar.zone(tz_key), now, override)
    assert until > now
    assert is_open == ref_open(c, tz_key, now, override)
    change = brute_next_change(c, tz_key, now, override, horizon_s)
    assert until <= change, (
        f"until {datetime.fromtimestamp(until, UTC)} is later than the real change "
        f"{datetime.fromtimestamp(change, UTC)}")
    return is_open, until


def chase(c: Campaign, tz_key: str, now: float, override: bool = False,
          max_hops: int = 100_000) -> float:
    """Follow ``until`` from ``now`` to the instant the answer really flips."""
    tz = calendar.zone(tz_key)
    s0, t = calendar.window_state(c, tz, now, override)
    hops = 0
    while True:
        assert t > now
        s, u = calendar.window_state(c, tz, t, override)
        if s != s0 or t == INF:
            return t
        assert u > t
        t = u
        hops += 1
        assert hops < max_hops


# A Monday-to-Saturday office: lunch break on weekdays, short Saturday, closed Sunday.
OFFICE = campaign({**dict.fromkeys(("mon", "tue", "wed", "thu", "fri"),
                                   "09:00-12:00,13:00-17:00"),
                   "sat": "10:00-14:00"})
# 2026-03-02 is a Monday.
MON, TUE, WED, FRI, SAT, SUN = 2, 3, 4, 6, 7, 8


# ------------------------------------------------------------------------- weekday windows
@pytest.mark.parametrize(("now", "is_open", "until"), [
    (at(2026, 3, MON, 8, 59), False, at(2026, 3, MON, 9)),
    (at(2026, 3, MON, 9), True, at(2026, 3, MON, 12)),
    (at(2026, 3, MON, 11, 59, 59.5), True, at(2026, 3, MON, 12)),
    (at(2026, 3, MON, 12), False, at(2026, 3, MON, 13)),
    (at(2026, 3, MON, 12, 30), False, at(2026, 3, MON, 13)),
    (at(2026, 3, MON, 13), True, at(2026, 3, MON, 17)),
    (at(2026, 3, MON, 16, 59), True, at(2026, 3, MON, 17)),
    (at(2026, 3, MON, 17), False, at(2026, 3, TUE, 9)),
    (at(2026, 3, MON, 0), False, at(2026, 3, MON, 9)),
    (at(2026, 3, FRI, 17, 30), False, at(2026, 3, SAT, 10)),
    (at(2026, 3, SAT, 10), True, at(2026, 3, SAT, 14)),
    (at(2026, 3, SAT, 14), False, at(2026, 3, MON + 7, 9)),
    (at(2026, 3, SUN, 12), False, at(2026, 3, MON + 7, 9)),
])
def test_weekday_window(now: float, is_open: bool, until: float) -> None:
    assert calendar.window_state(OFFICE, calendar.zone("UTC"), now) == (is_open, until)
    sound_state(OFFICE, "UTC", now)


@pytest.mark.parametrize(("window", "legal", "now", "is_open", "until"), [
    # campaign window wider than the legal window: the legal window wins on both ends
    ("06:00-23:00", None, at(2026, 3, MON, 7), False, at(2026, 3, MON, 8)),
    ("06:00-23:00", None, at(2026, 3, MON, 8), True, at(2026, 3, MON, 21)),
    ("06:00-23:00", None, at(2026, 3, MON, 21), False, at(2026, 3, TUE, 8)),
    # partly outside: only the overlap is open
    ("07:00-09:00,20:00-22:00", None, at(2026, 3, MON, 7, 30), False, at(2026, 3, MON, 8)),
    ("07:00-09:00,20:00-22:00", None, at(2026, 3, MON, 8, 30), True, at(2026, 3, MON, 9)),
    ("07:00-09:00,20:00-22:00", None, at(2026, 3, MON, 9), False, at(2026, 3, MON, 20)),
    ("07:00-09:00,20:00-22:00", None, at(2026, 3, MON, 20, 30), True, at(2026, 3, MON, 21)),
    ("07:00-09:00,20:00-22:00", None, at(2026, 3, MON, 21), False, at(2026, 3, TUE, 8)),
    # a stricter configured legal window
    ("09:00-17:00", Interval(10 * 60, 16 * 60), at(2026, 3, MON, 9, 30), False,
     at(2026, 3, MON, 10)),
    ("09:00-17:00", Interval(10 * 60, 16 * 60), at(2026, 3, MON, 10), True,
     at(2026, 3, MON, 16)),
    # entirely outside the legal window: never open
    ("21:00-23:59", None, at(2026, 3, MON, 21, 30), False, INF),
    ("05:00-08:00", None, at(2026, 3, MON, 6), False, INF),
])
def test_legal_window_intersection(window: str, legal: Interval | None, now: float,
                                   is_open: bool, until: float) -> None:
    c = campaign(window, legal=legal)
    assert calendar.window_state(c, calendar.zone("UTC"), now) == (is_open, until)
    if until != INF:
        sound_state(c, "UTC", now)


HOLIDAY_OFFICE = campaign({**dict.fromkeys(("mon", "tue", "wed", "thu", "fri"),
                                           "09:00-12:00,13:00-17:00")},
                          holidays=(date(2026, 3, TUE), date(2026, 3, FRI)))


@pytest.mark.parametrize(("now", "override", "is_open", "until"), [
    (at(2026, 3, MON, 17), False, False, at(2026, 3, WED, 9)),
    (at(2026, 3, TUE, 10), False, False, at(2026, 3, WED, 9)),
    # override lifts the campaign window but never a holiday
    (at(2026, 3, TUE, 10), True, False, at(2026, 3, WED, 8)),
    (at(2026, 3, WED, 12, 30), False, False, at(2026, 3, WED, 13)),
    # Friday is a holiday and the weekend has no window: next Monday
    (at(2026, 3, 5, 17), False, False, at(2026, 3, MON + 7, 9)),
    # with override the weekend opens inside the legal window, Friday stays shut
    (at(2026, 3, 5, 21), True, False, at(2026, 3, SAT, 8)),
])
def test_holidays(now: float, override: bool, is_open: bool, until: float) -> None:
    state = calendar.window_state(HOLIDAY_OFFICE, calendar.zone("UTC"), now, override)
    assert state == (is_open, until)
    sound_state(HOLIDAY_OFFICE, "UTC", now, override)


def test_holiday_is_a_local_date() -> None:
    # 2026-03-02 20:00 UTC is already Tuesday 01:30 in Kolkata.
    c = campaign("00:00-24:00", legal=ALL_DAY, holidays=(date(2026, 3, TUE),))
    now = at(2026, 3, MON, 20)
    assert calendar.window_state(c, calendar.zone("UTC"), now) == (True, at(2026, 3, TUE))
    assert calendar.window_state(c, calendar.zone("Asia/Kolkata"), now) == (
        False, at(2026, 3, WED, tz="Asia/Kolkata"))


@pytest.mark.parametrize(("now", "is_open", "until"), [
    # Sunday: no campaign window, but override opens the whole legal window
    (at(2026, 3, SUN, 7), False, at(2026, 3, SUN, 8)),
    (at(2026, 3, SUN, 12), True, at(2026, 3, SUN, 21)),
    (at(2026, 3, SUN, 21, 30), False, at(2026, 3, MON + 7, 8)),
    # the lunch break and the evening are open too, still never before 08:00 / after 21:00
    (at(2026, 3, MON, 12, 30), True, at(2026, 3, MON, 21)),
    (at(2026, 3, MON, 7, 59), False, at(2026, 3, MON, 8)),
    (at(2026, 3, MON, 21), False, at(2026, 3, TUE, 8)),
])
def test_override_window_lifts_campaign_window_not_legal(now: float, is_open: bool,
                                                         until: float) -> None:
    tz = calendar.zone("UTC")
    assert calendar.window_state(OFFICE, tz, now, True) == (is_open, until)
    sound_state(OFFICE, "UTC", now, True)
    assert calendar.legal_at(OFFICE, tz, now) is is_open
    assert calendar.is_callable_at(OFFICE, tz, now, True) is is_open


def test_override_never_lifts_a_stricter_legal_window() -> None:
    c = campaign("06:00-23:00", legal=Interval(10 * 60, 16 * 60))
    tz = calendar.zone("UTC")
    assert calendar.window_state(c, tz, at(2026, 3, MON, 9), True) == (
        False, at(2026, 3, MON, 10))
    assert calendar.window_state(c, tz, at(2026, 3, MON, 15), True) == (
        True, at(2026, 3, MON, 16))


def test_never_open_is_inf_and_until_is_after_now() -> None:
    closed = campaign("")
    assert calendar.window_state(closed, calendar.zone("UTC"), at(2026, 3, MON)) == (False, INF)
    assert calendar.window_state(closed, calendar.zone("UTC"), at(2026, 3, MON), True)[1] \
        == at(2026, 3, MON, 8)


# ------------------------------------------------------------------------- DST
NINE_TO_FIVE = campaign("09:00-17:00")


@pytest.mark.parametrize(("tz", "now", "first_change"), [
    # New York, spring forward 2026-03-08 (EST -5 -> EDT -4): 09:00 local is an hour earlier
    ("America/New_York", at(2026, 3, 7, 22), at(2026, 3, 8, 13)),
    ("America/New_York", at(2026, 3, 8, 13), at(2026, 3, 8, 21)),
    ("America/New_York", at(2026, 3, 6, 14, 30), at(2026, 3, 6, 22)),
    # New York, fall back 2026-11-01 (EDT -> EST)
    ("America/New_York", at(2026, 10, 31, 21), at(2026, 11, 1, 14)),
    ("America/New_York", at(2026, 11, 1, 14), at(2026, 11, 1, 22)),
    # Amsterdam 2026-03-29 (CET +1 -> CEST +2) and 2026-10-25 (back)
    ("Europe/Amsterdam", at(2026, 3, 28, 17), at(2026, 3, 29, 7)),
    ("Europe/Amsterdam", at(2026, 3, 29, 7), at(2026, 3, 29, 15)),
    ("Europe/Amsterdam", at(2026, 10, 24, 16), at(2026, 10, 25, 8)),
    ("Europe/Amsterdam", at(2026, 10, 25, 8), at(2026, 10, 25, 16)),
    # Dublin: IST is standard time, winter GMT is "negative DST"; the wall clock is what counts
    ("Europe/Dublin", at(2026, 3, 28, 18), at(2026, 3, 29, 8)),
    ("Europe/Dublin", at(2026, 10, 24, 17), at(2026, 10, 25, 9)),
    ("Europe/Dublin", at(2026, 10, 25, 9), at(2026, 10, 25, 17)),
    # Lord Howe: a 30-minute shift (+11 -> +10:30 on 2026-04-05, back on 2026-10-04)
    ("Australia/Lord_Howe", at(2026, 4, 4, 6), at(2026, 4, 4, 22, 30)),
    ("Australia/Lord_Howe", at(2026, 4, 4, 22, 30), at(2026, 4, 5, 6, 30)),
    ("Australia/Lord_Howe", at(2026, 10, 3, 6, 30), at(2026, 10, 3, 22)),
    ("Australia/Lord_Howe", at(2026, 10, 3, 22), at(2026, 10, 4, 6)),
    # Kolkata: +05:30 all year
    ("Asia/Kolkata", at(2026, 3, 8, 0), at(2026, 3, 8, 3, 30)),
    ("Asia/Kolkata", at(2026, 3, 8, 3, 30), at(2026, 3, 8, 11, 30)),
    ("Asia/Kolkata", at(2026, 10, 25, 12), at(2026, 10, 26, 3, 30)),
])
def test_window_follows_wall_clock_across_dst(tz: str, now: float, first_change: float) -> None:
    assert chase(NINE_TO_FIVE, tz, now) == first_change
    assert brute_next_change(NINE_TO_FIVE, tz, now) == first_change
    sound_state(NINE_TO_FIVE, tz, now)
    # just before the change the answer is the old one, at the change the new one
    before = calendar.window_state(NINE_TO_FIVE, calendar.zone(tz), first_change - 1)[0]
    after = calendar.window_state(NINE_TO_FIVE, calendar.zone(tz), first_change)[0]
    assert before != after


@pytest.mark.parametrize(("tz", "now", "transition"), [
    ("America/New_York", at(2026, 3, 7, 22), at(2026, 3, 8, 7)),
    ("America/New_York", at(2026, 10, 31, 21), at(2026, 11, 1, 6)),
    ("Europe/Amsterdam", at(2026, 3, 28, 17), at(2026, 3, 29, 1)),
    ("Europe/Dublin", at(2026, 10, 24, 17), at(2026, 10, 25, 1)),
    ("Australia/Lord_Howe", at(2026, 4, 4, 6), at(2026, 4, 4, 15)),
    ("Australia/Lord_Howe", at(2026, 10, 3, 6, 30), at(2026, 10, 3, 15, 30)),
])
def test_until_stops_at_an_offset_change(tz: str, now: float, transition: float) -> None:
    # Documented: when the offset changes before the boundary the answer is only
    # promised up to the transition, then recomputed from the real wall clock.
    assert calendar.window_state(NINE_TO_FIVE, calendar.zone(tz), now) == (False, transition)


def test_kolkata_until_is_exact_half_hour_instant() -> None:
    tz = calendar.zone("Asia/Kolkata")
    assert calendar.window_state(NINE_TO_FIVE, tz, at(2026, 3, 8, 0)) == (
        False, at(2026, 3, 8, 3, 30))
    assert calendar.window_state(NINE_TO_FIVE, tz, at(2026, 3, 8, 3, 30)) == (
        True, at(2026, 3, 8, 11, 30))


# Windows that overlap the transition hour itself (legal window 00:00-24:00 to allow it).
@pytest.mark.parametrize(("tz", "window", "now", "first_change"), [
    # spring forward: 01:00-03:00 local ends when the clock jumps 02:00 -> 03:00
    ("America/New_York", "01:00-03:00", at(2026, 3, 8, 6, 30), at(2026, 3, 8, 7)),
    # a window opening inside the gap opens when the wall clock passes it (03:00 EDT)
    ("America/New_York", "02:30-04:00", at(2026, 3, 8, 5), at(2026, 3, 8, 7)),
    ("America/New_York", "02:30-04:00", at(2026, 3, 8, 7), at(2026, 3, 8, 8)),
    # fall back: 01:00-01:30 happens twice; open, closed, open again, closed
    ("America/New_York", "01:00-01:30", at(2026, 11, 1, 4, 30), at(2026, 11, 1, 5)),
    ("America/New_York", "01:00-01:30", at(2026, 11, 1, 5, 10), at(2026, 11, 1, 5, 30)),
    ("America/New_York", "01:00-01:30", at(2026, 11, 1, 5, 30), at(2026, 11, 1, 6)),
    ("America/New_York", "01:00-01:30", at(2026, 11, 1, 6), at(2026, 11, 1, 6, 30)),
    ("Europe/Amsterdam", "01:30-02:30", at(2026, 3, 29, 0, 45), at(2026, 3, 29, 1)),
    ("Europe/Amsterdam", "02:00-03:00", at(2026, 3, 29, 0, 30), at(2026, 3, 30, 0)),
    ("Europe/Amsterdam", "02:15-02:45", at(2026, 10, 25, 0, 50), at(2026, 10, 25, 1, 15)),
    ("Europe/Dublin", "01:00-02:00", at(2026, 10, 25, 0, 30), at(2026, 10, 25, 2)),
    # Lord Howe end of DST: 02:00 LHDT -> 01:30 LHST, so 01:00-01:45 comes twice
    ("Australia/Lord_Howe", "01:00-01:45", at(2026, 4, 4, 14, 50), at(2026, 4, 4, 15)),
    ("Australia/Lord_Howe", "01:00-01:45", at(2026, 4, 4, 15), at(2026, 4, 4, 15, 15)),
    # Lord Howe start of DST: 02:00-02:15 never shows on the wall clock that day
    ("Australia/Lord_Howe", "02:00-02:15", at(2026, 10, 3, 14, 30), at(2026, 10, 4, 15)),
])
def test_windows_inside_transition_hours(tz: str, window: str, now: float,
                                         first_change: float) -> None:
    c = campaign(window, legal=ALL_DAY)
    assert brute_next_change(c, tz, now) == first_change
    assert chase(c, tz, now) == first_change
    sound_state(c, tz, now)


ZONES = ("America/New_York", "Europe/Amsterdam", "Europe/Dublin", "Australia/Lord_Howe",
         "Asia/Kolkata", "UTC")
TRANSITIONS = (at(2026, 3, 8, 7), at(2026, 11, 1, 6), at(2026, 3, 29, 1), at(2026, 10, 25, 1),
               at(2026, 4, 4, 15), at(2026, 10, 3, 15, 30))


@st.composite
def windows(draw: st.DrawFn) -> Campaign:
    """A random campaign: per weekday 0-2 sorted disjoint intervals on a 15-minute grid."""
    days = []
    for day in WEEKDAYS:
        cuts = sorted(set(draw(st.lists(st.integers(0, 96), max_size=4))))
        if len(cuts) % 2:
            cuts = cuts[:-1]
        ivs = [f"{a // 4:02d}:{a % 4 * 15:02d}-{b // 4:02d}:{b % 4 * 15:02d}"
               for a, b in zip(cuts[::2], cuts[1::2], strict=False)]
        days.append((day, ",".join(ivs)))
    legal = draw(st.sampled_from([None, ALL_DAY, Interval(60, 23 * 60)]))
    hol = draw(st.lists(st.dates(date(2026, 3, 1), date(2026, 11, 10)), max_size=3))
    return campaign(dict(days), legal=legal, holidays=tuple(hol))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=windows(), tz=st.sampled_from(ZONES), base=st.sampled_from(TRANSITIONS),
       offset_s=st.integers(-2 * 86400, 2 * 86400), override=st.booleans())
def test_window_state_is_sound_near_transitions(c: Campaign, tz: str, base: float,
                                                offset_s: int, override: bool) -> None:
    # Probes every whole minute for 3 days: the answer never changes before ``until``.
    now = base + offset_s + (offset_s % 7) * 0.125
    sound_state(c, tz, now, override, horizon_s=3 * 86400)


def test_until_with_two_transitions_before_the_boundary() -> None:
    """Regression: the first ``window_state`` compared only the offsets at ``now`` and at
    ``until``. When the next opening lies beyond *two* transitions (here: fall back today,
    spring forward in March, the Sundays between are holidays) the offsets are equal, and
    ``until`` skipped the moment the fold brings the wall clock back into today's window
    (01:00 EST, 06:00 UTC), five months too late.
    """
    sundays = []
    d = date(2026, 11, 8)
    while d < date(2027, 3, 21):
        sundays.append(d)
        d += timedelta(days=7)
    c = campaign({"sun": "01:00-01:30"}, legal=ALL_DAY, holidays=tuple(sundays))
    now = at(2026, 11, 1, 5, 45)  # 01:45 EDT, first pass
    assert ref_open(c, "America/New_York", at(2026, 11, 1, 6, 10))  # 01:10 EST: open
    _, until = calendar.window_state(c, calendar.zone("America/New_York"), now)
    assert until <= at(2026, 11, 1, 6)


# ------------------------------------------------------------------------- resolve_local
@pytest.mark.parametrize(("text", "tz", "expected"), [
    ("2026-06-01T09:00", "America/New_York", at(2026, 6, 1, 13)),
    ("2026-01-15T09:00", "America/New_York", at(2026, 1, 15, 14)),
    ("2026-03-08T09:00", "Asia/Kolkata", at(2026, 3, 8, 3, 30)),
    ("2026-04-05T09:00", "Australia/Lord_Howe", at(2026, 4, 4, 22, 30)),
    ("2026-04-04T09:00", "Australia/Lord_Howe", at(2026, 4, 3, 22)),
    ("2026-07-01T09:00", "Europe/Dublin", at(2026, 7, 1, 8)),
    ("2026-12-01T09:00", "Europe/Dublin", at(2026, 12, 1, 9)),
    ("2026-03-09", "America/New_York", at(2026, 3, 9, 4)),  # a bare date is midnight
])
def test_resolve_local_wall_time(text: str, tz: str, expected: float) -> None:
    assert calendar.resolve_local(text, tz) == expected


@pytest.mark.parametrize(("text", "tz", "expected"), [
    # the first occurrence of a time that happens twice
    ("2026-11-01T01:30", "America/New_York", at(2026, 11, 1, 5, 30)),
    ("2026-10-25T02:30", "Europe/Amsterdam", at(2026, 10, 25, 0, 30)),
    ("2026-10-25T01:30", "Europe/Dublin", at(2026, 10, 25, 0, 30)),
    ("2026-04-05T01:45", "Australia/Lord_Howe", at(2026, 4, 4, 14, 45)),
])
def test_resolve_local_fold_is_first_occurrence(text: str, tz: str, expected: float) -> None:
    assert calendar.resolve_local(text, tz) == expected
    wall = datetime.fromisoformat(text).replace(tzinfo=calendar.zone(tz))
    assert expected == wall.replace(fold=0).timestamp() < wall.replace(fold=1).timestamp()


@pytest.mark.parametrize(("text", "tz"), [
    ("2026-03-08T02:30", "America/New_York"),
    ("2026-03-08T02:00", "America/New_York"),
    ("2026-03-08T02:59:59", "America/New_York"),
    ("2026-03-29T02:15", "Europe/Amsterdam"),
    ("2026-03-29T01:30", "Europe/Dublin"),
    ("2026-10-04T02:10", "Australia/Lord_Howe"),
])
def test_resolve_local_gap_is_refused(text: str, tz: str) -> None:
    with pytest.raises(InvalidTime) as exc:
        calendar.resolve_local(text, tz, field="callback.at")
    assert exc.value.code == "invalid_time"
    assert exc.value.field == "callback.at"


@pytest.mark.parametrize(("text", "tz"), [
    ("2026-03-08T01:59", "America/New_York"),
    ("2026-03-08T03:00", "America/New_York"),
    ("2026-10-04T02:30", "Australia/Lord_Howe"),
])
def test_resolve_local_gap_edges_exist(text: str, tz: str) -> None:
    got = calendar.resolve_local(text, tz)
    assert datetime.fromtimestamp(got, calendar.zone(tz)).replace(tzinfo=None) \
        == datetime.fromisoformat(text)


@pytest.mark.parametrize(("text", "tz", "expected"), [
    # an explicit offset is absolute: the zone is irrelevant, folds and gaps too
    ("2026-11-01T01:30-05:00", "America/New_York", at(2026, 11, 1, 6, 30)),
    ("2026-11-01T01:30-04:00", "America/New_York", at(2026, 11, 1, 5, 30)),
    ("2026-03-08T02:30-05:00", "America/New_York", at(2026, 3, 8, 7, 30)),
    ("2026-06-01T12:00+00:00", "Asia/Kolkata", at(2026, 6, 1, 12)),
    ("2026-06-01T12:00Z", "Australia/Lord_Howe", at(2026, 6, 1, 12)),
    ("2026-06-01T12:00+05:30", "UTC", at(2026, 6, 1, 6, 30)),
])
def test_resolve_local_explicit_offset_is_absolute(text: str, tz: str, expected: float) -> None:
    assert calendar.resolve_local(text, tz) == expected


@pytest.mark.parametrize("text", ["tomorrow", "", "2026-13-01T10:00", "2026-02-30T10:00",
                                  "2026-06-01 25:00", "10:00", None, 12345])
def test_resolve_local_bad_text(text: object) -> None:
    with pytest.raises(BadRequest) as exc:
        calendar.resolve_local(text, "UTC", field="callback.at")  # type: ignore[arg-type]
    assert exc.value.code == "bad_request"
    assert exc.value.field == "callback.at"
    assert exc.value.to_wire()["field"] == "callback.at"


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "../../etc/passwd", "Europe/",
                                "europe amsterdam"])
def test_resolve_local_bad_zone(tz: str) -> None:
    with pytest.raises(BadRequest) as exc:
        calendar.resolve_local("2026-06-01T10:00", tz)
    assert exc.value.code == "bad_request"
    assert exc.value.field == "timezone"
    # the zone's field sits beside the time's field in the request
    with pytest.raises(BadRequest) as exc:
        calendar.resolve_local("2026-06-01T10:00", tz, field="callback.at")
    assert exc.value.field == "callback.timezone"
    with pytest.raises(BadRequest) as exc:
        calendar.zone(tz, field="records[3].timezone")
    assert exc.value.field == "records[3].timezone"


def test_zone_is_cached_and_valid() -> None:
    assert calendar.zone("Europe/Amsterdam") is calendar.zone("Europe/Amsterdam")
    assert calendar.zone("Asia/Kolkata").key == "Asia/Kolkata"


@pytest.mark.parametrize(("instant", "tz", "text"), [
    (at(2026, 11, 1, 5, 30), "America/New_York", "2026-11-01T01:30:00-04:00"),
    (at(2026, 11, 1, 6, 30), "America/New_York", "2026-11-01T01:30:00-05:00"),
    (at(2026, 3, 8, 3, 30), "Asia/Kolkata", "2026-03-08T09:00:00+05:30"),
])
def test_local_iso_shows_offset(instant: float, tz: str, text: str) -> None:
    assert calendar.local_iso(instant, tz) == text
    assert calendar.resolve_local(text, "UTC") == instant


def test_utc_iso() -> None:
    assert calendar.utc_iso(at(2026, 3, 8, 7, 0, 30.7)) == "2026-03-08T07:00:30Z"

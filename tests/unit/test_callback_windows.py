"""Callback windows: due at the start, rising in priority towards the end (in real time,
across DST gaps and folds), escalating and overdue once the end has passed unserved."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from nextcall.core.engine import Engine, callback_standing
from nextcall.core.errors import BadRequest
from nextcall.core.model import Campaign, Interval, ResultCode
from nextcall.core.records import CALLBACK, PHONE_ACTIVE, CallbackIntent, Record
from nextcall.core.results import CallbackRequest, Disposition, decide
from nextcall.core.windows import TOP_PRIORITY, window_priority

ALWAYS = tuple((Interval(0, 24 * 60),) for _ in range(7))
CODES = {"CB": ResultCode("CB", "call back", "callback", contact_priority=3),
         "CBX": ResultCode("CBX", "call back", "callback", contact_priority=3,
                           ignore_budgets=True)}
CAMP = Campaign(name="c", codes=CODES, window=ALWAYS, legal_window=Interval(0, 24 * 60),
                grace_s=600)


def wall(tz: str, y: int, mo: int, d: int, h: int, mi: int = 0, fold: int = 0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(tz), fold=fold).timestamp()


def window(tz: str, start: str, until: str, now: float, code: str = "CB") -> CallbackIntent:
    rec = Record(1, "r1", "c", "l", [["+31200000001", PHONE_ACTIVE]], tz, 1, "{}",
                 due_at=now)
    out = decide(rec, CAMP, Disposition(code, "ann", 0, callback=CallbackRequest(
        at=start, until=until, scope="anyone")), now)
    assert out.callback is not None
    return out.callback


def test_priority_rises_linearly_in_steps_to_the_top_at_the_end() -> None:
    # from 3 to 9: six steps over an hour, one every ten minutes
    assert window_priority(3, 0.0, 3600.0, -1.0) == (3, 600.0)
    assert window_priority(3, 0.0, 3600.0, 0.0) == (3, 600.0)
    assert window_priority(3, 0.0, 3600.0, 599.0) == (3, 600.0)
    assert window_priority(3, 0.0, 3600.0, 600.0) == (4, 1200.0)
    assert window_priority(3, 0.0, 3600.0, 3599.0) == (8, 3600.0)
    assert window_priority(3, 0.0, 3600.0, 3600.0) == (TOP_PRIORITY, float("inf"))
    assert window_priority(9, 0.0, 3600.0, 10.0) == (9, float("inf"))


def test_amsterdam_spring_gap_window_is_two_real_hours() -> None:
    # 28 March 2027: Amsterdam's clocks jump from 02:00 to 03:00
    now = wall("UTC", 2027, 3, 27, 12)
    cb = window("Europe/Amsterdam", "2027-03-28T01:00", "2027-03-28T04:00", now)
    assert cb.at == wall("Europe/Amsterdam", 2027, 3, 28, 1)
    assert cb.until == cb.at + 2 * 3600
    assert cb.until_local == "2027-03-28T04:00:00+02:00"
    # halfway in real time (03:00 local, one hour after the start): 3 + 6 * 1/2
    assert window_priority(3, cb.at, cb.until, cb.at + 3600)[0] == 6


def test_new_york_autumn_fold_window_is_three_real_hours() -> None:
    # 7 November 2027: New York's 01:00-02:00 happens twice
    now = wall("UTC", 2027, 11, 6, 12)
    cb = window("America/New_York", "2027-11-07T00:30", "2027-11-07T02:30", now)
    assert cb.until is not None and cb.until - cb.at == 3 * 3600
    assert cb.until_local == "2027-11-07T02:30:00-05:00"
    assert window_priority(3, cb.at, cb.until, cb.at + 1.5 * 3600)[0] == 6


def test_a_window_must_end_after_it_starts_and_within_a_week() -> None:
    now = wall("UTC", 2027, 3, 27, 12)
    for until in ("2027-03-28T09:00", "2027-03-28T08:00", "2027-04-08T08:00"):
        with pytest.raises(BadRequest) as exc:
            window("UTC", "2027-03-28T09:00", until, now)
        assert exc.value.field == "callback.until"


def test_standing_is_late_only_after_the_window_ends() -> None:
    assert callback_standing(100.0, 60, 50.0, 1000.0) == ("upcoming", 0.0)
    assert callback_standing(100.0, 60, 900.0, 1000.0) == ("due", 0.0)
    assert callback_standing(100.0, 60, 1050.0, 1000.0) == ("due", 50.0)
    assert callback_standing(100.0, 60, 1100.0, 1000.0) == ("overdue", 100.0)


def _rec(rid: int, cb: CallbackIntent) -> Record:
    return Record(rid, f"r{rid}", "c", "l", [[f"+3120000000{rid}", PHONE_ACTIVE]],
                  cb.timezone, 1, "{}", state=CALLBACK, due_at=cb.at, owner=cb.owner,
                  team=cb.team, callback=cb)


def test_the_engine_raises_a_window_above_a_fixed_callback_as_its_end_nears() -> None:
    """A fixed callback of priority 5 beats a window from 3 at the window's start; after
    its second step (a third of the way) the window is at 5 and, earlier due, wins."""
    now = wall("UTC", 2027, 3, 27, 12)
    e = Engine({"c": CAMP})
    win = window("Europe/Amsterdam", "2027-03-28T01:00", "2027-03-28T04:00", now)
    fixed = CallbackIntent(at=win.at + 60, timezone="Europe/Amsterdam", local="",
                           scope="anyone", owner=None, team=None, contact_priority=5,
                           code="CB")
    e.add(_rec(1, win), now)
    e.add(_rec(2, fixed), now)
    step = 2 * 3600 / 6
    assert e.select("bob", ("c",), (), win.at + 61) == (2, "team_callback")
    assert e.select("bob", ("c",), (), win.at + 2 * step - 1) == (2, "team_callback")
    assert e.select("bob", ("c",), (), win.at + 2 * step) == (1, "team_callback")
    e.check_invariants()


def test_a_personal_window_goes_to_the_team_only_after_its_end_and_grace() -> None:
    now = wall("UTC", 2027, 11, 6, 12)
    win = window("America/New_York", "2027-11-07T00:30", "2027-11-07T02:30", now)
    cb = CallbackIntent(**{**win.to_json(), "scope": "personal_then_team",  # type: ignore[arg-type]
                           "owner": "ann", "team": "t"})
    e = Engine({"c": CAMP})
    e.add(_rec(1, cb), now)
    e.login("ann", ["c"], ["t"])
    e.login("bob", ["c"], ["t"])
    assert cb.until is not None
    assert e.select("bob", ("c",), ("t",), cb.until + 599) is None
    assert e.next_wake(("c",), cb.until + 1) == cb.until + 600
    assert e.select("bob", ("c",), ("t",), cb.until + 600) == (1, "team_callback")


def test_a_stored_intent_without_a_window_reads_as_before() -> None:
    legacy = {"at": 5.0, "timezone": "UTC", "local": "", "scope": "anyone", "owner": None,
              "team": None, "contact_priority": 2, "reason": "", "override_window": False,
              "code": "CB", "reminder_min": None}
    cb = CallbackIntent.from_json(legacy)
    assert (cb.until, cb.until_local, cb.ignore_budgets, cb.deadline) == (None, "", False, 5.0)
    assert CallbackIntent.from_json(cb.to_json()) == cb
    now = wall("UTC", 2027, 3, 27, 12)
    ignoring = window("UTC", "2027-03-28T09:00", "2027-03-28T10:00", now, code="CBX")
    assert ignoring.ignore_budgets
    assert CallbackIntent.from_json(ignoring.to_json()) == ignoring

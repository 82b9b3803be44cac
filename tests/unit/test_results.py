"""``decide``: a disposition and a record in, the record's next state out (SPEC §2).

Every refusal is checked for its wire ``code`` and ``field``; every call, refused or not,
is checked to leave the record exactly as it was (the engine applies the outcome later).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import pytest

from nextcall.core import calendar
from nextcall.core.errors import (
    BadRequest,
    CallbackRequired,
    CodeDisabled,
    InvalidTime,
    NextcallError,
    NoteRequired,
    OutsideCallingWindow,
    OutsideLegalWindow,
    RevenueRequired,
    UnknownCode,
)
from nextcall.core.model import Campaign, Interval, ResultCode
from nextcall.core.records import CALLBACK, CLOSED, PHONE_ACTIVE, READY, CallbackIntent, Record
from nextcall.core.results import (
    CALLBACK_PAST_TOLERANCE_S,
    CallbackRequest,
    Disposition,
    Outcome,
    decide,
)

AMS = "Europe/Amsterdam"


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, tz: str = "UTC") -> float:
    return datetime(y, mo, d, h, mi, tzinfo=calendar.zone(tz)).timestamp()


CODES = {rc.code: rc for rc in (
    ResultCode("NA", "no answer", "retry", dial_status="no_answer", delay_s=3600),
    ResultCode("BUSY", "busy", "retry", dial_status="busy", delays_s=(60, 600, 3600)),
    ResultCode("CB", "call back", "callback", contact=True, contact_priority=6),
    ResultCode("CBP", "personal callback", "callback", scope="personal", contact_priority=4),
    ResultCode("CBT", "team callback", "callback", scope="team", contact_priority=3),
    ResultCode("NOPE", "not interested", "close", category="negative", contact=True,
               contact_priority=4),
    ResultCode("SALE", "sale", "close", success=True, revenue="required", note="optional",
               contact_priority=4),
    ResultCode("GIFT", "maybe a gift", "close", revenue="optional", contact_priority=4),
    ResultCode("WHY", "explain", "close", note="required", contact_priority=3),
    ResultCode("OLD", "passive", "retry", enabled=False),
)}
WEEKDAY_WINDOW = tuple((Interval(9 * 60, 17 * 60),) if i < 5 else () for i in range(7))


def campaign(**kw: Any) -> Campaign:
    args: dict[str, Any] = {"name": "donors", "codes": CODES, "window": WEEKDAY_WINDOW,
                            "max_attempts": 3, "holidays": frozenset({date(2026, 3, 6)})}
    args.update(kw)
    return Campaign(**args)


CAMP = campaign()
# Wednesday 2026-03-04 10:00 in Amsterdam (09:00 UTC)
NOW = at(2026, 3, 4, 10, tz=AMS)


def record(**kw: Any) -> Record:
    args: dict[str, Any] = {
        "rid": 7, "id": "r7", "campaign": "donors", "list": "spring",
        "phones": [["+31201111111", PHONE_ACTIVE], ["+31202222222", PHONE_ACTIVE],
                   ["+31203333333", PHONE_ACTIVE]],
        "timezone": AMS, "priority": 2, "data": '{"name":"Ans"}', "team": "north",
    }
    args.update(kw)
    return Record(**args)


def state_of(rec: Record) -> dict[str, Any]:
    return {name: copy.deepcopy(getattr(rec, name)) for name in Record.__slots__}


@pytest.fixture
def rec() -> Iterator[Record]:
    """A record that must come out of every ``decide`` call untouched."""
    r = record()
    before = state_of(r)
    yield r
    assert state_of(r) == before, "decide() mutated the record"


def disp(code: str, **kw: Any) -> Disposition:
    kw.setdefault("agent", "ann")
    kw.setdefault("phone_idx", 0)
    return Disposition(code=code, **kw)


def cb(at_: str, **kw: Any) -> CallbackRequest:
    return CallbackRequest(at=at_, **kw)


# ------------------------------------------------------------------------- retry
@pytest.mark.parametrize(("phone_idx", "next_idx"), [(0, 1), (1, 2), (2, 0)])
def test_retry_rotates_phone_and_waits_delay(rec: Record, phone_idx: int,
                                             next_idx: int) -> None:
    out = decide(rec, CAMP, disp("NA", phone_idx=phone_idx), NOW)
    assert out == Outcome(state=READY, reason=None, due_at=NOW + 3600, attempts=1, owner=None,
                          team="north", best_cp=1, phone_idx=next_idx, callback=None)


def test_retry_with_one_phone_stays_on_it(rec: Record) -> None:
    one = record(phones=[["+31201111111", PHONE_ACTIVE]])
    assert decide(one, CAMP, disp("NA"), NOW).phone_idx == 0


@pytest.mark.parametrize(("attempts_before", "delay_s"), [
    (0, 60), (1, 600), (2, 3600), (3, 3600), (7, 3600),
])
def test_retry_delay_per_attempt(attempts_before: int, delay_s: int) -> None:
    r = record(attempts=attempts_before)
    out = decide(r, campaign(max_attempts=10), disp("BUSY"), NOW)
    assert out.state == READY
    assert out.attempts == attempts_before + 1
    assert out.due_at == NOW + delay_s


@pytest.mark.parametrize(("attempts_before", "state", "reason"), [
    (0, READY, None), (1, READY, None), (2, CLOSED, "exhausted"), (5, CLOSED, "exhausted"),
])
def test_retry_max_attempts_closes_exhausted(attempts_before: int, state: str,
                                             reason: str | None) -> None:
    out = decide(record(attempts=attempts_before), CAMP, disp("NA"), NOW)
    assert (out.state, out.reason, out.attempts) == (state, reason, attempts_before + 1)


def test_retry_keeps_best_contact_priority(rec: Record) -> None:
    assert decide(record(best_cp=4), CAMP, disp("NA"), NOW).best_cp == 4
    assert decide(rec, CAMP, disp("NA"), NOW).best_cp == 1


def test_retry_drops_callback_owner() -> None:
    intent = CallbackIntent(at=NOW, timezone=AMS, local="", scope="personal", owner="bob",
                            team="north", contact_priority=6)
    r = record(state=CALLBACK, owner="bob", callback=intent, due_at=NOW, best_cp=6)
    out = decide(r, CAMP, disp("NA"), NOW)
    assert (out.state, out.owner, out.callback, out.best_cp) == (READY, None, None, 6)


# ------------------------------------------------------------------------- close
@pytest.mark.parametrize("code", ["NOPE", "WHY"])
def test_close_is_final(rec: Record, code: str) -> None:
    note = "asked not to" if code == "WHY" else None
    out = decide(rec, CAMP, disp(code, note=note), NOW)
    assert (out.state, out.reason, out.attempts, out.callback) == (CLOSED, "final", 1, None)
    assert out.best_cp == CODES[code].contact_priority


def test_close_ignores_max_attempts() -> None:
    out = decide(record(attempts=2), CAMP, disp("NOPE"), NOW)
    assert (out.state, out.reason) == (CLOSED, "final")


# ------------------------------------------------------------------------- callback
def test_callback_in_callee_wall_time(rec: Record) -> None:
    out = decide(rec, CAMP, disp("CB", callback=cb("2026-03-05T14:30", reason="after lunch")),
                 NOW)
    due = at(2026, 3, 5, 14, 30, tz=AMS)
    assert (out.state, out.due_at, out.attempts, out.best_cp) == (CALLBACK, due, 1, 6)
    assert (out.owner, out.team) == ("ann", "north")
    assert out.callback == CallbackIntent(
        at=due, timezone=AMS, local="2026-03-05T14:30:00+01:00", scope="personal_then_team",
        owner="ann", team="north", contact_priority=6, reason="after lunch",
        override_window=False, code="CB")


def test_callback_keeps_wall_time_across_dst(rec: Record) -> None:
    # Amsterdam springs forward on 2026-03-29: 10:00 on the 30th is 08:00 UTC, not 09:00.
    out = decide(rec, CAMP, disp("CB", callback=cb("2026-03-30T10:00")), NOW)
    assert out.due_at == at(2026, 3, 30, 8)


def test_callback_timezone_of_request(rec: Record) -> None:
    # 03:00 in New York is 09:00 in Amsterdam: inside the callee's window.
    out = decide(rec, CAMP, disp("CB", callback=cb("2026-03-05T03:00",
                                                   timezone="America/New_York")), NOW)
    assert out.due_at == at(2026, 3, 5, 9, tz=AMS)
    assert out.callback is not None
    assert out.callback.timezone == "America/New_York"
    assert out.callback.local == "2026-03-05T03:00:00-05:00"


@pytest.mark.parametrize(("text", "tz", "error", "override"), [
    # checked in the callee's zone (Amsterdam), whatever zone the agent wrote in
    ("2026-03-05T07:30", None, OutsideLegalWindow, False),
    ("2026-03-05T07:30", None, OutsideLegalWindow, True),
    ("2026-03-05T21:00", None, OutsideLegalWindow, True),
    ("2026-03-05T16:00", "America/New_York", OutsideLegalWindow, True),  # 22:00 in Amsterdam
    ("2026-03-06T10:00", None, OutsideLegalWindow, True),  # a holiday: override never reaches
    ("2026-03-05T17:30", None, OutsideCallingWindow, False),
    ("2026-03-05T14:00", "America/New_York", OutsideCallingWindow, False),  # 20:00 Amsterdam
    ("2026-03-07T10:00", None, OutsideCallingWindow, False),  # Saturday
    ("2026-03-05T08:30", None, OutsideCallingWindow, False),
])
def test_callback_outside_windows(rec: Record, text: str, tz: str | None,
                                  error: type[NextcallError], override: bool) -> None:
    with pytest.raises(error) as exc:
        decide(rec, CAMP, disp("CB", callback=cb(text, timezone=tz,
                                                 override_window=override)), NOW)
    assert exc.value.field == "callback.at"
    assert exc.value.code == {OutsideLegalWindow: "outside_legal_window",
                              OutsideCallingWindow: "outside_calling_window"}[error]


@pytest.mark.parametrize(("text", "tz"), [
    ("2026-03-05T17:30", None),
    ("2026-03-05T14:00", "America/New_York"),
    ("2026-03-07T10:00", None),
    ("2026-03-05T08:00", None),
    ("2026-03-05T20:59", None),
])
def test_callback_override_window_inside_legal(rec: Record, text: str, tz: str | None) -> None:
    out = decide(rec, CAMP, disp("CB", callback=cb(text, timezone=tz, override_window=True)),
                 NOW)
    assert out.state == CALLBACK
    assert out.callback is not None and out.callback.override_window is True
    assert out.due_at == calendar.resolve_local(text, tz or AMS)


def test_callback_required(rec: Record) -> None:
    with pytest.raises(CallbackRequired) as exc:
        decide(rec, CAMP, disp("CB"), NOW)
    assert (exc.value.code, exc.value.field) == ("callback_required", "callback")


def test_callback_not_taken_by_other_actions(rec: Record) -> None:
    with pytest.raises(BadRequest) as exc:
        decide(rec, CAMP, disp("NA", callback=cb("2026-03-05T10:00")), NOW)
    assert (exc.value.code, exc.value.field) == ("bad_request", "callback")


@pytest.mark.parametrize("ago_s", [CALLBACK_PAST_TOLERANCE_S + 60, 3600, 86400 * 2])
def test_callback_in_the_past(rec: Record, ago_s: float) -> None:
    text = datetime.fromtimestamp(NOW - ago_s, calendar.zone(AMS)).strftime("%Y-%m-%dT%H:%M")
    with pytest.raises(BadRequest) as exc:
        decide(rec, CAMP, disp("CB", callback=cb(text, override_window=True)), NOW)
    assert (exc.value.code, exc.value.field) == ("bad_request", "callback.at")


def test_callback_slightly_past_is_tolerated(rec: Record) -> None:
    out = decide(rec, CAMP, disp("CB", callback=cb("2026-03-04T09:57")), NOW)
    assert out.due_at == NOW - 180
    assert out.state == CALLBACK


def test_callback_in_a_dst_gap(rec: Record) -> None:
    with pytest.raises(InvalidTime) as exc:
        decide(rec, CAMP, disp("CB", callback=cb("2026-03-29T02:30", override_window=True)),
               NOW)
    assert (exc.value.code, exc.value.field) == ("invalid_time", "callback.at")


def test_callback_bad_time_text(rec: Record) -> None:
    with pytest.raises(BadRequest) as exc:
        decide(rec, CAMP, disp("CB", callback=cb("next thursday")), NOW)
    assert (exc.value.code, exc.value.field) == ("bad_request", "callback.at")


# Regression: the error named a top-level "timezone" field that a dispose request does
# not have; the request path is "callback.timezone".
def test_callback_bad_timezone_names_the_request_field(rec: Record) -> None:
    with pytest.raises(BadRequest) as exc:
        decide(rec, CAMP, disp("CB", callback=cb("2026-03-05T10:00", timezone="Mars/Base")),
               NOW)
    assert exc.value.code == "bad_request"
    assert exc.value.field == "callback.timezone"


@pytest.mark.parametrize(("code", "scope", "owner", "team", "want"), [
    # (scope, owner, team) of the intent
    ("CB", None, None, None, ("personal_then_team", "ann", "north")),
    ("CBP", None, None, None, ("personal", "ann", "north")),
    ("CBT", None, None, None, ("team", None, "north")),
    ("CB", "personal", None, None, ("personal", "ann", "north")),
    ("CB", "team", None, None, ("team", None, "north")),
    ("CB", "team", "bob", "south", ("team", None, "south")),
    ("CB", "anyone", None, None, ("anyone", "ann", "north")),
    ("CB", "personal_then_team", "bob", None, ("personal_then_team", "bob", "north")),
    ("CB", "personal_then_team", None, "south", ("personal_then_team", "ann", "south")),
    ("CBT", "personal", "bob", None, ("personal", "bob", "north")),
])
def test_callback_scopes(rec: Record, code: str, scope: str | None, owner: str | None,
                         team: str | None, want: tuple[str, str | None, str | None]) -> None:
    req = cb("2026-03-05T10:00", scope=scope, owner=owner, team=team)
    out = decide(rec, CAMP, disp(code, callback=req), NOW)
    assert out.callback is not None
    assert (out.callback.scope, out.callback.owner, out.callback.team) == want
    assert (out.owner, out.team) == want[1:]
    assert out.callback.contact_priority == CODES[code].contact_priority


def test_team_callback_without_team() -> None:
    r = record(team=None)
    for code, scope in (("CBT", None), ("CB", "team")):
        with pytest.raises(BadRequest) as exc:
            decide(r, CAMP, disp(code, callback=cb("2026-03-05T10:00", scope=scope)), NOW)
        assert (exc.value.code, exc.value.field) == ("bad_request", "callback.team")


def test_personal_then_team_without_team_is_allowed() -> None:
    out = decide(record(team=None), CAMP, disp("CB", callback=cb("2026-03-05T10:00")), NOW)
    assert out.callback is not None
    assert (out.callback.scope, out.owner, out.team) == ("personal_then_team", "ann", None)


def test_callback_bad_scope(rec: Record) -> None:
    with pytest.raises(BadRequest) as exc:
        decide(rec, CAMP, disp("CB", callback=cb("2026-03-05T10:00", scope="everyone")), NOW)
    assert (exc.value.code, exc.value.field) == ("bad_request", "callback.scope")


def test_callback_does_not_rotate_phone_nor_exhaust() -> None:
    out = decide(record(attempts=2), CAMP, disp("CB", phone_idx=2,
                                                callback=cb("2026-03-05T10:00")), NOW)
    assert (out.state, out.attempts, out.phone_idx) == (CALLBACK, 3, 2)


# ------------------------------------------------------------------------- codes and extras
def test_unknown_code(rec: Record) -> None:
    with pytest.raises(UnknownCode) as exc:
        decide(rec, CAMP, disp("XYZ"), NOW)
    assert (exc.value.code, exc.value.field) == ("unknown_code", "code")


def test_disabled_code(rec: Record) -> None:
    with pytest.raises(CodeDisabled) as exc:
        decide(rec, CAMP, disp("OLD"), NOW)
    assert (exc.value.code, exc.value.field) == ("code_disabled", "code")
    assert exc.value.to_wire() == {"code": "code_disabled", "field": "code",
                                   "message": "result code 'OLD' is disabled"}


@pytest.mark.parametrize(("code", "revenue", "error", "field"), [
    ("SALE", None, RevenueRequired, "revenue"),
    ("SALE", 0.0, RevenueRequired, "revenue"),
    ("SALE", -5.0, RevenueRequired, "revenue"),
    ("NOPE", 10.0, BadRequest, "revenue"),
    ("NOPE", 0.0, BadRequest, "revenue"),
    ("GIFT", -1.0, BadRequest, "revenue"),
])
def test_revenue_refused(rec: Record, code: str, revenue: float | None,
                         error: type[NextcallError], field: str) -> None:
    with pytest.raises(error) as exc:
        decide(rec, CAMP, disp(code, revenue=revenue), NOW)
    assert type(exc.value) is error
    assert exc.value.field == field
    assert exc.value.code == ("revenue_required" if error is RevenueRequired else "bad_request")


@pytest.mark.parametrize(("code", "revenue"), [
    ("SALE", 0.01), ("SALE", 250.0), ("GIFT", None), ("GIFT", 0.0), ("GIFT", 12.5),
    ("NOPE", None),
])
def test_revenue_accepted(rec: Record, code: str, revenue: float | None) -> None:
    assert decide(rec, CAMP, disp(code, revenue=revenue), NOW).state == CLOSED


@pytest.mark.parametrize(("code", "note", "error"), [
    ("WHY", None, NoteRequired), ("WHY", "", NoteRequired), ("WHY", "  \n", NoteRequired),
    ("NOPE", "hello", BadRequest), ("NA", "x", BadRequest),
])
def test_note_refused(rec: Record, code: str, note: str | None,
                      error: type[NextcallError]) -> None:
    with pytest.raises(error) as exc:
        decide(rec, CAMP, disp(code, note=note), NOW)
    assert type(exc.value) is error
    assert exc.value.field == "note"
    assert exc.value.code == ("note_required" if error is NoteRequired else "bad_request")


@pytest.mark.parametrize(("code", "note", "revenue"), [
    ("WHY", "moved abroad", None), ("NOPE", None, None), ("NOPE", "", None),
    ("SALE", None, 10.0), ("SALE", "yearly", 10.0),
])
def test_note_accepted(rec: Record, code: str, note: str | None,
                       revenue: float | None) -> None:
    assert decide(rec, CAMP, disp(code, note=note, revenue=revenue), NOW).state == CLOSED


def test_refusal_order_code_before_extras(rec: Record) -> None:
    # an unknown code is reported as such even when the extras are wrong as well
    with pytest.raises(UnknownCode):
        decide(rec, CAMP, disp("XYZ", revenue=-1.0, note="x"), NOW)
    with pytest.raises(CodeDisabled):
        decide(rec, CAMP, disp("OLD", note="x"), NOW)


@pytest.mark.parametrize(("code", "kw"), [
    ("NA", {}), ("BUSY", {"phone_idx": 2}), ("NOPE", {}), ("SALE", {"revenue": 5.0}),
    ("CB", {"callback": CallbackRequest("2026-03-05T10:00", scope="team", team="x")}),
    ("CB", {"callback": CallbackRequest("2026-03-07T10:00", override_window=True)}),
    ("XYZ", {}), ("OLD", {}), ("SALE", {}), ("WHY", {}), ("CB", {}),
    ("CB", {"callback": CallbackRequest("2026-03-05T23:00")}),
    ("CB", {"callback": CallbackRequest("2026-03-07T10:00")}),
    ("CB", {"callback": CallbackRequest("2020-01-01T10:00")}),
])
def test_decide_never_mutates_the_record(code: str, kw: dict[str, Any]) -> None:
    intent = CallbackIntent(at=NOW, timezone=AMS, local="x", scope="personal", owner="bob",
                            team="north", contact_priority=6)
    r = record(state=CALLBACK, owner="bob", callback=intent, attempts=1, best_cp=6,
               due_at=NOW - 10, phone_idx=1)
    before = state_of(r)
    with contextlib.suppress(NextcallError):
        decide(r, CAMP, disp(code, **kw), NOW)
    assert state_of(r) == before
    assert r.callback == CallbackIntent(at=NOW, timezone=AMS, local="x", scope="personal",
                                        owner="bob", team="north", contact_priority=6)


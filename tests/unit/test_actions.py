"""The action table (``core/actions.py``): every action's rule, and everything that reads
the table (``decide``, ``requires``, config validation) agreeing with it (SPEC §2).

``ACTION_CASES`` holds at least one example per action; a test fails for an action added
to ``RULES`` without one.
"""

from __future__ import annotations

import copy
import textwrap
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

import pytest

from nextcall.codes import FieldCfg, ResultCodeCfg
from nextcall.config import load
from nextcall.core import calendar
from nextcall.core.actions import (
    ACTIONS,
    OWNED_SETTINGS,
    RULES,
    check_code,
    requires,
    rule_of,
)
from nextcall.core.errors import (
    AppointmentRequired,
    BadRequest,
    CallbackRequired,
    ConfigError,
    InvalidTime,
    NextcallError,
)
from nextcall.core.model import Campaign, FieldSpec, Interval, ResultCode
from nextcall.core.records import (
    CALLBACK,
    CLOSED,
    HELD,
    PHONE_ACTIVE,
    PHONE_BLOCKED,
    PHONE_DNC,
    PHONE_REMOVED,
    READY,
    Record,
)
from nextcall.core.results import FIELD_TYPES, CallbackRequest, Disposition, decide

AMS = "Europe/Amsterdam"
A, B, C = "+31201111111", "+31202222222", "+31203333333"


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, tz: str = AMS) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=calendar.zone(tz)).timestamp()


CODES = {rc.code: rc for rc in (
    ResultCode("NA", "no answer", "retry", dial_status="no_answer", delay_s=3600),
    ResultCode("CB", "call back", "callback", contact_priority=6, reminder_min=10),
    ResultCode("NOPE", "not interested", "close", contact_priority=4),
    ResultCode("FINAL", "final until reload", "close_until_reload", contact_priority=3),
    ResultCode("APPT", "appointment", "hold", contact_priority=4),
    ResultCode("SPEC", "special circumstances", "special", reopen_teams=("care",)),
    ResultCode("DNC", "do not call", "dnc", contact_priority=4),
    ResultCode("WRONG", "wrong number", "remove_number"),
    ResultCode("BLOCK", "block number", "block_number"),
    ResultCode("ROLL", "to telemarketing", "roll", roll_campaign="tm"),
    ResultCode("ROLLL", "to telemarketing, list b", "roll", roll_campaign="tm",
               roll_list="b"),
    ResultCode("QUOTE", "quote", "close", fields=(
        FieldSpec("value", "money", required=True), FieldSpec("on", "date"),
        FieldSpec("why", "choice", choices=("price", "other")))),
)}
WINDOW = tuple((Interval(9 * 60, 17 * 60),) if i < 5 else () for i in range(7))
CAMP = Campaign(name="donors", codes=CODES, window=WINDOW, max_attempts=3)
# Wednesday 2026-03-04 10:00 in Amsterdam
NOW = at(2026, 3, 4, 10)


def record(phones: list[str] | None = None, **kw: Any) -> Record:
    args: dict[str, Any] = {
        "rid": 7, "id": "r7", "campaign": "donors", "list": "spring",
        "phones": [[n, PHONE_ACTIVE] for n in (phones or [A, B, C])],
        "timezone": AMS, "priority": 2, "data": "{}", "team": "north", "attempts": 1,
        "best_cp": 2,
    }
    args.update(kw)
    return Record(**args)


def disp(code: str, **kw: Any) -> Disposition:
    kw.setdefault("agent", "ann")
    kw.setdefault("phone_idx", 0)
    return Disposition(code=code, **kw)


@dataclass
class Case:
    """One disposition of one action and the outcome attributes it must produce."""

    id: str
    code: str
    expect: dict[str, Any]
    disp: dict[str, Any] = field(default_factory=dict)
    rec: dict[str, Any] = field(default_factory=dict)

    @property
    def action(self) -> str:
        return CODES[self.code].action


ACTION_CASES = [
    Case("retry waits and moves to the next number", "NA",
         {"state": READY, "due_at": NOW + 3600, "phone_idx": 1, "attempts": 2}),
    Case("retry at the last attempt closes exhausted", "NA",
         {"state": CLOSED, "reason": "exhausted", "attempts": 3}, rec={"attempts": 2}),
    Case("callback at the promised wall time", "CB",
         {"state": CALLBACK, "due_at": at(2026, 3, 5, 10), "owner": "ann", "team": "north",
          "best_cp": 6, "attempts": 2},
         disp={"callback": CallbackRequest("2026-03-05T10:00")}),
    Case("close is final", "NOPE", {"state": CLOSED, "reason": "final", "best_cp": 4}),
    Case("close until reload", "FINAL", {"state": CLOSED, "reason": "until_reload"}),
    Case("hold until the appointment", "APPT",
         {"state": HELD, "due_at": at(2026, 3, 10, 14), "reason": None},
         disp={"appointment_at": "2026-03-10T14:00"}),
    Case("hold in the appointment's own timezone", "APPT",
         {"state": HELD, "due_at": at(2026, 3, 10, 14, tz="UTC")},
         disp={"appointment_at": "2026-03-10T14:00", "appointment_tz": "UTC"}),
    Case("special closes special", "SPEC", {"state": CLOSED, "reason": "special"}),
    Case("dnc lists the dialled number and closes", "DNC",
         {"state": CLOSED, "reason": "dnc", "listed": [(B, "dnc")],
          "phones": [[A, PHONE_ACTIVE], [B, PHONE_DNC], [C, PHONE_ACTIVE]]},
         disp={"phone_idx": 1}),
    Case("remove_number continues with the next number now", "WRONG",
         {"state": READY, "due_at": NOW, "phone_idx": 1, "listed": [],
          "phones": [[A, PHONE_REMOVED], [B, PHONE_ACTIVE], [C, PHONE_ACTIVE]]}),
    Case("remove_number skips listed numbers", "WRONG",
         {"state": READY, "phone_idx": 2}, disp={"listed": {B: "dnc"}}),
    Case("remove_number of the last number closes no_numbers", "WRONG",
         {"state": CLOSED, "reason": "no_numbers", "phones": [[A, PHONE_REMOVED]]},
         rec={"phones": [A]}),
    Case("block_number lists the number and continues", "BLOCK",
         {"state": READY, "phone_idx": 1, "listed": [(A, "block")],
          "phones": [[A, PHONE_BLOCKED], [B, PHONE_ACTIVE], [C, PHONE_ACTIVE]]}),
    Case("block_number skips the same number elsewhere in the record", "BLOCK",
         {"state": READY, "phone_idx": 2, "listed": [(A, "block")],
          "phones": [[A, PHONE_BLOCKED], [A, PHONE_ACTIVE], [B, PHONE_ACTIVE]]},
         rec={"phones": [A, A, B]}),
    Case("block_number of a number the record holds twice closes no_numbers", "BLOCK",
         {"state": CLOSED, "reason": "no_numbers", "listed": [(A, "block")]},
         rec={"phones": [A, A]}),
    Case("roll moves to the target campaign, same list, fresh attempts", "ROLL",
         {"state": READY, "due_at": NOW, "campaign": "tm", "list_name": "spring",
          "attempts": 0, "team": "north"}),
    Case("roll to the target list", "ROLLL", {"campaign": "tm", "list_name": "b"}),
]


def test_every_action_has_a_case() -> None:
    assert {c.action for c in ACTION_CASES} == set(RULES)


@pytest.mark.parametrize("case", ACTION_CASES, ids=lambda c: c.id)
def test_action(case: Case) -> None:
    rec = record(**case.rec)
    before = copy.deepcopy([getattr(rec, s) for s in Record.__slots__])
    out = decide(rec, CAMP, disp(case.code, **case.disp), NOW)
    assert {k: getattr(out, k) for k in case.expect} == case.expect
    assert [getattr(rec, s) for s in Record.__slots__] == before, "the record is untouched"


def test_block_number_does_not_dial_a_duplicate_of_the_blocked_number() -> None:
    rec = record(phones=[A, C, A])
    out = decide(rec, CAMP, disp("BLOCK", phone_idx=0, listed={C: "dnc"}), NOW)
    assert (out.state, out.reason) == (CLOSED, "no_numbers")


def test_block_number_leaves_the_global_list_alone() -> None:
    listed = {C: "dnc"}
    decide(record(), CAMP, disp("BLOCK", listed=listed), NOW)
    assert listed == {C: "dnc"}


def test_callback_needs_a_callback() -> None:
    with pytest.raises(CallbackRequired) as err:
        decide(record(), CAMP, disp("CB"), NOW)
    assert err.value.field == "callback"


@pytest.mark.parametrize(("kw", "exc", "where"), [
    ({}, AppointmentRequired, "appointment"),
    ({"appointment_at": "2026-03-04T09:00"}, BadRequest, "appointment.at"),
    ({"appointment_at": "2026-03-04T10:00"}, BadRequest, "appointment.at"),
    ({"appointment_at": "tomorrow"}, BadRequest, "appointment.at"),
    ({"appointment_at": "2026-03-29T02:30"}, InvalidTime, "appointment.at"),  # DST gap
])
def test_hold_refusals(kw: dict[str, Any], exc: type[NextcallError], where: str) -> None:
    with pytest.raises(exc) as err:
        decide(record(), CAMP, disp("APPT", **kw), NOW)
    assert err.value.field == where


# ------------------------------------------------------------------ what each takes
CODE_OF = {rc.action: rc.code for rc in reversed(CODES.values())}


@pytest.mark.parametrize("action", [a for a in ACTIONS if not RULES[a].takes_callback])
def test_only_callback_actions_take_a_callback(action: str) -> None:
    with pytest.raises(BadRequest) as err:
        decide(record(), CAMP, disp(CODE_OF[action],
                                    callback=CallbackRequest("2026-03-05T10:00")), NOW)
    assert err.value.field == "callback"


@pytest.mark.parametrize("action",
                         [a for a in ACTIONS if not RULES[a].takes_appointment])
def test_only_appointment_actions_take_an_appointment(action: str) -> None:
    kw: dict[str, Any] = {"appointment_at": "2026-03-10T14:00"}
    if RULES[action].takes_callback:
        kw["callback"] = CallbackRequest("2026-03-05T10:00")
    with pytest.raises(BadRequest) as err:
        decide(record(), CAMP, disp(CODE_OF[action], **kw), NOW)
    assert err.value.field == "appointment"


@pytest.mark.parametrize("action", ACTIONS)
def test_requires_follows_the_table(action: str) -> None:
    rc = CODES[CODE_OF[action]]
    got = requires(rc)
    assert got["callback"] is RULES[action].takes_callback
    assert got["appointment"] is RULES[action].takes_appointment


def test_requires_lists_note_revenue_and_fields() -> None:
    got = requires(CODES["QUOTE"])
    assert (got["note"], got["revenue"]) == ("none", "none")
    assert [f["name"] for f in got["fields"]] == ["value", "on", "why"]  # type: ignore[attr-defined]


def test_an_unknown_action_is_refused_not_crashed() -> None:
    rc = ResultCode("X", "from the future", "teleport")
    with pytest.raises(BadRequest):
        rule_of(rc)
    camp = Campaign(name="donors", codes={"X": rc}, window=WINDOW)
    with pytest.raises(BadRequest) as err:
        decide(record(), camp, disp("X"), NOW)
    assert err.value.field == "code"
    assert requires(rc)["callback"] is False


# ------------------------------------------------------------------ fields
def test_decide_returns_normalised_fields_and_leaves_the_disposition_alone() -> None:
    sent: dict[str, object] = {"value": 12.345, "on": "2026-03-09", "why": "price"}
    d = disp("QUOTE", fields=sent)
    out = decide(record(), CAMP, d, NOW)
    assert out.fields == {"value": 12.35, "on": "2026-03-09", "why": "price"}
    assert d.fields is sent and sent == {"value": 12.345, "on": "2026-03-09", "why": "price"}


def test_empty_fields_are_dropped_from_the_outcome() -> None:
    out = decide(record(), CAMP, disp("QUOTE", fields={"value": 5, "on": ""}), NOW)
    assert out.fields == {"value": 5.0}


def test_codes_without_fields_give_empty_fields() -> None:
    assert decide(record(), CAMP, disp("NOPE"), NOW).fields == {}


# ------------------------------------------------------------------ config and table
def test_config_actions_are_the_table() -> None:
    assert get_args(ResultCodeCfg.model_fields["action"].annotation) == tuple(RULES)
    assert tuple(RULES) == ACTIONS


def test_config_field_types_are_the_checks() -> None:
    assert get_args(FieldCfg.model_fields["type"].annotation) == FIELD_TYPES


def test_owned_settings_are_config_keys() -> None:
    assert set(OWNED_SETTINGS) <= set(ResultCodeCfg.model_fields)
    assert set(OWNED_SETTINGS) == {k for r in RULES.values() for k, _ in r.settings}


@pytest.mark.parametrize(("action", "given", "problems"), [
    ("retry", {"delays_s"}, []),
    ("close", {"delays_s"}, [("delays_s", "only retry codes take delays")]),
    ("close", {"reminder"}, [("reminder", "only callback codes take reminders")]),
    ("callback", {"reminder", "reminder_min"}, []),
    ("retry", {"reopen_teams"}, [("reopen_teams", "only special codes take this")]),
    ("special", {"reopen_teams"}, []),
    ("roll", set(), [("roll_campaign", "a roll code needs a target")]),
])
def test_check_code(action: str, given: set[str], problems: list[tuple[str, str]]) -> None:
    assert check_code(ResultCode("X", "", action), given) == problems


def test_check_code_of_a_roll_with_its_target() -> None:
    assert check_code(ResultCode("X", "", "roll", roll_campaign="tm"), set()) == []


def test_config_reports_the_table_checks_with_their_keys(tmp_path: Path) -> None:
    p = tmp_path / "n.toml"
    p.write_text(textwrap.dedent("""
        [resultsets.s]
        [[resultsets.s.codes]]
        code = "R"
        action = "roll"
        [[resultsets.s.codes]]
        code = "C"
        action = "close"
        reopen_teams = ["care"]
        delays_s = []
        [[resultsets.s.codes]]
        code = "S"
        action = "special"
        reopen_teams = ["care"]
        [campaigns.c]
        resultset = "s"
    """))
    with pytest.raises(ConfigError) as err:
        load(p)
    got = {w.split(": ", 1)[1]: m for w, m in err.value.problems}
    assert got == {"resultsets.s.codes[0].roll_campaign": "a roll code needs a target",
                   "resultsets.s.codes[1].reopen_teams": "only special codes take this"}


def test_config_names_every_action_when_one_is_unknown(tmp_path: Path) -> None:
    p = tmp_path / "n.toml"
    p.write_text('[resultsets.s]\n[[resultsets.s.codes]]\ncode = "A"\naction = "teleport"\n')
    with pytest.raises(ConfigError) as err:
        load(p)
    (where, msg), = err.value.problems
    assert where.endswith("resultsets.s.codes[0].action")
    assert all(repr(a) in msg for a in RULES)

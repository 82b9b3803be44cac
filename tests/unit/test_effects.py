"""Effects a result code adds to its action (``core/effects.py``), and roll codes whose
target the agent chooses (``roll_targets``): the outcomes ``decide`` computes, the
combinations config validation accepts and refuses, and what ``requires`` tells a screen.
"""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nextcall.config import load
from nextcall.core.actions import ACTIONS, requires
from nextcall.core.effects import EFFECTS, check_effects
from nextcall.core.errors import BadRequest, ConfigError
from nextcall.core.model import Campaign, ResultCode
from nextcall.core.records import (
    CLOSED,
    HELD,
    PHONE_ACTIVE,
    PHONE_BLOCKED,
    PHONE_DNC,
    PHONE_REMOVED,
    READY,
    Record,
)
from nextcall.core.results import Disposition, decide
from tests.unit.test_actions import NOW, WINDOW, A, B, C, at, record

CODES = {rc.code: rc for rc in (
    ResultCode("NA_DNC", "", "retry", delay_s=600, effects=("dnc",)),
    ResultCode("DNCF", "", "close_until_reload", effects=("dnc",)),
    ResultCode("DNCALL", "", "close", effects=("dnc_all",)),
    ResultCode("DNC_ALL", "", "dnc", effects=("dnc_all",)),
    ResultCode("WRONG_DNC", "", "remove_number", effects=("dnc",)),
    ResultCode("APPT_TM", "", "hold", effects=("roll",), roll_campaign="tm",
               roll_list="appts"),
    ResultCode("WRONG_TM", "", "remove_number", effects=("roll",), roll_campaign="tm"),
    ResultCode("ARCHIVE", "", "roll", effects=("close_until_reload",),
               roll_campaign="archive", roll_list="old"),
    ResultCode("WRONG_FINAL", "", "remove_number", effects=("close_until_reload",)),
    ResultCode("ROLL_DNC", "", "roll", effects=("dnc",), roll_campaign="tm"),
    ResultCode("PHASE", "", "roll", roll_targets=("tm", "sales"), roll_list="moved"),
    ResultCode("PHASE_DEF", "", "roll", roll_targets=("tm", "sales"), roll_campaign="tm"),
    ResultCode("FIXED", "", "roll", roll_campaign="tm"),
    ResultCode("NOPE", "", "close"),
)}
CAMP = Campaign(name="donors", codes=CODES, window=WINDOW, max_attempts=3)


def disp(code: str, **kw: Any) -> Disposition:
    kw.setdefault("agent", "ann")
    kw.setdefault("phone_idx", 0)
    return Disposition(code=code, **kw)


def statuses(*pairs: tuple[str, str]) -> list[list[str]]:
    return [list(p) for p in pairs]


CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("retry + dnc: the number is listed, the next attempt is on the next number", "NA_DNC",
     {"state": READY, "due_at": NOW + 600, "phone_idx": 1, "listed": [(A, "dnc")],
      "phones": statuses((A, PHONE_DNC), (B, PHONE_ACTIVE), (C, PHONE_ACTIVE))}, {}, {}),
    ("Final + Do Not Call", "DNCF",
     {"state": CLOSED, "reason": "until_reload", "listed": [(B, "dnc")],
      "phones": statuses((A, PHONE_ACTIVE), (B, PHONE_DNC), (C, PHONE_ACTIVE))},
     {"phone_idx": 1}, {}),
    ("close + dnc_all lists every number still the record's, each once", "DNCALL",
     {"state": CLOSED, "reason": "final", "listed": [(A, "dnc"), (C, "dnc")],
      "phones": statuses((A, PHONE_DNC), (B, PHONE_REMOVED), (A, PHONE_DNC),
                         (C, PHONE_DNC), (B, PHONE_BLOCKED))}, {},
     {"phones": [[A, PHONE_ACTIVE], [B, PHONE_REMOVED], [A, PHONE_ACTIVE],
                 [C, PHONE_ACTIVE], [B, PHONE_BLOCKED]]}),
    ("the dnc action with dnc_all", "DNC_ALL",
     {"state": CLOSED, "reason": "dnc", "listed": [(A, "dnc"), (B, "dnc"), (C, "dnc")]},
     {}, {}),
    ("remove_number + dnc: the number is listed, the next one dialled at once",
     "WRONG_DNC",
     {"state": READY, "due_at": NOW, "phone_idx": 1, "listed": [(A, "dnc")],
      "phones": statuses((A, PHONE_DNC), (B, PHONE_ACTIVE), (C, PHONE_ACTIVE))}, {}, {}),
    ("hold + roll: held until the appointment in the target campaign", "APPT_TM",
     {"state": HELD, "due_at": at(2026, 3, 10, 14), "campaign": "tm",
      "list_name": "appts", "attempts": 0}, {"appointment_at": "2026-03-10T14:00"}, {}),
    ("remove_number + roll: the next number, in the target campaign", "WRONG_TM",
     {"state": READY, "phone_idx": 1, "campaign": "tm", "list_name": "spring",
      "phones": statuses((A, PHONE_REMOVED), (B, PHONE_ACTIVE), (C, PHONE_ACTIVE))}, {},
     {}),
    ("roll + close_until_reload: closed in the target until its list is reloaded",
     "ARCHIVE", {"state": CLOSED, "reason": "until_reload", "campaign": "archive",
                 "list_name": "old", "attempts": 0, "owner": None}, {}, {}),
    ("remove_number + close_until_reload: the number removed, the record Final",
     "WRONG_FINAL", {"state": CLOSED, "reason": "until_reload", "listed": [],
                     "phones": statuses((A, PHONE_REMOVED), (B, PHONE_ACTIVE),
                                        (C, PHONE_ACTIVE))}, {}, {}),
    ("roll + dnc: the number listed, the record moved with its other numbers",
     "ROLL_DNC", {"state": READY, "campaign": "tm", "listed": [(A, "dnc")]}, {}, {}),
]


@pytest.mark.parametrize(("code", "expect", "kw", "rec_kw"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_effect_outcome(code: str, expect: dict[str, Any], kw: dict[str, Any],
                        rec_kw: dict[str, Any]) -> None:
    rec = record()
    rec.phones = rec_kw.get("phones", rec.phones)
    before = copy.deepcopy([getattr(rec, s) for s in Record.__slots__])
    out = decide(rec, CAMP, disp(code, **kw), NOW)
    assert {k: getattr(out, k) for k in expect} == expect
    assert [getattr(rec, s) for s in Record.__slots__] == before, "the record is untouched"


def test_a_code_without_effects_is_only_its_action() -> None:
    out = decide(record(), CAMP, disp("NOPE"), NOW)
    assert (out.phones, out.listed, out.campaign) == (None, [], None)


def test_an_effect_on_a_record_without_numbers_lists_nothing() -> None:
    rec = record()
    rec.phones = []
    out = decide(rec, CAMP, disp("DNCF"), NOW)
    assert out.listed == [] and out.reason == "until_reload"


# ------------------------------------------------------------------ combinations
def test_every_effect_says_for_every_action_whether_it_is_meaningful() -> None:
    """No combination is left undecided: each action is allowed or refused with a
    reason, never both."""
    for name, rule in EFFECTS.items():
        assert set(rule.actions) | set(rule.refused) == set(ACTIONS), name
        assert not set(rule.actions) & set(rule.refused), name


PAIRS = [(e, a) for e in EFFECTS for a in ACTIONS]


@pytest.mark.parametrize(("effect", "action"), PAIRS, ids=[f"{a}+{e}" for e, a in PAIRS])
def test_check_effects_follows_the_table(effect: str, action: str) -> None:
    rc = ResultCode("X", "", action, effects=(effect,), roll_campaign="tm")
    problems = [p for p in check_effects(rc, {"roll_campaign"}) if p[0] == "effects[0]"]
    if action in EFFECTS[effect].actions:
        assert problems == []
    else:
        (_, msg), = problems
        assert msg == (f"{action} codes cannot take effect {effect!r}: "
                       f"{EFFECTS[effect].refused[action]}")


@pytest.mark.parametrize(("rc", "given", "problems"), [
    (ResultCode("X", "", "close", effects=("dnc", "dnc_all")), set(),
     [("effects[0]", "dnc_all already lists the dialled number; drop dnc")]),
    (ResultCode("X", "", "close", effects=("dnc", "dnc")), set(),
     [("effects[1]", "effect 'dnc' is listed twice")]),
    (ResultCode("X", "", "close", roll_list="l"), {"roll_list"},
     [("roll_list", 'only roll codes (action or effect "roll") take this')]),
    (ResultCode("X", "", "hold", effects=("roll",)), set(),
     [("roll_campaign", "the roll effect needs a target")]),
    (ResultCode("X", "", "roll", roll_targets=("a", "b"), roll_campaign="c"),
     {"roll_targets", "roll_campaign"},
     [("roll_campaign", "the default target must be one of roll_targets")]),
    (ResultCode("X", "", "roll", roll_targets=("a", "a")), {"roll_targets"},
     [("roll_targets[1]", "'a' is listed twice")]),
    (ResultCode("X", "", "hold", effects=("roll",), roll_targets=("a", "b")),
     {"roll_targets"}, []),
])
def test_check_effects(rc: ResultCode, given: set[str],
                       problems: list[tuple[str, str]]) -> None:
    assert check_effects(rc, given) == problems


def test_config_reports_effect_problems_with_their_keys(tmp_path: Path) -> None:
    p = tmp_path / "n.toml"
    p.write_text(textwrap.dedent("""
        [resultsets.s]
        [[resultsets.s.codes]]
        code = "OK"
        action = "close_until_reload"
        effects = ["dnc"]
        [[resultsets.s.codes]]
        code = "R"
        action = "retry"
        effects = ["close_until_reload"]
        [[resultsets.s.codes]]
        code = "P"
        action = "roll"
        roll_targets = ["c", "elsewhere"]
        [campaigns.c]
        resultset = "s"
    """))
    with pytest.raises(ConfigError) as err:
        load(p)
    got = {w.split(": ", 1)[1]: m for w, m in err.value.problems}
    assert got == {
        "resultsets.s.codes[1].effects[0]":
            "retry codes cannot take effect 'close_until_reload': "
            + EFFECTS["close_until_reload"].refused["retry"],
        "resultsets.s.codes[2].roll_targets[1]": "no campaign 'elsewhere' to roll to"}


def test_config_refuses_an_unknown_effect(tmp_path: Path) -> None:
    p = tmp_path / "n.toml"
    p.write_text('[resultsets.s]\n[[resultsets.s.codes]]\ncode = "A"\naction = "close"\n'
                 'effects = ["recall"]\n[campaigns.c]\nresultset = "s"\n')
    with pytest.raises(ConfigError) as err:
        load(p)
    (where, msg), = [p for p in err.value.problems if "effects" in p[0]]
    assert where.endswith("resultsets.s.codes[0].effects[0]")
    assert all(repr(e) in msg for e in EFFECTS)


def test_config_turns_effects_and_targets_into_the_code(tmp_path: Path) -> None:
    p = tmp_path / "n.toml"
    p.write_text(textwrap.dedent("""
        [resultsets.s]
        [[resultsets.s.codes]]
        code = "P"
        action = "roll"
        roll_targets = ["c", "d"]
        [[resultsets.s.codes]]
        code = "F"
        action = "close_until_reload"
        effects = ["dnc_all"]
        [campaigns.c]
        resultset = "s"
        [campaigns.d]
        resultset = "s"
    """))
    codes = load(p).campaigns["c"].codes
    assert codes["P"].roll_targets == ("c", "d") and codes["F"].effects == ("dnc_all",)


# ------------------------------------------------------------------ roll targets
@pytest.mark.parametrize(("code", "campaign", "target", "list_name"), [
    ("PHASE", "sales", "sales", "moved"),
    ("PHASE", "tm", "tm", "moved"),
    ("PHASE_DEF", None, "tm", "spring"),
    ("PHASE_DEF", "sales", "sales", "spring"),
    ("FIXED", None, "tm", "spring"),
    ("FIXED", "tm", "tm", "spring"),
])
def test_roll_to_the_chosen_target(code: str, campaign: str | None, target: str,
                                   list_name: str) -> None:
    out = decide(record(), CAMP, disp(code, campaign=campaign), NOW)
    assert (out.state, out.campaign, out.list_name, out.attempts) == (READY, target,
                                                                      list_name, 0)


@pytest.mark.parametrize(("code", "campaign", "words"), [
    ("PHASE", "archive", "rolls to tm, sales, not 'archive'"),
    ("PHASE", None, "needs campaign, one of tm, sales"),
    ("FIXED", "sales", "rolls to tm, not 'sales'"),
    ("NOPE", "tm", "does not roll the record"),
    ("DNCF", "tm", "does not roll the record"),
])
def test_a_target_the_code_does_not_allow_is_refused(code: str, campaign: str | None,
                                                     words: str) -> None:
    with pytest.raises(BadRequest) as err:
        decide(record(), CAMP, disp(code, campaign=campaign), NOW)
    assert err.value.field == "campaign"
    assert words in str(err.value)


def test_requires_lists_the_targets_an_agent_chooses_from() -> None:
    assert requires(CODES["PHASE"])["campaign"] == ["tm", "sales"]
    assert requires(CODES["FIXED"])["campaign"] == []
    assert requires(CODES["NOPE"])["campaign"] == []

"""Effects: what a result code adds to its action.

Intelligent Contacts has Final, Do Not Call, Recall and Roll as independent checkboxes on
one call result; nextcall keeps one *action* per code (``core.actions.RULES``: what happens
to the record) and lets the code add *effects*, applied by ``results.decide`` to the
action's ``Outcome`` in the order below:

- ``dnc``: the dialled number joins the DNC list (status ``dnc`` on the record);
- ``dnc_all``: every number the record still has joins it (removed and blocked numbers
  are left alone: a removed number is no longer the callee's, a blocked one is already
  never dialled);
- ``roll``: the record moves to the code's roll target, keeping the action's state there;
- ``close_until_reload``: the record closes ``until_reload`` instead of staying open.

Only the combinations in ``EFFECTS[...].actions`` mean something; ``check_effects`` refuses
the others in config validation, each with the reason in ``EffectRule.refused``. The DNC
list, the record's numbers, its campaign and its state are all things an ``Outcome`` can
already carry, so effects need nothing new from the engine or storage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .actions import Disposition, Outcome, roll_to
from .model import ResultCode
from .records import CLOSED, PHONE_BLOCKED, PHONE_DNC, PHONE_REMOVED, Record

#: ``apply(rec, code, disposition, outcome)``: change the action's outcome in place
Apply = Callable[[Record, ResultCode, Disposition, Outcome], None]

_CLOSED_BY = {"close": "final", "close_until_reload": "until_reload", "special": "special",
              "dnc": "dnc"}


@dataclass(frozen=True, slots=True)
class EffectRule:
    """One effect: what it does and the actions it is meaningful with."""

    apply: Apply
    #: the actions this effect may be added to
    actions: tuple[str, ...]
    #: why it may not be added to each other action (the ``check-config`` message)
    refused: dict[str, str] = field(default_factory=dict)


def _phones(rec: Record, out: Outcome) -> list[list[str]]:
    """The numbers as the action left them (a copy: the record is not touched)."""
    return [list(p) for p in (out.phones if out.phones is not None else rec.phone_list())]


def _list(out: Outcome, number: str) -> None:
    if number and (number, "dnc") not in out.listed:
        out.listed.append((number, "dnc"))


def _dnc(rec: Record, rc: ResultCode, d: Disposition, out: Outcome) -> None:
    """The dialled number joins the DNC list."""
    phones = _phones(rec, out)
    if 0 <= d.phone_idx < len(phones):
        phones[d.phone_idx][1] = PHONE_DNC
        _list(out, phones[d.phone_idx][0])
    out.phones = phones


def _dnc_all(rec: Record, rc: ResultCode, d: Disposition, out: Outcome) -> None:
    """Every number the record still has joins the DNC list."""
    phones = _phones(rec, out)
    for p in phones:
        if p[1] not in (PHONE_REMOVED, PHONE_BLOCKED):
            p[1] = PHONE_DNC
            _list(out, p[0])
    out.phones = phones


def _roll(rec: Record, rc: ResultCode, d: Disposition, out: Outcome) -> None:
    """The record moves to the roll target in the state the action gave it."""
    roll_to(rec, rc, d, out)


def _until_reload(rec: Record, rc: ResultCode, d: Disposition, out: Outcome) -> None:
    """The record closes until its list is reloaded instead of being called again."""
    out.state, out.reason = CLOSED, "until_reload"
    out.owner, out.callback = None, None


_PROMISE = "{a} keeps the record for a promised {what}"


def _closes(action: str) -> str:
    return f"{action} already closes the record ({_CLOSED_BY[action]})"


#: every effect, in the order ``decide`` applies them
EFFECTS: dict[str, EffectRule] = {
    "dnc": EffectRule(_dnc, ("retry", "close", "close_until_reload", "special",
                             "remove_number", "roll"), {
        "callback": _PROMISE.format(a="callback", what="call") + "; list the number with "
                    "a closing code",
        "hold": _PROMISE.format(a="hold", what="appointment") + ", reconciled afterwards",
        "dnc": "the dnc action already lists the dialled number",
        "block_number": "block_number puts the number on the block list, and a number is "
                        "on one list",
    }),
    "dnc_all": EffectRule(_dnc_all, ("close", "close_until_reload", "special", "dnc"), {
        **{a: f"{a} calls the record again, and dnc_all leaves it no number to call"
           for a in ("retry", "remove_number", "block_number")},
        "callback": "the callback would never be dialled: dnc_all leaves no number",
        "hold": _PROMISE.format(a="hold", what="appointment") + ", reconciled afterwards",
        "roll": "a rolled record is called in its new campaign, and dnc_all leaves it no "
                "number to call",
    }),
    "roll": EffectRule(_roll, ("hold", "remove_number", "block_number"), {
        "retry": 'a rolled record is due at once in its new campaign: use action = "roll"',
        "callback": "a callback belongs to an agent of the record's own campaign: roll "
                    "the record, then schedule the callback in the new one",
        **{a: f"{a} closes the record, and a closed record is called by no campaign; "
              'for one closed in the target use action = "roll" with effects = '
              '["close_until_reload"]' for a in ("close", "close_until_reload",
                                                 "special", "dnc")},
        "roll": "the roll action already moves the record",
    }),
    "close_until_reload": EffectRule(_until_reload, ("roll", "remove_number",
                                                     "block_number"), {
        "retry": "retry calls the record again: use action = \"close_until_reload\" "
                 "with the effects it needs",
        "callback": _PROMISE.format(a="callback", what="call"),
        "hold": _PROMISE.format(a="hold", what="appointment"),
        **{a: _closes(a) for a in ("close", "special", "dnc")},
        "close_until_reload": "the action already closes the record until_reload",
    }),
}
#: every effect name, in config error messages' order
EFFECT_NAMES = tuple(EFFECTS)


def apply_effects(rec: Record, rc: ResultCode, d: Disposition, out: Outcome) -> None:
    """Add ``rc``'s effects to the action's outcome ``out`` (the record is untouched)."""
    for name in EFFECT_NAMES:
        if name in rc.effects:
            EFFECTS[name].apply(rec, rc, d, out)


def check_effects(rc: ResultCode, given: set[str]) -> list[tuple[str, str]]:
    """Config problems of ``rc``'s effects and roll settings, as (config key, message):
    effects that mean nothing with the action or with each other, and roll settings on a
    code that does not roll. ``given`` names the settings the config file sets."""
    problems: list[tuple[str, str]] = []
    for i, name in enumerate(rc.effects):
        rule = EFFECTS.get(name)
        where = f"effects[{i}]"
        if rc.effects.index(name) != i:
            problems.append((where, f"effect {name!r} is listed twice"))
        elif rule is not None and rc.action not in rule.actions:
            why = rule.refused.get(rc.action, "it means nothing with this action")
            problems.append((where, f"{rc.action} codes cannot take effect {name!r}: {why}"))
    if "dnc" in rc.effects and "dnc_all" in rc.effects:
        problems.append((f"effects[{rc.effects.index('dnc')}]",
                         "dnc_all already lists the dialled number; drop dnc"))
    problems += _roll_problems(rc, given)
    return problems


def _roll_problems(rc: ResultCode, given: set[str]) -> list[tuple[str, str]]:
    rolling = rc.action == "roll" or "roll" in rc.effects
    if not rolling:
        return [(key, 'only roll codes (action or effect "roll") take this')
                for key in ("roll_campaign", "roll_list", "roll_targets") if key in given]
    problems: list[tuple[str, str]] = []
    if rc.action != "roll" and not (rc.roll_campaign or rc.roll_targets):
        problems.append(("roll_campaign", "the roll effect needs a target"))
    if rc.roll_targets and rc.roll_campaign and rc.roll_campaign not in rc.roll_targets:
        problems.append(("roll_campaign", "the default target must be one of roll_targets"))
    problems += [(f"roll_targets[{k}]", f"{t!r} is listed twice")
                 for k, t in enumerate(rc.roll_targets) if rc.roll_targets.index(t) != k]
    return problems

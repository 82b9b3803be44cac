"""Result-code actions as a table of rules: what each action does to a record.

``RULES`` maps every action name to one ``ActionRule``: which parts of a disposition the
action takes (a callback, an appointment), which result-code settings belong to it alone,
what config validation checks for it, and ``apply``, which turns (record, campaign, code,
disposition, now) into an ``Outcome`` without touching the record. Everything else reads
this table: ``results.decide`` dispatches on it, config validation takes its keys as the
list of actions, ``requires`` tells an agent screen what a code needs.

How to add an action:

1. here: write its ``apply`` function (start from ``_base``; raise a ``NextcallError``
   subclass to refuse, before anything is decided) and add ``"name": ActionRule(...)`` to
   ``RULES``, with ``settings`` and ``check`` if it reads settings of its own;
2. if it reads new result-code settings: add them to ``ResultCode`` (``core/model.py``)
   and to ``ResultCodeCfg`` and ``_code`` in ``config.py``;
3. add its test to ``tests/unit/test_actions.py`` (a test there fails for any action
   without one).

Config validation, ``decide`` and ``requires`` need no change. An action whose outcome the
engine cannot yet apply (a new kind of change to a record) needs a new ``Outcome`` field
and its handling in ``Engine.dispose`` and the storage statements as well.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from . import calendar
from .errors import (
    AppointmentRequired,
    AssignNotAllowed,
    BadRequest,
    CallbackRequired,
    OutsideCallingWindow,
    OutsideLegalWindow,
)
from .model import CALLBACK_SCOPES, Campaign, ResultCode
from .records import (
    CALLBACK,
    CLOSED,
    HELD,
    PHONE_BLOCKED,
    PHONE_DNC,
    PHONE_REMOVED,
    READY,
    CallbackIntent,
    Quote,
    Record,
)

#: the longest callback window (``callback.until`` - ``callback.at``)
MAX_WINDOW_S = 7 * 86_400
#: a callback may lie this far in the past (clock skew between agent screens and us)
CALLBACK_PAST_TOLERANCE_S = 300.0


@dataclass(slots=True)
class CallbackRequest:
    """What the agent asked for; ``at`` is still text, resolved here in its timezone."""

    at: str
    timezone: str | None = None
    scope: str | None = None
    owner: str | None = None
    team: str | None = None
    reason: str = ""
    override_window: bool = False
    #: a callback window's end (``at`` is its start), local time like ``at``
    until: str | None = None


@dataclass(slots=True)
class Disposition:
    """A validated-shape disposition request (types checked by the protocol layer)."""

    code: str
    agent: str
    phone_idx: int
    note: str | None = None
    revenue: float | None = None
    callback: CallbackRequest | None = None
    #: as sent; ``decide`` leaves it alone and returns the normalised copy in
    #: ``Outcome.fields``
    fields: dict[str, object] = field(default_factory=dict)
    #: hold: the appointment, ISO text (wall time in ``appointment_tz`` or the record's)
    appointment_at: str | None = None
    appointment_tz: str | None = None
    #: numbers on the DNC or block list, skipped when continuing with the next number
    listed: dict[str, str] = field(default_factory=dict)
    #: whether a name may own this record's callbacks (an agent of its campaign); None
    #: accepts any owner
    owner_allowed: Callable[[str], bool] | None = None
    #: roll codes with ``roll_targets``: the campaign the agent chose (checked by
    #: ``check_roll_target`` before any rule applies)
    campaign: str | None = None


@dataclass(slots=True)
class Outcome:
    """The record's next durable state."""

    state: str
    reason: str | None
    due_at: float
    attempts: int
    owner: str | None
    team: str | None
    best_cp: int
    phone_idx: int
    callback: CallbackIntent | None
    #: new per-number statuses, when the disposition changed any
    phones: list[list[str]] | None = None
    #: numbers that join a global list: (number, "dnc" | "block")
    listed: list[tuple[str, str]] = field(default_factory=list)
    #: roll: the record's new campaign and list
    campaign: str | None = None
    list_name: str | None = None
    #: the disposition's typed extra fields, validated and normalised (what history keeps)
    fields: dict[str, object] = field(default_factory=dict)
    #: the record's new quote, when the fields carry the campaign's value field
    #: (expected-value scoring); None leaves the quote as it was
    quote: Quote | None = None


#: ``apply(rec, campaign, code, disposition, now)``: the outcome, or a refusal raised
Apply = Callable[[Record, Campaign, ResultCode, Disposition, float], Outcome]
#: ``check(code)``: problems of a code's own settings, as (setting, message)
Check = Callable[[ResultCode], list[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class ActionRule:
    """One action: what it takes, what config checks for it, and what it does."""

    apply: Apply
    #: the disposition must carry a callback (and no other action takes one)
    takes_callback: bool = False
    #: the disposition must carry an appointment (and no other action takes one)
    takes_appointment: bool = False
    #: result-code settings that only this action reads, as (config key, noun for the
    #: message "only <action> codes take <noun>"); set on another action's code, they are
    #: a config error rather than silently ignored
    settings: tuple[tuple[str, str], ...] = ()
    #: config validation of the code's own settings (a requirement such as a target)
    check: Check | None = None


def resolve_callback(rec: Record, campaign: Campaign, rc: ResultCode, req: CallbackRequest,
                     agent: str, now: float,
                     owner_allowed: Callable[[str], bool] | None = None) -> CallbackIntent:
    """Validate a callback request and fix its instant.

    The legal window and holidays are checked in the record's own timezone (where the
    callee is); the campaign window too unless ``override_window``. An owner other than
    ``agent`` must pass ``owner_allowed`` (the service accepts agents known to work the
    record's campaign); the reminder lead comes from ``rc``.

    Raises:
        BadRequest, InvalidTime, OutsideLegalWindow, OutsideCallingWindow.
    """
    tz_key = req.timezone or rec.timezone
    at = calendar.resolve_local(req.at, tz_key, field="callback.at")
    if at < now - CALLBACK_PAST_TOLERANCE_S:
        raise BadRequest(f"callback.at {req.at} is in the past", field="callback.at")
    scope = req.scope or rc.scope
    if scope not in CALLBACK_SCOPES:
        raise BadRequest(f"callback.scope must be one of {', '.join(CALLBACK_SCOPES)}",
                         field="callback.scope")
    owner = req.owner or agent
    team = req.team or rec.team
    if scope == "team" and not team:
        raise BadRequest("a team callback needs callback.team (the record has no team)",
                         field="callback.team")
    if scope != "team" and req.owner and req.owner != agent and owner_allowed is not None \
            and not owner_allowed(req.owner):
        raise BadRequest(f"{req.owner!r} is not an agent of campaign {campaign.name!r}; "
                         "a callback's owner must be an agent who logged in to it",
                         field="callback.owner")
    _check_windows(rec, campaign, at, req.override_window)
    until = _window_end(req, tz_key, at)
    return CallbackIntent(at=at, timezone=tz_key, local=calendar.local_iso(at, tz_key),
                          scope=scope, owner=owner if scope != "team" else None,
                          team=team, contact_priority=rc.contact_priority,
                          reason=req.reason, override_window=req.override_window,
                          code=rc.code, reminder_min=rc.reminder_min, until=until,
                          until_local=calendar.local_iso(until, tz_key) if until else "",
                          ignore_budgets=rc.ignore_budgets)


def _window_end(req: CallbackRequest, tz_key: str, at: float) -> float | None:
    """A callback window's end as an instant (same zone as its start), after the start
    and at most ``MAX_WINDOW_S`` later.

    Raises:
        BadRequest, InvalidTime: unparsable, nonexistent, or not after the start.
    """
    if req.until is None:
        return None
    until = calendar.resolve_local(req.until, tz_key, field="callback.until")
    if not at < until <= at + MAX_WINDOW_S:
        raise BadRequest(f"callback.until {req.until} must lie after callback.at "
                         f"{req.at} and at most {MAX_WINDOW_S // 86_400} days later",
                         field="callback.until")
    return until


def _check_windows(rec: Record, campaign: Campaign, at: float, override_window: bool
                   ) -> None:
    """Refuse a callback instant outside the legal window (always) or the campaign's
    calling window (unless overridden), judged where the callee lives."""
    callee_tz = calendar.zone(rec.timezone)
    if not calendar.legal_at(campaign, callee_tz, at):
        raise OutsideLegalWindow(
            f"{calendar.local_iso(at, rec.timezone)} is outside the legal window "
            f"{campaign.legal_window} (or a holiday) in the callee's timezone "
            f"{rec.timezone}", field="callback.at")
    if not override_window and not calendar.is_callable_at(campaign, callee_tz, at, False):
        raise OutsideCallingWindow(
            f"{calendar.local_iso(at, rec.timezone)} is outside campaign "
            f"{campaign.name!r}'s calling window; set callback.override_window to allow it",
            field="callback.at")


# ---------------------------------------------------------------------- the actions
def _base(rec: Record, rc: ResultCode, d: Disposition, now: float) -> Outcome:
    """What every action starts from: one attempt more, the best contact priority so far,
    ready now on the dialled number, no owner, the record's team."""
    return Outcome(state=READY, reason=None, due_at=now, attempts=rec.attempts + 1,
                   owner=None, team=rec.team, best_cp=max(rec.best_cp, rc.contact_priority),
                   phone_idx=d.phone_idx, callback=None)


def _n_phones(rec: Record) -> int:
    # at least 1, so a record without numbers still has a valid modulus
    return max(len(rec.phone_list()), 1)


def _retry(rec: Record, camp: Campaign, rc: ResultCode, d: Disposition, now: float
           ) -> Outcome:
    """No contact: back to the pool after the code's delay, on the record's next number;
    the campaign's last allowed attempt closes it ``exhausted`` instead."""
    out = _base(rec, rc, d, now)
    out.phone_idx = (d.phone_idx + 1) % _n_phones(rec)
    if out.attempts >= camp.max_attempts:
        out.state, out.reason = CLOSED, "exhausted"
    else:
        out.due_at = now + rc.retry_delay_s(out.attempts)
    return out


def _callback(rec: Record, camp: Campaign, rc: ResultCode, d: Disposition, now: float
              ) -> Outcome:
    """A promised call at the requested wall time, for its owner or team (no attempt
    limit: a promise is kept)."""
    if d.callback is None:
        raise CallbackRequired(f"result code {rc.code!r} needs callback.at",
                               field="callback")
    if not rc.allow_assign and d.callback.owner not in (None, d.agent):
        raise AssignNotAllowed(f"result code {rc.code!r} keeps its callbacks with the agent "
                               f"who sets them (allow_assign = false); leave out "
                               f"callback.owner or give {d.agent!r}", field="callback.owner")
    cb = resolve_callback(rec, camp, rc, d.callback, d.agent, now, d.owner_allowed)
    out = _base(rec, rc, d, now)
    out.state, out.due_at, out.callback = CALLBACK, cb.at, cb
    out.owner, out.team = cb.owner, cb.team
    return out


def _closing(reason: str, doc: str) -> Apply:
    """An action that only closes the record with ``reason``."""
    def close(rec: Record, camp: Campaign, rc: ResultCode, d: Disposition, now: float
              ) -> Outcome:
        out = _base(rec, rc, d, now)
        out.state, out.reason = CLOSED, reason
        return out
    close.__doc__ = doc
    close.__name__ = close.__qualname__ = f"_close_{reason}"
    return close


def _hold(rec: Record, camp: Campaign, rc: ResultCode, d: Disposition, now: float
          ) -> Outcome:
    """An appointment: held until its (future) date, then waiting for an admin."""
    if d.appointment_at is None:
        raise AppointmentRequired(f"result code {rc.code!r} needs appointment.at",
                                  field="appointment")
    tz_key = d.appointment_tz or rec.timezone
    at = calendar.resolve_local(d.appointment_at, tz_key, field="appointment.at")
    if at <= now:
        raise BadRequest(f"appointment.at {d.appointment_at} is not in the future",
                         field="appointment.at")
    out = _base(rec, rc, d, now)
    out.state, out.due_at = HELD, at
    return out


def _dnc(rec: Record, camp: Campaign, rc: ResultCode, d: Disposition, now: float
         ) -> Outcome:
    """Do not call: the dialled number joins the DNC list and the record is closed."""
    out = _base(rec, rc, d, now)
    out.phones = _with_status(rec, d.phone_idx, PHONE_DNC)
    out.listed = [(_number(rec, d.phone_idx), "dnc")]
    out.state, out.reason = CLOSED, "dnc"
    return out


def _remove_number(rec: Record, camp: Campaign, rc: ResultCode, d: Disposition,
                   now: float) -> Outcome:
    """The dialled number is dropped from this record; the next callable one is dialled
    at once (none left: closed ``no_numbers``)."""
    return _without_number(rec, rc, d, now, blocked=False)


def _block_number(rec: Record, camp: Campaign, rc: ResultCode, d: Disposition,
                  now: float) -> Outcome:
    """As ``remove_number``, and the number joins the block list: no record dials it."""
    return _without_number(rec, rc, d, now, blocked=True)


def _without_number(rec: Record, rc: ResultCode, d: Disposition, now: float,
                    blocked: bool) -> Outcome:
    out = _base(rec, rc, d, now)
    number = _number(rec, d.phone_idx)
    out.phones = _with_status(rec, d.phone_idx, PHONE_BLOCKED if blocked else PHONE_REMOVED)
    probe_phones = out.phones
    if blocked:
        out.listed = [(number, "block")]
        # the number is on the block list from now on, so another entry of this record
        # with the same number is skipped too: marked here rather than copying the whole
        # global list (``d.listed``) to add one number to it
        probe_phones = [[n, PHONE_BLOCKED if n == number else s] for n, s in out.phones]
    probe = Record(rec.rid, rec.id, rec.campaign, rec.list, probe_phones, rec.timezone,
                   rec.priority, rec.data)
    nxt = probe.callable_phone(d.listed, start=(d.phone_idx + 1) % _n_phones(rec))
    if nxt is None:
        out.state, out.reason = CLOSED, "no_numbers"
    else:
        out.phone_idx = nxt[0]  # due now (from _base): continue at once
    return out


def _roll(rec: Record, camp: Campaign, rc: ResultCode, d: Disposition, now: float
          ) -> Outcome:
    """The record moves to the code's campaign (and list), ready at once with a fresh
    attempt count; the service refuses a target that is not configured."""
    out = _base(rec, rc, d, now)
    roll_to(rec, rc, d, out)
    return out


def roll_to(rec: Record, rc: ResultCode, d: Disposition, out: Outcome) -> None:
    """Move ``out`` to the roll target (the agent's choice, else the code's
    ``roll_campaign``) and the code's list, with a fresh attempt count there."""
    target = d.campaign or rc.roll_campaign
    assert target is not None  # check_roll_target refused a disposition without one
    out.campaign, out.list_name = target, rc.roll_list or rec.list
    out.attempts = 0


def rolls(rc: ResultCode) -> bool:
    """Whether ``rc`` moves the record: a roll action, or the roll effect."""
    return rc.action == "roll" or "roll" in rc.effects


def check_roll_target(rc: ResultCode, d: Disposition) -> None:
    """Refuse a ``campaign`` the code does not let the agent choose, and a roll without
    a target.

    Raises:
        BadRequest: naming ``campaign``.
    """
    if not rolls(rc):
        if d.campaign is not None:
            raise BadRequest(f"result code {rc.code!r} does not roll the record; it takes "
                             "no campaign", field="campaign")
        return
    allowed = rc.roll_targets or ((rc.roll_campaign,) if rc.roll_campaign else ())
    if d.campaign is None:
        if rc.roll_campaign is None:
            raise BadRequest(f"result code {rc.code!r} needs campaign, one of "
                             f"{', '.join(allowed)}", field="campaign")
        return
    if d.campaign not in allowed:
        raise BadRequest(f"result code {rc.code!r} rolls to {', '.join(allowed)}, not "
                         f"{d.campaign!r}", field="campaign")


def _needs_target(rc: ResultCode) -> list[tuple[str, str]]:
    if rc.roll_campaign or rc.roll_targets:
        return []
    return [("roll_campaign", "a roll code needs a target")]


def _number(rec: Record, idx: int) -> str:
    phones = rec.phone_list()
    return phones[idx][0] if 0 <= idx < len(phones) else ""


def _with_status(rec: Record, idx: int, status: str) -> list[list[str]]:
    phones = [list(p) for p in rec.phone_list()]
    if 0 <= idx < len(phones):
        phones[idx][1] = status
    return phones


#: every action, in the order config error messages list them
RULES: dict[str, ActionRule] = {
    "retry": ActionRule(_retry, settings=(("delays_s", "delays"),)),
    "callback": ActionRule(_callback, takes_callback=True,
                           settings=(("reminder", "reminders"), ("reminder_min", "reminders"),
                                     ("allow_assign", "allow_assign"))),
    "close": ActionRule(_closing("final", "Closed for good; only an admin reopens it.")),
    "close_until_reload": ActionRule(_closing(
        "until_reload", "Closed until its contact list is reloaded.")),
    "hold": ActionRule(_hold, takes_appointment=True),
    "special": ActionRule(_closing(
        "special", "Closed; members of the code's reopen teams may reopen it with a "
        "callback."), settings=(("reopen_teams", "this"),)),
    "dnc": ActionRule(_dnc),
    "remove_number": ActionRule(_remove_number),
    "block_number": ActionRule(_block_number),
    "roll": ActionRule(_roll, check=_needs_target),
}
ACTIONS = tuple(RULES)


def rule_of(rc: ResultCode) -> ActionRule:
    """The rule of ``rc``'s action.

    Raises:
        BadRequest: an action this version does not know (config validation prevents it).
    """
    rule = RULES.get(rc.action)
    if rule is None:
        raise BadRequest(f"action {rc.action!r} is not implemented", field="code")
    return rule


def requires(rc: ResultCode) -> dict[str, object]:
    """What an agent screen must ask for before sending ``rc``."""
    rule = RULES.get(rc.action)
    return {
        "callback": rule is not None and rule.takes_callback,
        # whether the screen may offer a pull-down of other agents (callback.owner)
        "assign": rule is not None and rule.takes_callback and rc.allow_assign,
        "appointment": rule is not None and rule.takes_appointment,
        "note": rc.note,
        "revenue": rc.revenue,
        "fields": [f.to_json() for f in rc.fields],
        # roll codes whose target the agent chooses: the choices for ``dispose.campaign``
        "campaign": list(rc.roll_targets),
    }


def check_code(rc: ResultCode, given: Collection[str]) -> list[tuple[str, str]]:
    """Config problems of ``rc`` for its action, as (config key, message): settings that
    belong to other actions, then the action's own requirements.

    ``given`` names the settings the config file sets (a ``ResultCode`` cannot tell a
    default from a setting, nor see ``reminder``, which config folds into
    ``reminder_min``).
    """
    problems = [(key, f"only {' or '.join(owners)} codes take {noun}")
                for key, (owners, noun) in _OWNED.items()
                if key in given and rc.action not in owners]
    rule = RULES.get(rc.action)
    if rule is not None and rule.check is not None:
        problems += rule.check(rc)
    return problems


def _owned() -> dict[str, tuple[tuple[str, ...], str]]:
    owned: dict[str, tuple[tuple[str, ...], str]] = {}
    for name, rule in RULES.items():
        for key, noun in rule.settings:
            owners = owned[key][0] if key in owned else ()
            owned[key] = (owners + (name,), noun)
    return owned


#: config key -> (the actions whose codes take it, noun for the message)
_OWNED = _owned()
#: every setting that belongs to some action (config tests which of them a code sets)
OWNED_SETTINGS = tuple(_OWNED)

"""Result-code actions: (record, code, disposition, now) -> the record's next state.

Pure: ``decide`` validates a disposition against its code and the campaign and returns an
``Outcome`` without touching the record; the engine applies it. Nothing changes when a
disposition is refused, because refusal happens before anything is applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from . import calendar
from .errors import (AppointmentRequired, BadRequest, CallbackRequired, CodeDisabled,
                     NoteRequired, OutsideCallingWindow, OutsideLegalWindow, RevenueRequired,
                     UnknownCode)
from .model import CALLBACK_SCOPES, Campaign, ResultCode
from .records import (CALLBACK, CLOSED, HELD, PHONE_BLOCKED, PHONE_DNC, PHONE_REMOVED, READY,
                      CallbackIntent, Record)

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


@dataclass(slots=True)
class Disposition:
    """A validated-shape disposition request (types checked by the protocol layer)."""

    code: str
    agent: str
    phone_idx: int
    note: str | None = None
    revenue: float | None = None
    callback: CallbackRequest | None = None
    fields: dict[str, object] = field(default_factory=dict)
    #: hold: the appointment, ISO text (wall time in ``appointment_tz`` or the record's)
    appointment_at: str | None = None
    appointment_tz: str | None = None
    #: numbers on the DNC or block list, skipped when continuing with the next number
    listed: dict[str, str] = field(default_factory=dict)
    #: whether a name may own this record's callbacks (an agent of its campaign); None
    #: accepts any owner
    owner_allowed: Callable[[str], bool] | None = None


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


def lookup_code(campaign: Campaign, code: str) -> ResultCode:
    """The campaign's result code, if usable.

    Raises:
        UnknownCode: not in the set.
        CodeDisabled: configured but disabled.
    """
    rc = campaign.codes.get(code)
    if rc is None:
        raise UnknownCode(f"result code {code!r} is not in campaign {campaign.name!r}",
                          field="code")
    if not rc.enabled:
        raise CodeDisabled(f"result code {code!r} is disabled", field="code")
    return rc


def check_fields(rc: ResultCode, given: dict[str, object]) -> dict[str, object]:
    """Validate the typed extra fields of a disposition; returns them normalised.

    Raises:
        BadRequest: unknown field, missing required field, wrong type or out of range,
            naming ``fields.<name>``.
    """
    specs = {f.name: f for f in rc.fields}
    for name in given:
        if name not in specs:
            raise BadRequest(f"result code {rc.code!r} has no field {name!r}"
                             + (f" (it has {', '.join(specs)})" if specs else ""),
                             field=f"fields.{name}")
    out: dict[str, object] = {}
    for name, spec in specs.items():
        path = f"fields.{name}"
        value = given.get(name)
        if value is None or value == "":
            if spec.required:
                raise BadRequest(f"result code {rc.code!r} needs {spec.label or name}",
                                 field=path)
            continue
        if spec.type in ("money", "percent", "integer"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or value != value or value in (float("inf"), float("-inf")):
                raise BadRequest(f"{name} must be a number", field=path)
            if spec.type == "integer" and not float(value).is_integer():
                raise BadRequest(f"{name} must be a whole number", field=path)
            lo = spec.min if spec.min is not None else (0.0 if spec.type != "integer"
                                                        else None)
            hi = spec.max if spec.max is not None else (100.0 if spec.type == "percent"
                                                        else None)
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise BadRequest(f"{name} must be between {lo} and {hi}", field=path)
            out[name] = round(float(value), 2) if spec.type == "money" else value
        elif spec.type == "date":
            try:
                out[name] = date.fromisoformat(str(value)).isoformat()
            except ValueError:
                raise BadRequest(f"{name} must be a date (YYYY-MM-DD)", field=path) from None
        elif spec.type == "choice":
            if value not in spec.choices:
                raise BadRequest(f"{name} must be one of {', '.join(spec.choices)}",
                                 field=path)
            out[name] = value
        else:
            if not isinstance(value, str) or len(value) > 2000:
                raise BadRequest(f"{name} must be text of at most 2000 characters",
                                 field=path)
            out[name] = value
    return out


def _check_extras(rc: ResultCode, d: Disposition) -> None:
    if rc.revenue == "required" and (d.revenue is None or not d.revenue > 0):
        raise RevenueRequired(f"result code {rc.code!r} needs revenue > 0", field="revenue")
    if rc.revenue == "none" and d.revenue is not None:
        raise BadRequest(f"result code {rc.code!r} takes no revenue", field="revenue")
    if d.revenue is not None and d.revenue < 0:
        raise BadRequest("revenue must not be negative", field="revenue")
    if rc.note == "required" and not (d.note and d.note.strip()):
        raise NoteRequired(f"result code {rc.code!r} needs a note", field="note")
    if rc.note == "none" and d.note:
        raise BadRequest(f"result code {rc.code!r} takes no note", field="note")


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
    callee_tz = calendar.zone(rec.timezone)
    if not calendar.legal_at(campaign, callee_tz, at):
        raise OutsideLegalWindow(
            f"{calendar.local_iso(at, rec.timezone)} is outside the legal window "
            f"{campaign.legal_window} (or a holiday) in the callee's timezone "
            f"{rec.timezone}", field="callback.at")
    if not req.override_window and not calendar.is_callable_at(campaign, callee_tz, at, False):
        raise OutsideCallingWindow(
            f"{calendar.local_iso(at, rec.timezone)} is outside campaign "
            f"{campaign.name!r}'s calling window; set callback.override_window to allow it",
            field="callback.at")
    return CallbackIntent(at=at, timezone=tz_key, local=calendar.local_iso(at, tz_key),
                          scope=scope, owner=owner if scope != "team" else None,
                          team=team, contact_priority=rc.contact_priority,
                          reason=req.reason, override_window=req.override_window,
                          code=rc.code, reminder_min=rc.reminder_min)


def decide(rec: Record, campaign: Campaign, d: Disposition, now: float) -> Outcome:
    """The next state of ``rec`` after disposition ``d``.

    Raises:
        UnknownCode, CodeDisabled, CallbackRequired, RevenueRequired, NoteRequired,
        BadRequest, InvalidTime, OutsideLegalWindow, OutsideCallingWindow.
    """
    rc = lookup_code(campaign, d.code)
    _check_extras(rc, d)
    d.fields = check_fields(rc, d.fields)
    if rc.action != "callback" and d.callback is not None:
        raise BadRequest(f"result code {rc.code!r} does not take a callback",
                         field="callback")
    if rc.action != "hold" and d.appointment_at is not None:
        raise BadRequest(f"result code {rc.code!r} does not take an appointment",
                         field="appointment")
    attempts = rec.attempts + 1
    best_cp = max(rec.best_cp, rc.contact_priority)
    n_phones = max(len(rec.phone_list()), 1)
    out = Outcome(state=READY, reason=None, due_at=now, attempts=attempts, owner=None,
                  team=rec.team, best_cp=best_cp, phone_idx=d.phone_idx, callback=None)
    if rc.action == "retry":
        # No contact: the next attempt tries the record's next number.
        out.phone_idx = (d.phone_idx + 1) % n_phones
        if attempts >= campaign.max_attempts:
            out.state, out.reason = CLOSED, "exhausted"
        else:
            out.due_at = now + rc.retry_delay_s(attempts)
    elif rc.action == "callback":
        if d.callback is None:
            raise CallbackRequired(f"result code {rc.code!r} needs callback.at",
                                   field="callback")
        cb = resolve_callback(rec, campaign, rc, d.callback, d.agent, now, d.owner_allowed)
        out.state, out.due_at, out.callback = CALLBACK, cb.at, cb
        out.owner, out.team = cb.owner, cb.team
    elif rc.action == "close":
        out.state, out.reason = CLOSED, "final"
    elif rc.action == "close_until_reload":
        out.state, out.reason = CLOSED, "until_reload"
    elif rc.action == "special":
        out.state, out.reason = CLOSED, "special"
    elif rc.action == "hold":
        if d.appointment_at is None:
            raise AppointmentRequired(f"result code {rc.code!r} needs appointment.at",
                                      field="appointment")
        tz_key = d.appointment_tz or rec.timezone
        at = calendar.resolve_local(d.appointment_at, tz_key, field="appointment.at")
        if at <= now:
            raise BadRequest(f"appointment.at {d.appointment_at} is not in the future",
                             field="appointment.at")
        out.state, out.due_at = HELD, at
    elif rc.action == "dnc":
        number = _number(rec, d.phone_idx)
        out.phones = _with_status(rec, d.phone_idx, PHONE_DNC)
        out.listed = [(number, "dnc")]
        out.state, out.reason = CLOSED, "dnc"
    elif rc.action in ("remove_number", "block_number"):
        blocked = rc.action == "block_number"
        number = _number(rec, d.phone_idx)
        out.phones = _with_status(rec, d.phone_idx, PHONE_BLOCKED if blocked
                                  else PHONE_REMOVED)
        if blocked:
            out.listed = [(number, "block")]
        listed = dict(d.listed)
        listed.update(out.listed)
        probe = Record(rec.rid, rec.id, rec.campaign, rec.list, out.phones, rec.timezone,
                       rec.priority, rec.data)
        nxt = probe.callable_phone(listed, start=(d.phone_idx + 1) % n_phones)
        if nxt is None:
            out.state, out.reason = CLOSED, "no_numbers"
        else:
            # continue at once with the next callable number
            out.phone_idx, out.due_at = nxt[0], now
    elif rc.action == "roll":
        assert rc.roll_campaign is not None  # config validation guarantees it
        out.campaign, out.list_name = rc.roll_campaign, rc.roll_list or rec.list
        out.attempts, out.team = 0, rec.team
    else:  # pragma: no cover - config validation knows every action
        raise BadRequest(f"action {rc.action!r} is not implemented", field="code")
    return out


def _number(rec: Record, idx: int) -> str:
    phones = rec.phone_list()
    return phones[idx][0] if 0 <= idx < len(phones) else ""


def _with_status(rec: Record, idx: int, status: str) -> list[list[str]]:
    phones = [list(p) for p in rec.phone_list()]
    if 0 <= idx < len(phones):
        phones[idx][1] = status
    return phones

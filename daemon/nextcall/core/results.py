"""Deciding a disposition: (record, code, disposition, now) -> the record's next state.

Pure: ``decide`` checks a disposition against its result code and the campaign (the code
is usable, revenue, note and typed fields are as the code asks, the disposition carries
only what the code's action takes), then lets the action's rule (``nextcall.core.actions``)
compute the ``Outcome``, without touching the record or the disposition; the engine applies
the outcome. The code's effects (``nextcall.core.effects``) then add to the action's
outcome. Nothing changes when a disposition is refused, because refusal happens before
anything is applied.

The disposition and outcome types live with the action rules (which consume and produce
them) and are re-exported here, where callers of ``decide`` look for them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from .actions import (
    CALLBACK_PAST_TOLERANCE_S,
    CallbackRequest,
    Disposition,
    Outcome,
    check_roll_target,
    resolve_callback,
    rule_of,
)
from .effects import apply_effects
from .errors import BadRequest, CodeDisabled, NoteRequired, RevenueRequired, UnknownCode
from .model import Campaign, FieldSpec, ResultCode
from .records import Record
from .scoring import quote_from_fields

__all__ = ["CALLBACK_PAST_TOLERANCE_S", "FIELD_CHECKS", "FIELD_TYPES", "CallbackRequest",
           "Disposition", "Outcome", "check_fields", "decide", "lookup_code",
           "resolve_callback"]


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
        out[name] = FIELD_CHECKS.get(spec.type, _text_field)(spec, value, path)
    return out


def _number_field(spec: FieldSpec, value: object, path: str) -> object:
    """money, percent, integer: a finite number within the spec's range (money and
    percent default to at least 0, percent to at most 100); money kept to cents."""
    name = spec.name
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or value != value or value in (float("inf"), float("-inf")):
        raise BadRequest(f"{name} must be a number", field=path)
    if spec.type == "integer" and not float(value).is_integer():
        raise BadRequest(f"{name} must be a whole number", field=path)
    lo = spec.min if spec.min is not None else (0.0 if spec.type != "integer" else None)
    hi = spec.max if spec.max is not None else (100.0 if spec.type == "percent" else None)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise BadRequest(f"{name} must be between {lo} and {hi}", field=path)
    return round(float(value), 2) if spec.type == "money" else value


def _date_field(spec: FieldSpec, value: object, path: str) -> object:
    """date: ISO text, normalised to YYYY-MM-DD."""
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise BadRequest(f"{spec.name} must be a date (YYYY-MM-DD)", field=path) from None


def _choice_field(spec: FieldSpec, value: object, path: str) -> object:
    """choice: one of the spec's fixed list (a won/lost reason, ...)."""
    if value not in spec.choices:
        raise BadRequest(f"{spec.name} must be one of {', '.join(spec.choices)}",
                         field=path)
    return value


def _text_field(spec: FieldSpec, value: object, path: str) -> object:
    """text: at most 2000 characters."""
    if not isinstance(value, str) or len(value) > 2000:
        raise BadRequest(f"{spec.name} must be text of at most 2000 characters",
                         field=path)
    return value


#: every typed-field type and how a value of it is checked and normalised; config takes
#: its keys as the list of field types
FIELD_CHECKS: dict[str, Callable[[FieldSpec, object, str], object]] = {
    "money": _number_field,
    "percent": _number_field,
    "date": _date_field,
    "choice": _choice_field,
    "text": _text_field,
    "integer": _number_field,
}
FIELD_TYPES = tuple(FIELD_CHECKS)


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


def decide(rec: Record, campaign: Campaign, d: Disposition, now: float) -> Outcome:
    """The next state of ``rec`` after disposition ``d``; ``Outcome.fields`` holds the
    disposition's extra fields normalised (``d`` itself is left as sent).

    Raises:
        UnknownCode, CodeDisabled, CallbackRequired, RevenueRequired, NoteRequired,
        AppointmentRequired, BadRequest, InvalidTime, OutsideLegalWindow,
        OutsideCallingWindow.
    """
    rc = lookup_code(campaign, d.code)
    _check_extras(rc, d)
    fields = check_fields(rc, d.fields)
    rule = rule_of(rc)
    if d.callback is not None and not rule.takes_callback:
        raise BadRequest(f"result code {rc.code!r} does not take a callback",
                         field="callback")
    if d.appointment_at is not None and not rule.takes_appointment:
        raise BadRequest(f"result code {rc.code!r} does not take an appointment",
                         field="appointment")
    check_roll_target(rc, d)
    out = rule.apply(rec, campaign, rc, d, now)
    if rc.effects:
        apply_effects(rec, rc, d, out)
    out.fields = fields
    out.quote = quote_from_fields(campaign.scoring, fields)
    return out

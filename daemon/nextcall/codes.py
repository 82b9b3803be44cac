"""Result-code configuration: the shape of ``[[resultsets.X.codes]]`` entries, their
conversion to core codes, and the checks that go beyond one field's shape."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .core.actions import ACTIONS, OWNED_SETTINGS, check_code
from .core.effects import EFFECT_NAMES, check_effects
from .core.model import (
    CALLBACK_SCOPES,
    DEFAULT_REMINDER_MIN,
    DIAL_STATUSES,
    FieldSpec,
    ResultCode,
)
from .core.reopening import DEFAULT_REOPEN_ROLES, REOPEN_ROLES
from .core.reports import FIELD_ROLES
from .core.results import FIELD_TYPES
from .mailcfg import EmailText

#: the category whose codes ``require_contact_priority`` covers besides callback codes
#: (CallMonkey's "4. Terugbellen" holds retry codes too)
CALLBACK_CATEGORY = "callback"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldCfg(_Strict):
    """``[[resultsets.X.codes.fields]]``: a typed extra field."""

    name: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]
    type: Literal[FIELD_TYPES]  # type: ignore[valid-type]
    required: bool = False
    label: str = ""
    choices: list[str] = []
    min: float | None = None
    max: float | None = None
    #: what the field is to reports, on a code with ``report``: ``value`` (money),
    #: ``chance`` (percent), ``expected`` (date), ``reason`` (choice)
    report: Literal["value", "chance", "expected", "reason"] | None = None


class ResultCodeCfg(_Strict):
    """One ``[[resultsets.X.codes]]`` entry."""

    code: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.:-]+$")]
    description: str = ""
    #: one of the action table's keys (``core.actions.RULES``)
    action: Literal[ACTIONS]  # type: ignore[valid-type]
    enabled: bool = True
    category: str = "open"
    dial_status: Literal[DIAL_STATUSES] = "person"  # type: ignore[valid-type]
    contact: bool = False
    presentation: bool = False
    success: bool = False
    revenue: Literal["none", "optional", "required"] = "none"
    note: Literal["none", "optional", "required"] = "optional"
    #: None: not given (1 applies); ``require_contact_priority`` tells the two apart
    contact_priority: Annotated[int, Field(ge=0, le=9)] | None = None
    delay_s: Annotated[int, Field(ge=0, le=366 * 86_400)] = 0
    delays_s: list[Annotated[int, Field(ge=0, le=366 * 86_400)]] = []
    scope: Literal[CALLBACK_SCOPES] = "personal_then_team"  # type: ignore[valid-type]
    reminder_min: Annotated[int, Field(ge=0, le=1440)] | None = None
    #: callback codes: ``true`` reminds ``DEFAULT_REMINDER_MIN`` (15) minutes before unless
    #: ``reminder_min`` says otherwise; setting ``reminder_min`` alone also asks for one
    reminder: bool | None = None
    #: callback codes: whether the agent may give the callback to another agent
    #: (``callback.owner``); None: yes
    allow_assign: bool | None = None
    roll_campaign: str | None = None
    roll_list: str | None = None
    #: the campaigns the agent may roll the record to (``dispose.campaign``)
    roll_targets: list[str] = []
    #: what the code adds to its action (``core.effects``), e.g. ``["dnc"]``
    effects: list[Literal[EFFECT_NAMES]] = []  # type: ignore[valid-type]
    reopen_teams: list[str] = []
    #: roles that may reopen a record this code closed (default: the action's, see
    #: ``core.reopening.DEFAULT_REOPEN_ROLES``)
    reopen_roles: list[str] | None = None
    fields: list[FieldCfg] = []
    #: who is e-mailed once a disposition with this code is committed
    notify: list[EmailText] = []
    #: what its dispositions are to reports: a quote, an order won or lost
    report: Literal["quote", "won", "lost"] | None = None
    #: callback codes: the callback is handed out whatever the campaign's attempt budgets
    #: say (the callee asked for this call)
    ignore_budgets: bool = False


class ResultSetCfg(_Strict):
    """``[resultsets.X]``: a reusable result-code set."""

    description: str = ""
    #: every callback code (action ``callback`` or category ``callback``) must give its
    #: ``contact_priority`` rather than take the default (CallMonkey: "mandatory")
    require_contact_priority: bool = False
    codes: list[ResultCodeCfg]


def _reminder_min(rc: ResultCodeCfg) -> int | None:
    """The effective reminder lead: ``reminder_min`` when set (unless ``reminder =
    false``), ``DEFAULT_REMINDER_MIN`` for ``reminder = true``, else no reminder."""
    if rc.reminder is False:
        return None
    if rc.reminder_min is not None:
        return rc.reminder_min
    return DEFAULT_REMINDER_MIN if rc.reminder else None


def _closing_action(rc: ResultCodeCfg) -> str:
    """The action whose default reopen roles ``rc`` takes: an added ``close_until_reload``
    effect closes the record as that action does, whatever the main action."""
    return "close_until_reload" if "close_until_reload" in rc.effects else rc.action


def _reopen_roles(rc: ResultCodeCfg) -> tuple[str, ...]:
    """The roles that may reopen what ``rc`` closed: as configured (in the order of
    ``REOPEN_ROLES``), else its action's default; none for an action that never closes."""
    default = DEFAULT_REOPEN_ROLES.get(_closing_action(rc), ())
    if rc.reopen_roles is None or not default:
        return default
    return tuple(r for r in REOPEN_ROLES if r in rc.reopen_roles)


def _reopen_problems(rc: ResultCodeCfg) -> list[tuple[str, str]]:
    """``reopen_roles`` only on codes that can close a record, naming known roles and
    always the admin (who may reopen anything)."""
    if rc.reopen_roles is None:
        return []
    if _closing_action(rc) not in DEFAULT_REOPEN_ROLES:
        return [("reopen_roles", f"a {rc.action} code never closes a record; only "
                 f"{', '.join(DEFAULT_REOPEN_ROLES)} codes (or codes with the "
                 "close_until_reload effect) take reopen_roles")]
    unknown = [r for r in rc.reopen_roles if r not in REOPEN_ROLES]
    if unknown:
        return [("reopen_roles", f"{unknown[0]!r} is not a role that reopens records: "
                 f"they are {' and '.join(REOPEN_ROLES)} (agents reopen a special code's "
                 "records through its reopen_teams)")]
    if "admin" not in rc.reopen_roles:
        return [("reopen_roles", "an admin may reopen any record; list \"admin\"")]
    return []


def _code(rc: ResultCodeCfg) -> ResultCode:
    return ResultCode(
        code=rc.code, description=rc.description, action=rc.action, enabled=rc.enabled,
        category=rc.category, dial_status=rc.dial_status, contact=rc.contact,
        presentation=rc.presentation, success=rc.success, revenue=rc.revenue, note=rc.note,
        contact_priority=1 if rc.contact_priority is None else rc.contact_priority,
        allow_assign=rc.allow_assign is not False, notify=tuple(rc.notify),
        delay_s=rc.delay_s, delays_s=tuple(rc.delays_s),
        scope=rc.scope, reminder_min=_reminder_min(rc), roll_campaign=rc.roll_campaign,
        roll_list=rc.roll_list, roll_targets=tuple(rc.roll_targets),
        effects=tuple(rc.effects), reopen_teams=tuple(rc.reopen_teams),
        reopen_roles=_reopen_roles(rc), report=rc.report,
        ignore_budgets=rc.ignore_budgets,
        fields=tuple(FieldSpec(f.name, f.type, f.required, f.label, tuple(f.choices), f.min,
                               f.max, f.report) for f in rc.fields))


def result_sets(resultsets: Mapping[str, ResultSetCfg], origin: Mapping[str, str],
                campaigns: Collection[str], problems: list[tuple[str, str]]
                ) -> dict[str, dict[str, ResultCode]]:
    """Every result-code set as core codes, by set name; problems of each code reported
    with its index."""
    sets: dict[str, dict[str, ResultCode]] = {}
    for name, rs in resultsets.items():
        where_set = f"{origin['resultsets.' + name]}: resultsets.{name}"
        codes: dict[str, ResultCode] = {}
        for i, rc in enumerate(rs.codes):
            where = f"{where_set}.codes[{i}]"
            if rc.code in codes:
                problems.append((f"{where}.code", f"duplicate code {rc.code!r}"))
            code = _code(rc)
            problems += [(f"{where}.{key}", msg)
                         for key, msg in _code_problems(rc, code, campaigns)]
            if rs.require_contact_priority and rc.contact_priority is None and (
                    rc.action == "callback" or rc.category == CALLBACK_CATEGORY):
                problems.append((f"{where}.contact_priority",
                                 "this set requires a contact_priority on every callback "
                                 "code (require_contact_priority = true)"))
            codes[rc.code] = code
        if not codes:
            problems.append((f"{where_set}.codes", "a result-code set needs at least one code"))
        sets[name] = codes
    return sets


_ROLL_SETTINGS = ("roll_campaign", "roll_list", "roll_targets")


def _code_problems(rc: ResultCodeCfg, code: ResultCode, campaigns: Collection[str]
                   ) -> list[tuple[str, str]]:
    """What is wrong with one code beyond its shape, as (key within the code, message):
    its action's rules (``core.actions.check_code``), then cross-references and fields."""
    given = {key for key in (*OWNED_SETTINGS, *_ROLL_SETTINGS)
             if getattr(rc, key) not in (None, [])}
    problems = check_code(code, given) + check_effects(code, given)
    if rc.roll_campaign and rc.roll_campaign not in campaigns:
        problems.append(("roll_campaign", f"no campaign {rc.roll_campaign!r} to roll to"))
    problems += [(f"roll_targets[{k}]", f"no campaign {t!r} to roll to")
                 for k, t in enumerate(rc.roll_targets) if t not in campaigns]
    names = [f.name for f in rc.fields]
    for k, f in enumerate(rc.fields):
        if names.index(f.name) != k:
            problems.append((f"fields[{k}].name", f"duplicate field {f.name!r}"))
        if (f.type == "choice") != bool(f.choices):
            problems.append((f"fields[{k}].choices",
                             "choice fields need choices; other types take none"))
    problems += _reopen_problems(rc) + _report_problems(rc)
    if rc.ignore_budgets and rc.action != "callback":
        problems.append(("ignore_budgets", f"a {rc.action} code sets no callback; only "
                         "callback codes take ignore_budgets"))
    if rc.reminder is False and rc.reminder_min is not None:
        problems.append(("reminder_min",
                         "reminder = false asks for no reminder; drop reminder_min"))
    return problems


#: the field roles each kind of report code must have, and those it may have
_REPORT_ROLES = {"quote": (("value", "chance", "expected"), ("value", "chance", "expected")),
                 "won": (("reason",), ("value", "reason")),
                 "lost": (("reason",), ("value", "reason"))}


def _report_problems(rc: ResultCodeCfg) -> list[tuple[str, str]]:
    """A code's ``report`` and its fields' ``report`` roles: each role once, on a field
    of its type, allowed by the code's kind; the roles the kind needs all present."""
    if rc.report is None:
        return [(f"fields[{k}].report", "only a code with report = \"quote\", \"won\" or "
                 "\"lost\" gives its fields a report role")
                for k, f in enumerate(rc.fields) if f.report is not None]
    needed, allowed = _REPORT_ROLES[rc.report]
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for k, f in enumerate(rc.fields):
        if f.report is None:
            continue
        if f.report not in allowed:
            problems.append((f"fields[{k}].report", f"a {rc.report} code's fields take the "
                             f"roles {', '.join(allowed)}, not {f.report}"))
        elif f.type != FIELD_ROLES[f.report]:
            problems.append((f"fields[{k}].report", f"the {f.report} of a report must be "
                             f"a {FIELD_ROLES[f.report]} field, not {f.type}"))
        elif f.report in seen:
            problems.append((f"fields[{k}].report", f"a second {f.report} field"))
        seen.add(f.report)
    missing = [r for r in needed if r not in seen]
    if missing:
        problems.append(("report", f"a {rc.report} code needs fields with report = "
                         + " and ".join(f'"{m}"' for m in missing)))
    return problems

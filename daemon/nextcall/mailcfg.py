"""What the e-mails nextcall sends say: the address type config files use, and the callback
reminder template (``[campaigns.X.reminder_email]``) with its placeholders and rendering.

A template is plain text with ``{name}`` placeholders (``{{`` and ``}}`` for braces).
Placeholders are checked when the config is loaded, so a typo is a ``check-config``
problem with its key path rather than a broken e-mail at 9 in the morning; rendering
cannot fail. Times come in two zones: the recipient's (``[agents.NAME] timezone``, else
the zone the callback was set in) and the callee's (the record's), because an agent in
Lisbon calling a donor in Amsterdam needs both.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator

_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


def _email(v: str) -> str:
    if not _EMAIL.match(v):
        raise ValueError(f"{v!r} is not an e-mail address (name@example.com)")
    return v


EmailText = Annotated[str, AfterValidator(_email)]

#: every placeholder a reminder template may use, with what it stands for (docs list them)
PLACEHOLDERS: dict[str, str] = {
    "agent": "the recipient (agent name)",
    "record": "the record's id",
    "campaign": "the record's campaign",
    "list": "the record's contact list",
    "owner": "the callback's owner (empty for a team callback)",
    "team": "the callback's team",
    "for": "the owner, or 'team NAME'",
    "scope": "the callback's scope",
    "code": "the result code that set the callback",
    "reason": "the reason the agent gave",
    "contact_priority": "the callback's contact priority",
    "minutes": "minutes until the callback",
    "utc": "the callback instant in UTC (ISO 8601)",
    "local": "the callback time in the recipient's zone (ISO 8601 with offset)",
    "local_date": "its date (YYYY-MM-DD) in the recipient's zone",
    "local_time": "its time (HH:MM) in the recipient's zone",
    "timezone": "the recipient's zone",
    "callee_local": "the callback time in the callee's zone (ISO 8601 with offset)",
    "callee_date": "its date in the callee's zone",
    "callee_time": "its time in the callee's zone",
    "callee_timezone": "the callee's zone (the record's)",
}
#: ``{data.KEY}``: a field of the record's data (empty when the record has none)
DATA_PREFIX = "data."

DEFAULT_SUBJECT = "Callback reminder: {record} at {local}"
DEFAULT_BODY = """\
Hello {agent},

you have a callback in {minutes} minutes.

Record:    {record} (campaign {campaign})
When:      {local} ({timezone})
Callee:    {callee_local} ({callee_timezone})
UTC:       {utc}
For:       {for} ({scope})
Reason:    {reason}

-- nextcall
"""


def check_template(text: str) -> str:
    """``text`` if every placeholder is known and plain.

    Raises:
        ValueError: unbalanced braces, an unknown name, or a format spec or conversion
            (``{x:>5}``, ``{x!r}``), which templates do not take.
    """
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
    for _, name, spec, conv in parts:
        if name is None:
            continue
        if spec or conv:
            raise ValueError(f"placeholder {{{name}}} takes no format or conversion")
        if name not in PLACEHOLDERS and not (
                name.startswith(DATA_PREFIX) and len(name) > len(DATA_PREFIX)):
            raise ValueError(f"unknown placeholder {{{name}}}; known: "
                             f"{', '.join(PLACEHOLDERS)}, data.KEY")
    return text


class ReminderEmailCfg(BaseModel):
    """``[campaigns.X.reminder_email]``: subject and body of the callback reminder e-mail
    (both default to the shipped template)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str = DEFAULT_SUBJECT
    body: str = DEFAULT_BODY

    @field_validator("subject", "body")
    @classmethod
    def _known(cls, v: str) -> str:
        return check_template(v)


#: the template of campaigns that set none
DEFAULT_REMINDER_EMAIL = ReminderEmailCfg()


def render(text: str, values: Mapping[str, object], data: Mapping[str, Any]) -> str:
    """Fill a checked template: ``values`` by name, ``data.KEY`` from ``data``; a missing
    value is empty (a record without that data field)."""
    out: list[str] = []
    for literal, name, _, _ in string.Formatter().parse(text):
        out.append(literal)
        if name is None:
            continue
        if name.startswith(DATA_PREFIX):
            out.append(_text(data.get(name[len(DATA_PREFIX):])))
        else:
            out.append(_text(values.get(name)))
    return "".join(out)


def subject_line(text: str) -> str:
    """A rendered subject as one header line (record data may hold line breaks)."""
    return " ".join(text.split())


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return orjson.dumps(value).decode()


def zoned(at: float, tz: str) -> tuple[str, str, str]:
    """``at`` in zone ``tz``: ISO 8601 with offset, date, and HH:MM."""
    t = datetime.fromtimestamp(at, ZoneInfo(tz))
    return t.isoformat(timespec="seconds"), t.strftime("%Y-%m-%d"), t.strftime("%H:%M")

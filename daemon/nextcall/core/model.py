"""Campaign settings and result codes as the core sees them: frozen, validated elsewhere.

``nextcall.config`` turns TOML into these; the core trusts them. Keeping them plain
dataclasses keeps pydantic (and its import time) out of the pure core. The actions a code
may take are the keys of ``nextcall.core.actions.RULES``, which also says what each does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time

CALLBACK_SCOPES = ("personal", "personal_then_team", "team", "anyone")
DIAL_STATUSES = ("person", "no_answer", "busy", "intercept", "drop", "machine", "fax")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: reminder lead of a callback code that asks for a reminder without saying when
DEFAULT_REMINDER_MIN = 15


@dataclass(frozen=True, slots=True)
class Interval:
    """A local wall-clock interval [start, end) within one day; end may be 24:00."""

    start_min: int
    end_min: int

    @staticmethod
    def parse(text: str) -> Interval:
        """Parse ``"HH:MM-HH:MM"``.

        Raises:
            ValueError: malformed text, or end not after start.
        """
        try:
            a, b = text.split("-")
            start = _minutes(a)
            end = _minutes(b)
        except (ValueError, AttributeError):
            raise ValueError(f"expected 'HH:MM-HH:MM', got {text!r}") from None
        if not 0 <= start < end <= 24 * 60:
            raise ValueError(f"interval {text!r} must have start < end within 00:00-24:00")
        return Interval(start, end)

    def __str__(self) -> str:
        return f"{self.start_min // 60:02d}:{self.start_min % 60:02d}-" \
               f"{self.end_min // 60:02d}:{self.end_min % 60:02d}"


def _minutes(text: str) -> int:
    hh, mm = text.strip().split(":")
    if len(hh) != 2 or len(mm) != 2:
        raise ValueError(text)
    h, m = int(hh), int(mm)
    if h == 24 and m == 0:
        return 24 * 60
    time(h, m)  # range check
    return h * 60 + m


#: scoring modes: the address score alone, or plus priority x expected value
MODE_ADDRESS = "address"
MODE_EXPECTED_VALUE = "expected_value"
SCORING_MODES = (MODE_ADDRESS, MODE_EXPECTED_VALUE)


@dataclass(frozen=True, slots=True)
class Scoring:
    """Weights of the pool score (see ``nextcall.core.scoring``)."""

    priority: float = 100.0
    contact: float = 5.0
    attempt: float = -1.0
    max_attempt_penalty: int = 10
    #: ``address`` or ``expected_value``
    mode: str = MODE_ADDRESS
    #: expected-value mode: where the quote's value and chance (%) are read,
    #: ``"data.KEY"`` (the record's data at import) or ``"fields.NAME"`` (a disposition's
    #: typed fields); an empty chance field means 100 %
    value_field: str = ""
    chance_field: str = ""
    #: points of score per unit of priority-weighted expected value
    value: float = 1.0


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A typed extra field a result code asks for (quote value, probability, ...)."""

    name: str
    type: str
    required: bool = False
    label: str = ""
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    #: what the field is to reports (``core.reports.FIELD_ROLES``): a quote's value,
    #: chance % or expected order date, an order's value or its won/lost reason
    report: str | None = None

    def to_json(self) -> dict[str, object]:
        """What an agent screen needs to draw the input."""
        return {"name": self.name, "type": self.type, "required": self.required,
                "label": self.label or self.name, "choices": list(self.choices),
                "min": self.min, "max": self.max}


@dataclass(frozen=True, slots=True)
class ResultCode:
    """One result code of a campaign's set (docs/result-codes.md)."""

    code: str
    description: str
    action: str
    enabled: bool = True
    category: str = "open"
    dial_status: str = "person"
    contact: bool = False
    presentation: bool = False
    success: bool = False
    revenue: str = "none"
    note: str = "none"
    contact_priority: int = 1
    #: retry: delay before the record is due again; ``delays_s[k]`` applies after attempt
    #: k+1 (the last entry repeats), falling back to ``delay_s``.
    delay_s: int = 0
    delays_s: tuple[int, ...] = ()
    #: callback: default scope, and how many minutes before the callback its recipients
    #: are reminded (None: no reminder; config ``reminder = true`` means
    #: ``DEFAULT_REMINDER_MIN``).
    scope: str = "personal_then_team"
    reminder_min: int | None = None
    #: callback: whether the agent may give the callback to another agent
    #: (``callback.owner``); off, the callback is the disposing agent's or its team's
    allow_assign: bool = True
    #: roll (the action or the effect): target campaign and list; ``roll_targets``: the
    #: campaigns the agent may choose from in ``dispose.campaign`` (``roll_campaign``, when
    #: set, is the default)
    roll_campaign: str | None = None
    roll_list: str | None = None
    roll_targets: tuple[str, ...] = ()
    #: what the code adds to its action (``nextcall.core.effects.EFFECTS``), in config order
    effects: tuple[str, ...] = ()
    #: special: teams whose members may reopen the record (by scheduling a callback)
    reopen_teams: tuple[str, ...] = ()
    #: roles that may reopen a record this code closed (``core.reopening``); config fills
    #: in the action's default, and leaves it empty for codes that never close a record
    reopen_roles: tuple[str, ...] = ()
    #: typed extra fields the agent fills in
    fields: tuple[FieldSpec, ...] = ()
    #: e-mail addresses told of every committed disposition with this code
    notify: tuple[str, ...] = ()
    #: what a disposition with this code is to reports: a ``quote``, an order ``won`` or
    #: ``lost`` (``core.reports.KINDS``); its fields say which carries what
    report: str | None = None
    #: callback codes: the callback is handed out whatever the campaign's attempt budgets
    #: say (the callee asked for the call)
    ignore_budgets: bool = False

    def retry_delay_s(self, attempts: int) -> int:
        """Delay after the ``attempts``-th attempt (1-based)."""
        if self.delays_s:
            return self.delays_s[min(attempts, len(self.delays_s)) - 1]
        return self.delay_s


@dataclass(frozen=True, slots=True)
class Budgets:
    """A campaign's attempt budgets, checked at hand-out (``nextcall.core.budgets``).

    Every hand-out is an attempt. ``None`` (or 0 for the gap) turns a budget off. Record
    budgets count the hand-outs of the record, number budgets those of the number to be
    dialled; a local day is a day in the record's timezone.
    """

    record_per_day: int | None = None
    record_per_24h: int | None = None
    #: at most ``record_per_days`` hand-outs within any ``record_days`` x 24 h
    record_days: int = 7
    record_per_days: int | None = None
    number_per_day: int | None = None
    number_per_24h: int | None = None
    #: the least time between two hand-outs of one number
    number_gap_s: int = 0

    @property
    def horizon_s(self) -> float:
        """How far back an attempt can still count (local days are at most 25 h)."""
        days = self.record_days if self.record_per_days is not None else 1
        return max(days * 86_400.0, 25 * 3600.0, float(self.number_gap_s))


@dataclass(frozen=True, slots=True)
class Campaign:
    """A campaign's settings; one immutable object per config generation."""

    name: str
    codes: dict[str, ResultCode]
    #: per weekday (0=Monday) the local intervals in which calls may be placed
    window: tuple[tuple[Interval, ...], ...]
    legal_window: Interval = Interval(8 * 60, 21 * 60)
    holidays: frozenset[date] = frozenset()
    max_attempts: int = 10
    lease_s: int = 300
    grace_s: int = 900
    timezone: str = "UTC"
    scoring: Scoring = field(default_factory=Scoring)
    enabled: bool = True
    description: str = ""
    #: the largest ``count`` of a ``next`` drawing from this campaign; None: only the
    #: daemon's limit applies
    max_count: int | None = None
    #: an agent logged in to the campaign may give an open record nobody has leased a
    #: callback (``callback.schedule`` with ``agent``): "viewing a donor record"
    agent_schedule: bool = False
    #: how long the agent who disposed may amend its own disposition (seconds)
    amend_grace_s: int = 600
    #: attempt budgets at hand-out time; None: none (nothing is counted)
    budgets: Budgets | None = None

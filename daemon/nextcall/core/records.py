"""Records, leases and their states.

The engine keeps every open record as columns (``nextcall.core.engine``); a ``Record`` is
a value: one record's fields gathered for a decision, an answer or a test, and handed
back to the engine to store. Free data (``data``) and numbers are carried as the raw JSON
the database holds where possible, so an answer embeds them verbatim.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import orjson

if TYPE_CHECKING:
    from .audit import LeaseAudit

READY = "ready"
CALLBACK = "callback"
LEASED = "leased"
HELD = "held"
RESOLUTION = "resolution"
CLOSED = "closed"
STATES = (READY, CALLBACK, LEASED, HELD, RESOLUTION, CLOSED)

CLOSE_REASONS = ("final", "until_reload", "dnc", "special", "exhausted", "no_numbers",
                 "admin")

PHONE_ACTIVE = "active"
PHONE_REMOVED = "removed"
PHONE_BLOCKED = "blocked"
PHONE_DNC = "dnc"
PHONE_STATUSES = (PHONE_ACTIVE, PHONE_REMOVED, PHONE_BLOCKED, PHONE_DNC)


@dataclass(slots=True)
class CallbackIntent:
    """A promised call: who, when (wall clock in ``timezone``), how urgent."""

    at: float
    timezone: str
    local: str
    scope: str
    owner: str | None
    team: str | None
    contact_priority: int
    reason: str = ""
    override_window: bool = False
    code: str = ""
    #: remind the recipients this many minutes before ``at``; None: no reminder. Fixed
    #: when the callback is set (from its result code), so a config reload does not move
    #: reminders of callbacks already promised.
    reminder_min: int | None = None
    #: a callback window's end (``at`` is its start): the callback rises in priority as
    #: the end nears, and once it has passed unserved it escalates (``core.windows``);
    #: None: a callback at one instant
    until: float | None = None
    #: ``until`` as local ISO time in ``timezone``
    until_local: str = ""
    #: handed out whatever the campaign's attempt budgets say (from its result code)
    ignore_budgets: bool = False

    @property
    def deadline(self) -> float:
        """The instant the promise is broken if nobody has called: the window's end, or
        the promised instant itself."""
        return self.at if self.until is None else self.until

    def to_json(self) -> dict[str, object]:
        """The stored and wire form."""
        return {
            "at": self.at, "timezone": self.timezone, "local": self.local,
            "scope": self.scope, "owner": self.owner, "team": self.team,
            "contact_priority": self.contact_priority, "reason": self.reason,
            "override_window": self.override_window, "code": self.code,
            "reminder_min": self.reminder_min, "until": self.until,
            "until_local": self.until_local, "ignore_budgets": self.ignore_budgets,
        }

    @staticmethod
    def from_json(d: dict[str, object]) -> CallbackIntent:
        """Inverse of ``to_json`` (stored intents lacking newer keys get their defaults)."""
        if len(d) == len(_INTENT_KEYS) and d.keys() == _INTENT_KEYS \
                and type(d["at"]) is float:
            return CallbackIntent(**d)  # type: ignore[arg-type]
        return CallbackIntent(
            at=float(d["at"]),  # type: ignore[arg-type]
            timezone=str(d["timezone"]), local=str(d.get("local", "")),
            scope=str(d["scope"]), owner=d.get("owner"), team=d.get("team"),  # type: ignore[arg-type]
            contact_priority=int(d.get("contact_priority", 1)),  # type: ignore[call-overload]
            reason=str(d.get("reason", "")),
            override_window=bool(d.get("override_window", False)),
            code=str(d.get("code", "")),
            reminder_min=None if d.get("reminder_min") is None
            else int(d["reminder_min"]),  # type: ignore[call-overload]
            until=None if d.get("until") is None
            else float(d["until"]),  # type: ignore[arg-type]
            until_local=str(d.get("until_local") or ""),
            ignore_budgets=bool(d.get("ignore_budgets", False)),
        )


_INTENT_KEYS = frozenset(("at", "timezone", "local", "scope", "owner", "team",
                          "contact_priority", "reason", "override_window", "code",
                          "reminder_min", "until", "until_local", "ignore_budgets"))


class Quote(NamedTuple):
    """A record's quote: its value and the chance (0-100 %) that it becomes an order
    (``nextcall.core.scoring`` turns it into the expected value)."""

    value: float
    chance: float = 100.0

    @property
    def expected_value(self) -> float:
        """``value * chance / 100``."""
        return self.value * self.chance / 100.0


class Record:
    """One contact record's fields, as a value.

    ``id``, ``list``, ``data`` and ``team`` of a pool record are not kept in memory; a
    record the engine hands out has them filled in from the database before anyone sees
    it (``None`` until then). ``slot`` names where the engine holds it, ``score`` is its
    address score and ``lease`` its live lease, if any. ``quote`` feeds the
    expected-value score of campaigns that use it.
    """

    __slots__ = ("rid", "id", "campaign", "list", "phones", "timezone", "priority", "data",
                 "state", "reason", "due_at", "attempts", "owner", "team", "best_cp",
                 "phone_idx", "callback", "score", "lease", "slot", "quote")

    def __init__(self, rid: int, id: str | None, campaign: str, list: str | None,
                 phones: list[list[str]] | str, timezone: str, priority: int,
                 data: str | None,
                 state: str = READY, reason: str | None = None, due_at: float = 0.0,
                 attempts: int = 0, owner: str | None = None, team: str | None = None,
                 best_cp: int = 0, phone_idx: int = 0,
                 callback: CallbackIntent | None = None,
                 quote: Quote | None = None) -> None:
        self.rid = rid
        self.id = id
        self.campaign = campaign
        self.list = list
        #: ordered [number, status] pairs (or their JSON text until first use)
        self.phones: builtins.list[builtins.list[str]] | str = phones
        self.timezone = timezone
        self.priority = priority
        self.data = data
        self.state = state
        self.reason = reason
        self.due_at = due_at
        self.attempts = attempts
        self.owner = owner
        self.team = team
        self.best_cp = best_cp
        self.phone_idx = phone_idx
        self.callback = callback
        self.quote = quote
        self.score = 0.0
        self.lease: Lease | None = None
        #: which structure holds the live entry (for invariants and stats)
        self.slot = ""

    def phone_list(self) -> builtins.list[builtins.list[str]]:
        """The numbers as ``[[e164, status], ...]``; a rebuild leaves them as raw JSON
        text, parsed here on first use so a million-record start does no parsing."""
        phones = self.phones
        if isinstance(phones, str):
            phones = self.phones = orjson.loads(phones)
        return phones

    def callable_phone(self, listed: dict[str, str] | None = None,
                       start: int | None = None) -> tuple[int, str] | None:
        """The number to dial next: the first active one from ``phone_idx`` (or
        ``start``) on, cyclic, that is not on the DNC or block list (``listed``)."""
        phones = self.phone_list()
        n = len(phones)
        first = self.phone_idx if start is None else start
        for k in range(n):
            i = (first + k) % n
            number, status = phones[i]
            if status == PHONE_ACTIVE and (not listed or number not in listed):
                return i, number
        return None

    def snapshot(self) -> tuple[object, ...]:
        """The durable fields as one tuple (state comparisons in tests and checks)."""
        return (self.state, self.reason, self.due_at, self.attempts, self.owner, self.team,
                self.best_cp, self.phone_idx, self.callback, self.campaign, self.list,
                [list(p) for p in self.phone_list()])


class Lease:
    """A record handed to one requester until ``expires_at``.

    The token is ``"<lid>.<secret>"``: the numeric part finds the lease, the secret proves
    the holder has it (fencing: a disposition must quote it).
    """

    __slots__ = ("lid", "secret", "record", "agent", "uid", "issued_at", "expires_at",
                 "phone", "phone_idx", "reason", "ver", "audit")

    def __init__(self, lid: int, secret: str, record: Record, agent: str, uid: int,
                 issued_at: float, expires_at: float, phone: str, phone_idx: int,
                 reason: str, audit: LeaseAudit | None = None) -> None:
        self.lid = lid
        self.secret = secret
        self.record = record
        self.agent = agent
        self.uid = uid
        self.issued_at = issued_at
        self.expires_at = expires_at
        self.phone = phone
        self.phone_idx = phone_idx
        self.reason = reason
        self.ver = 0
        #: the facts that allowed the hand-out (None for leases restored at a rebuild:
        #: their facts are in the database)
        self.audit = audit

    @property
    def token(self) -> str:
        """The token the holder quotes."""
        return f"{self.lid}.{self.secret}"

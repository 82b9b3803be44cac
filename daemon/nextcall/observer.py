"""What the service reports as it works: hand-outs, dispositions, expiries, reminders.

The metrics implement it (``metrics/families.py``); the default ignores everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .core.model import ResultCode
from .core.records import CallbackIntent, Lease


@dataclass(frozen=True, slots=True)
class Disposed:
    """A committed disposition of a code that asks to be told of (``notify``): what the
    e-mail says, gathered before the engine moves on, so a later change to the record
    cannot alter it."""

    rid: int
    lid: int
    #: id and list as the lease read them (None: not read; the database has them)
    record: str | None
    campaign: str
    list: str | None
    #: the record's data as stored (JSON text)
    data: str | None
    code: ResultCode
    agent: str
    at: float
    state: str
    #: the record's own zone (the callee's)
    timezone: str
    #: hold: the appointment instant and the zone it was given in
    appointment_at: float | None = None
    appointment_tz: str | None = None
    callback: CallbackIntent | None = None
    note: str | None = None
    fields: dict[str, object] = field(default_factory=dict)


class Observer:
    """What the service reports as it works (metrics implement it); this one ignores
    everything. Called synchronously on the event loop: be quick, never raise."""

    def next_answered(self, seconds: float, leases: list[Lease]) -> None:
        """A ``next`` was answered with ``leases`` (maybe none) after ``seconds`` of work,
        long-poll waiting excluded."""

    def disposed(self, campaign: str, code: str) -> None:
        """A disposition with ``code`` was committed (a retried duplicate is not)."""

    def amended(self, campaign: str, from_code: str, to_code: str) -> None:
        """A committed disposition's code ``from_code`` was replaced by ``to_code``."""

    def leases_expired(self, leases: list[Lease]) -> None:
        """``leases`` ran out without a disposition and were ended."""

    def reminder_sent(self, channel: str) -> None:
        """A callback reminder went out on ``channel`` (``event``: to at least one
        subscribed connection; ``email``: accepted by the SMTP server)."""

    def reminder_failed(self, channel: str) -> None:
        """A callback reminder could not be delivered on ``channel`` (``email``: the SMTP
        server was unreachable or refused it; ``scheduler``: its job failed)."""

    def notification_sent(self, channel: str) -> None:
        """A result code's ``notify`` e-mail was accepted by the SMTP server."""

    def notification_failed(self, channel: str) -> None:
        """A result code's ``notify`` e-mail could not be sent (``email``: SMTP
        unreachable or refused it; ``error``: a bug while building it)."""

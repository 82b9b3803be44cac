"""What the service reports as it works: hand-outs, dispositions, expiries, reminders.

The metrics implement it (``metrics/families.py``); the default ignores everything.
"""

from __future__ import annotations

from .core.records import Lease


class Observer:
    """What the service reports as it works (metrics implement it); this one ignores
    everything. Called synchronously on the event loop: be quick, never raise."""

    def next_answered(self, seconds: float, leases: list[Lease]) -> None:
        """A ``next`` was answered with ``leases`` (maybe none) after ``seconds`` of work,
        long-poll waiting excluded."""

    def disposed(self, campaign: str, code: str) -> None:
        """A disposition with ``code`` was committed (a retried duplicate is not)."""

    def leases_expired(self, leases: list[Lease]) -> None:
        """``leases`` ran out without a disposition and were ended."""

    def reminder_sent(self, channel: str) -> None:
        """A callback reminder went out on ``channel`` (``event``: to at least one
        subscribed connection; ``email``: accepted by the SMTP server)."""

    def reminder_failed(self, channel: str) -> None:
        """A callback reminder could not be delivered on ``channel`` (``email``: the SMTP
        server was unreachable or refused it; ``scheduler``: its job failed)."""

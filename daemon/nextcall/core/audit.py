"""The facts that allowed a hand-out, kept with its lease so a disputed call can be
justified months later: the callee's local time and zone, the calling and legal windows
in force that day, the attempt counts against their cap, the versions of the DNC and
block lists the number was checked against, and the selection reason (the lease's own
``reason``).

Computed from what the engine holds at hand-out (no read): one local-time conversion and
a few string joins per lease.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from . import calendar
from .model import Campaign

#: what ``window`` says when a callback's ``override_window`` lifted the calling window
OVERRIDDEN = "override"


class LeaseAudit(NamedTuple):
    """The facts of one hand-out (all as they were at ``issued_at``)."""

    #: local ISO time with offset, and the IANA zone it is in
    local_at: str
    zone: str
    #: the calling window of that local weekday ("09:00-12:00,13:00-21:00"; "" closed;
    #: ``override`` when the callback lifted it) and the legal window
    call_window: str
    legal_window: str
    #: the record's attempts before this call, and the campaign's max_attempts
    attempts: int
    max_attempts: int
    #: versions of the DNC and block lists (each change to a list adds one)
    dnc_version: int
    block_version: int


def audit_of(camp: Campaign, tz_key: str, now: float, attempts: int, override: bool,
             versions: dict[str, int]) -> LeaseAudit:
    """The audit facts of a hand-out of a record in zone ``tz_key`` at ``now``."""
    local = datetime.fromtimestamp(now, calendar.zone(tz_key))
    window = OVERRIDDEN if override else ",".join(map(str, camp.window[local.weekday()]))
    return LeaseAudit(local.isoformat(timespec="seconds"), tz_key, window,
                      str(camp.legal_window), attempts, camp.max_attempts,
                      versions.get("dnc", 0), versions.get("block", 0))

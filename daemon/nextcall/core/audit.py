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
from .model import Campaign, Interval

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
    local, weekday = local_second(now, tz_key)
    window = OVERRIDDEN if override else _text(camp.window[weekday])
    return LeaseAudit(local, tz_key, window, _text((camp.legal_window,)), attempts,
                      camp.max_attempts, versions.get("dnc", 0), versions.get("block", 0))


#: (zone, minute since the epoch) -> (local ISO text up to the minute, offset text,
#: weekday); None for a minute in which the zone's offset changes
_MINUTES: dict[tuple[str, int], tuple[str, str, int] | None] = {}
_TEXTS: dict[tuple[Interval, ...], str] = {}
_CACHE_MAX = 4096


def local_second(now: float, tz_key: str) -> tuple[str, int]:
    """``now`` in zone ``tz_key`` as ISO 8601 to the second with its offset (as
    ``datetime.isoformat(timespec="seconds")`` gives it), and its weekday (Monday 0).

    Every hand-out asks, so the text of the minute is kept per zone: a minute whose
    first and last second have one offset is the same but for its seconds; a minute in
    which the offset changes is computed in full each time."""
    sec = int(now // 1)
    key = (tz_key, sec // 60)
    if key in _MINUTES:
        hit = _MINUTES[key]
    else:
        if len(_MINUTES) >= _CACHE_MAX:
            _MINUTES.clear()
        tz = calendar.zone(tz_key)
        first = datetime.fromtimestamp(key[1] * 60, tz)
        last = datetime.fromtimestamp(key[1] * 60 + 59, tz)
        text = first.isoformat(timespec="seconds")
        hit = _MINUTES[key] = (text[:17], text[19:], first.weekday()) \
            if first.utcoffset() == last.utcoffset() else None
    if hit is None:
        t = datetime.fromtimestamp(sec, calendar.zone(tz_key))
        return t.isoformat(timespec="seconds"), t.weekday()
    return f"{hit[0]}{sec % 60:02d}{hit[1]}", hit[2]


def _text(intervals: tuple[Interval, ...]) -> str:
    """A day's intervals as config writes them, comma-separated ("" for none)."""
    text = _TEXTS.get(intervals)
    if text is None:
        if len(_TEXTS) >= _CACHE_MAX:
            _TEXTS.clear()
        text = _TEXTS[intervals] = ",".join(map(str, intervals))
    return text

"""Calling windows in the record's own local time, DST-safe.

All instants are POSIX seconds (UTC). Local time exists only here: a window is a set of
local wall-clock intervals per weekday, intersected with the legal window that nothing
overrides, minus holidays (which nothing overrides either: a holiday is a legal matter in
most jurisdictions, so ``override_window`` does not reach it).

``window_state`` answers "open now?" together with the instant until which that answer
holds, so callers can cache it per (campaign, timezone) and wake exactly at a change.
Between two DST transitions local time is a linear function of the instant, so a
boundary's instant is exact; when a transition lies between now and the boundary the
answer is only promised up to the transition, after which it is recomputed from the
real local time. That makes gaps and folds correct by construction: the window follows
the wall clock the callee sees.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import BadRequest, InvalidTime
from .model import Campaign, Interval

_FULL_DAY = (Interval(0, 24 * 60),)
_SEARCH_DAYS = 400
#: offsets are sampled this often between now and a boundary to find DST transitions
#: (transitions are months apart; two within one day do not occur in the tz database)
_SAMPLE_S = 86_400.0
UTC = UTC
#: the instants a requested date-time may name: what follows from one (a calling-window
#: search up to ``_SEARCH_DAYS`` ahead, local times in any zone) must stay inside the
#: years 1-9999 that ``datetime`` can represent
MIN_INSTANT = datetime(1, 1, 2, tzinfo=UTC).timestamp()
MAX_INSTANT = datetime(9998, 1, 1, tzinfo=UTC).timestamp()
_RANGE = "date-times must lie between 0001-01-02T00:00:00Z and 9998-01-01T00:00:00Z"


@lru_cache(maxsize=1024)
def _zone(key: str) -> ZoneInfo:
    return ZoneInfo(key)


def zone(key: str, field: str = "timezone") -> ZoneInfo:
    """The ``ZoneInfo`` for an IANA key.

    Raises:
        BadRequest: unknown or malformed key (naming ``field``).
    """
    try:
        return _zone(key)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise BadRequest(f"unknown timezone {key!r}", field=field) from None


def day_intervals(campaign: Campaign, day: date, override: bool) -> list[tuple[int, int]]:
    """Local minute intervals of ``day`` in which a call may be placed.

    ``override`` (the shift-worker callback) lifts the campaign's weekday window but never
    the legal window nor holidays.
    """
    if day in campaign.holidays:
        return []
    base = _FULL_DAY if override else campaign.window[day.weekday()]
    legal = campaign.legal_window
    out = []
    for iv in base:
        a, b = max(iv.start_min, legal.start_min), min(iv.end_min, legal.end_min)
        if a < b:
            out.append((a, b))
    return out


def wall_instant(day: date, minute: int, tz: ZoneInfo) -> float:
    """Instant of local wall time ``minute`` on ``day`` (first occurrence; gaps shift
    forward by the gap length, which is what ``fold=0`` gives)."""
    if minute >= 24 * 60:
        day = day + timedelta(days=1)
        minute -= 24 * 60
    return datetime(day.year, day.month, day.day, minute // 60, minute % 60,
                    tzinfo=tz).timestamp()


def _first_transition(lo: float, hi: float, tz: ZoneInfo) -> float:
    """First whole second in (lo, hi] whose UTC offset differs from ``lo``'s."""
    base = datetime.fromtimestamp(lo, tz).utcoffset()
    a, b = int(lo), int(hi) + 1
    while b - a > 1:
        mid = (a + b) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == base:
            a = mid
        else:
            b = mid
    return float(b)


def window_state(campaign: Campaign, tz: ZoneInfo, now: float,
                 override: bool = False) -> tuple[bool, float]:
    """Whether a call may be placed at ``now`` and until when that holds.

    The second element is always > ``now``; ``inf`` when the window never opens again
    within the search horizon (400 days), which callers treat as "closed for good until
    the config changes".
    """
    local = datetime.fromtimestamp(now, tz)
    today = local.date()
    sod = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    is_open = False
    boundary: tuple[date, int] | None = None
    for a, b in day_intervals(campaign, today, override):
        if a * 60 <= sod < b * 60:
            is_open, boundary = True, (today, b)
            break
        if a * 60 > sod:
            boundary = (today, a)
            break
    if boundary is None:
        for k in range(1, _SEARCH_DAYS):
            day = today + timedelta(days=k)
            ivs = day_intervals(campaign, day, override)
            if ivs:
                boundary = (day, ivs[0][0])
                break
    if boundary is None:
        return is_open, float("inf")
    until = wall_instant(boundary[0], boundary[1], tz)
    base = local.utcoffset()
    lo = now
    while lo < until:
        hi = min(lo + _SAMPLE_S, until)
        if datetime.fromtimestamp(hi, tz).utcoffset() != base:
            until = _first_transition(lo, hi, tz)
            break
        lo = hi
    if until <= now:
        until = now + 1.0
    return is_open, until


def is_callable_at(campaign: Campaign, tz: ZoneInfo, instant: float, override: bool) -> bool:
    """Whether ``instant`` falls inside the (possibly overridden) window."""
    return window_state(campaign, tz, instant, override)[0]


def legal_at(campaign: Campaign, tz: ZoneInfo, instant: float) -> bool:
    """Whether ``instant`` is inside the legal window on a non-holiday."""
    return window_state(campaign, tz, instant, True)[0]


def resolve_local(text: str, tz_key: str, field: str = "at", *, bounded: bool = True
                  ) -> float:
    """Turn a requested time into an instant, keeping the caller's wall-clock intent.

    ``text`` is ISO 8601. Without an offset it is wall time in ``tz_key``: a time inside a
    DST gap does not exist and is refused (``invalid_time``), never shifted silently; a
    time inside a fold (it happens twice) means the first occurrence unless the offset is
    given explicitly. With an offset it is an absolute instant. ``bounded``: the instant
    must lie in [``MIN_INSTANT``, ``MAX_INSTANT``] (anything to be scheduled); a mere
    bound of a search (``callbacks`` ``from``/``to``) need only be representable.

    Raises:
        BadRequest: unparsable text, unknown timezone, or a date-time out of range (one
            that falls outside the years 1-9999 once converted to UTC, or outside the
            bounds).
        InvalidTime: the wall time does not exist in that zone.
    """
    tz = zone(tz_key, field.rsplit(".", 1)[0] + ".timezone" if "." in field else "timezone")
    try:
        dt = datetime.fromisoformat(text)
    except (ValueError, TypeError):
        raise BadRequest(f"{field} must be an ISO 8601 date-time, got {text!r}",
                         field=field) from None
    out_of_range = f"{field} {text} is out of range in {tz_key}: {_RANGE}"
    try:
        at, wall = _instant(dt, tz)
    except (OverflowError, ValueError, OSError):
        # the conversion left the years datetime can represent
        raise BadRequest(out_of_range, field=field) from None
    if bounded and not MIN_INSTANT <= at <= MAX_INSTANT:
        raise BadRequest(out_of_range, field=field)
    if wall is not None and wall != dt:
        raise InvalidTime(f"{text} does not exist in {tz_key} (clocks skip it for DST); "
                          "choose a time outside the gap", field=field)
    return at


def _instant(dt: datetime, tz: ZoneInfo) -> tuple[float, datetime | None]:
    """``dt`` as POSIX seconds, read as wall time in ``tz`` when it has no offset (the
    first occurrence in a fold), with the wall time that instant has in ``tz`` (``None``
    for an absolute ``dt``): it differs from ``dt`` when ``dt`` falls in a DST gap.

    Raises:
        OverflowError, ValueError, OSError: the instant, or its wall time in ``tz``, is
            outside the years 1-9999.
    """
    if dt.tzinfo is not None:
        return dt.timestamp(), None
    at = dt.replace(tzinfo=tz, fold=0).timestamp()
    return at, datetime.fromtimestamp(at, tz).replace(tzinfo=None)


def local_iso(instant: float, tz_key: str) -> str:
    """The instant as local ISO time with offset, for answers people read."""
    return datetime.fromtimestamp(instant, zone(tz_key)).isoformat(timespec="seconds")


def utc_iso(instant: float) -> str:
    """The instant as UTC ISO time with ``Z`` (whole seconds; on every answer, so cheap)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(instant))


# ---------------------------------------------------------------- local days (reports)

def local_day(at: float, timezone: str) -> str:
    """The local date (``YYYY-MM-DD``) of instant ``at`` in ``timezone``."""
    return datetime.fromtimestamp(at, _zone(timezone)).date().isoformat()


def day_bounds(first: date, last: date, timezone: str) -> tuple[float, float]:
    """The instants where local day ``first`` begins and the day after ``last`` begins.
    A midnight that does not exist (a DST change at 00:00) resolves with the offset
    before the change, which is the first instant of that day."""
    tz = _zone(timezone)
    return wall_instant(first, 0, tz), wall_instant(last + timedelta(days=1), 0, tz)


def _offset(tz: ZoneInfo, at: float) -> int:
    off = datetime.fromtimestamp(at, tz).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def offset_steps(timezone: str, lo: float, hi: float) -> list[tuple[float, int]]:
    """The zone's UTC offsets over [lo, hi): (instant it begins, seconds east of UTC),
    the first beginning at ``lo``. Transitions are found by daily samples, then to the
    second by bisection, so a local day computed as ``at + offset`` is exact across DST."""
    tz = _zone(timezone)
    steps = [(lo, _offset(tz, lo))]
    t = lo
    while t < hi:
        nxt = min(t + _SAMPLE_S, hi)
        if _offset(tz, nxt) != steps[-1][1]:
            change = _first_transition(t, nxt, tz)
            steps.append((change, _offset(tz, change)))
        t = nxt
    return steps


def local_day_bounds(instant: float, tz: ZoneInfo) -> tuple[float, float]:
    """The local day in ``tz`` that holds ``instant``: its first instant and the first
    instant of the next day (23, 24 or 25 hours later across DST)."""
    day = datetime.fromtimestamp(instant, tz).date()
    return wall_instant(day, 0, tz), wall_instant(day + timedelta(days=1), 0, tz)

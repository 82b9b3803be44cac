"""Attempt budgets: how many hand-outs a record or a number may have in a window, and the
exact instant a held-back record may be handed out again.

Pure: the engine keeps each record's and each number's hand-out instants (sorted lists,
pruned past the longest window) and asks ``held_until`` before handing a record out. A
record blocked now is blocked until one instant, computed rather than polled, so the
engine parks the record until then and long polls wake then.

Windows (``Budgets``): a local day in the record's zone (the count resets at local
midnight), rolling 24 h and rolling N x 24 h (an attempt at ``t`` counts at instants
before ``t + W``), and the least gap between two hand-outs of one number.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from .calendar import local_day_bounds
from .model import Budgets

#: budget names, as ``explain`` and the docs give them
RECORD_PER_DAY = "record_per_day"
RECORD_PER_24H = "record_per_24h"
RECORD_PER_DAYS = "record_per_days"
NUMBER_PER_DAY = "number_per_day"
NUMBER_PER_24H = "number_per_24h"
NUMBER_GAP = "number_gap"
DAY_S = 86_400.0


def _rolling(times: Sequence[float], cap: int | None, window_s: float, at: float
             ) -> float | None:
    """When a rolling cap stops blocking at ``at`` (None: it does not block)."""
    if cap is None:
        return None
    first = bisect_right(times, at - window_s)
    if len(times) - first < cap:
        return None
    # the cap-th most recent attempt must leave the window
    return times[len(times) - cap] + window_s


def _daily(times: Sequence[float], cap: int | None, tz: ZoneInfo, at: float
           ) -> float | None:
    """When a local-day cap stops blocking at ``at``: the next local midnight."""
    if cap is None or not times:
        return None
    start, end = local_day_bounds(at, tz)
    if len(times) - bisect_left(times, start) < cap:
        return None
    return end


def _gap(num: Sequence[float], gap_s: int, at: float) -> float | None:
    """When the least gap between two hand-outs of a number stops blocking at ``at``."""
    return num[-1] + gap_s if gap_s and num and num[-1] + gap_s > at else None


def _first_block(b: Budgets, rec: Sequence[float], num: Sequence[float], tz: ZoneInfo,
                 at: float) -> tuple[float, str] | None:
    """The first budget that blocks a hand-out at ``at``, and until when."""
    for name, until in (
            (RECORD_PER_DAY, _daily(rec, b.record_per_day, tz, at)),
            (RECORD_PER_24H, _rolling(rec, b.record_per_24h, DAY_S, at)),
            (RECORD_PER_DAYS, _rolling(rec, b.record_per_days, b.record_days * DAY_S, at)),
            (NUMBER_PER_DAY, _daily(num, b.number_per_day, tz, at)),
            (NUMBER_PER_24H, _rolling(num, b.number_per_24h, DAY_S, at)),
            (NUMBER_GAP, _gap(num, b.number_gap_s, at))):
        if until is not None and until > at:
            return until, name
    return None


def held_until(b: Budgets, rec: Sequence[float], num: Sequence[float], tz: ZoneInfo,
               now: float) -> tuple[float, str] | None:
    """``None`` when the budgets allow a hand-out at ``now``; otherwise the first instant
    they all allow one, and the budget that blocks now.

    ``rec`` and ``num`` are the record's and the number's hand-out instants, ascending.
    Waiting out one budget can run into another (a day cap, then a gap), so the instant
    is the fixed point of "the first blocking budget's end": no attempt is added while
    the record waits, and every budget's count only falls as time passes.
    """
    first = _first_block(b, rec, num, tz, now)
    if first is None:
        return None
    at, reason = first
    for _ in range(16):
        more = _first_block(b, rec, num, tz, at)
        if more is None:
            break
        at = more[0]
    return at, reason

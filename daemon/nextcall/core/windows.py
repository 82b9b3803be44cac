"""Callback windows: "between 14:00 and 16:00 on Tuesday" in the callee's zone.

A windowed callback is due at the window's start (``CallbackIntent.at``) and its promise
is broken at the window's end (``CallbackIntent.until``). In between, its contact priority
(which orders the team and anyone callback queues) rises linearly, in whole steps, from the
code's contact priority ``p`` to ``TOP_PRIORITY`` at the end::

    priority(now) = p + floor((TOP_PRIORITY - p) * (now - start) / (end - start))

and is ``TOP_PRIORITY`` from the end on. The steps fall at known instants, so the engine
re-files a callback at each step instead of recomputing priorities at every ``next``.
Once the end has passed unserved, the callback escalates as a one-instant callback does at
its promised time: the end takes the promised instant's place in the scope's grace period
and in the overdue count.
"""

from __future__ import annotations

import math

#: the highest contact priority; a window's callback reaches it at the window's end
TOP_PRIORITY = 9


def window_priority(priority: int, start: float, end: float, now: float
                    ) -> tuple[int, float]:
    """A windowed callback's contact priority at ``now``, and the instant it next rises
    (``inf`` when it will not)."""
    levels = TOP_PRIORITY - priority
    if levels <= 0:
        return priority, math.inf
    if now >= end:
        return TOP_PRIORITY, math.inf
    if now < start:
        return priority, start + (end - start) / levels
    span = end - start
    k = min(int((now - start) * levels / span), levels - 1)
    nxt = end if k == levels - 1 else start + (k + 1) * span / levels
    while nxt <= now:  # rounding: the step has come already
        k += 1
        nxt = end if k == levels - 1 else start + (k + 1) * span / levels
    return priority + k, nxt

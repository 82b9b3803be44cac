"""When a write may commit inline on the event loop rather than go to the writer thread.

With requests far apart, handing one commit to the writer thread and back costs four
thread switches, more than the commit itself; under concurrent load, batching in the
writer thread pays. The gap between writes is measured from the end of the previous
inline commit: measured from its start, a slow commit (``synchronous = full`` flushes to
disk) made every next write look far apart, so every commit ran inline, one at a time,
with the loop blocked meanwhile, and throughput stopped rising with clients.
"""

from __future__ import annotations

import time

#: after two requests in flight at once, or two writes closer than ``CALM_GAP_S``,
#: commits go to the writer thread for this long (the load is concurrent; batching pays)
CALM_AFTER_S = 0.05
CALM_GAP_S = 0.00015
#: an inline commit slower than this sends the next ``CALM_AFTER_S`` of writes to the
#: writer thread: the loop must not sit in disk flushes while requests wait
SLOW_INLINE_S = 0.002


class CommitPacing:
    """The server's judgement, per write, of whether the load is calm."""

    def __init__(self) -> None:
        self._busy_until = 0.0
        self._last_write = 0.0

    def calm(self, inflight: int) -> bool:
        """Whether this write, with ``inflight`` requests being served, may commit inline.
        Each call counts as a write."""
        now = time.perf_counter()  # uvloop's loop.time() ticks in milliseconds
        gap = now - self._last_write
        self._last_write = now
        if inflight > 1 or gap < CALM_GAP_S:
            self._busy_until = now + CALM_AFTER_S
            return False
        return now >= self._busy_until

    def committed_inline(self, seconds: float) -> None:
        """An inline commit ended after ``seconds``: the next gap counts from now."""
        now = time.perf_counter()
        self._last_write = now
        if seconds > SLOW_INLINE_S:
            self._busy_until = now + CALM_AFTER_S

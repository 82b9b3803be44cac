"""The daemon's clock: the wall clock, watched for steps.

Due times, callbacks and calling windows follow the wall clock; leases and long polls are
lengths of time. When the wall clock is set (``date -s``, an NTP step) the service moves
the leases' and long polls' instants by the step (``Service.expire``), so each keeps the
time it had left.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

#: the wall clock gaining or losing this much on elapsed time is a step (``date -s``, an
#: NTP step), not drift: NTP slews both clocks alike
CLOCK_STEP_S = 1.0

if sys.platform == "linux":
    def _elapsed() -> float:
        # boot time runs on across a suspend, as the wall clock does, but is never set
        return time.clock_gettime(time.CLOCK_BOOTTIME)
else:  # pragma: no cover - the daemon runs on Linux
    _elapsed = time.monotonic


class WallClock:
    """The daemon's clock: the wall clock, which due times, callbacks and calling windows
    follow, watched against a clock of elapsed time that nobody sets, so that leases and
    long polls go on measuring elapsed time when the wall clock is set
    (``Service.expire``)."""

    def __init__(self, wall: Callable[[], float] = time.time,
                 elapsed: Callable[[], float] = _elapsed) -> None:
        self.wall = wall
        self.elapsed = elapsed
        self._offset = wall() - elapsed()

    def __call__(self) -> float:
        return self.wall()

    def step(self) -> float:
        """By how many seconds the wall clock was set since the last step seen; 0.0 when
        it was not (smaller steps count once they add up to ``CLOCK_STEP_S``)."""
        offset = self.wall() - self.elapsed()
        step = offset - self._offset
        if -CLOCK_STEP_S < step < CLOCK_STEP_S:
            return 0.0
        self._offset = offset
        return step

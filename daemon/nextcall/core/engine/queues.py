"""One campaign's priority structures (``Queues``) and what callback and appointment
records keep beyond the columns (``Extra``).

Per campaign:

- ``dormant``: ready records not yet due, by due time;
- ``zones[tz]``: due ready records, one heap per timezone, by (-score, due, rid);
- ``heads``: a heap of the open zones' fronts, so the pool's best callable record is found
  without looking at closed zones or scanning zones at all; zones open and close at the
  instants ``calendar.window_state`` promises, kept in ``wheap``;
- ``cb_dormant``: callbacks not yet due; ``personal[agent]``, ``team[team]``, ``anyone``:
  due callbacks; ``held``: appointments not yet passed; ``budget``: due records held back
  by an attempt budget, by the instant it allows them.

Entries are packed integer keys (``nextcall.core.keys``) carrying the record's placement
generation; a moved record's old entries are stale and skipped at the top (lazy deletion).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ..keys import RunHeap
from ..records import CallbackIntent
from .columns import INF, SLOT_NAMES, SLOTS


@dataclass(slots=True)
class Extra:
    """What a callback or appointment record keeps beyond the columns."""

    id: str
    owner: str | None
    team: str | None
    callback: CallbackIntent | None


@dataclass(slots=True)
class Queues:
    """One campaign's priority structures (see the module docstring)."""

    dormant: RunHeap
    zones: dict[int, RunHeap] = field(default_factory=dict)
    #: per zone: open now, and until when that answer holds
    zone_open: dict[int, bool] = field(default_factory=dict)
    zone_until: dict[int, float] = field(default_factory=dict)
    #: due records per zone (live entries), for stats and metrics
    zone_due: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    wheap: list[tuple[float, int]] = field(default_factory=list)
    #: (key, zone): every open zone's representative, ``head_of[zone]``, whose key is at
    #: most the zone's best live key; entries whose key is no longer their zone's
    #: representative are outdated and dropped when they reach the top
    heads: list[tuple[int, int]] = field(default_factory=list)
    head_of: dict[int, int] = field(default_factory=dict)
    #: the latest instant the zone states were brought up to (a clock stepped back
    #: before it recomputes them all)
    win_asof: float = -INF
    #: no dormant record, upcoming callback or appointment falls due before this instant
    #: (a lower bound, so ``next`` does not look at those heaps at every call)
    promote_at: float = -INF
    cb_dormant: list[int] = field(default_factory=list)
    personal: dict[str, list[int]] = field(default_factory=dict)
    team: dict[str, list[int]] = field(default_factory=dict)
    anyone: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    #: records held back by an attempt budget, by the instant it allows them
    budget: list[int] = field(default_factory=list)
    #: due windowed callbacks, by the instant their priority next rises
    ramp: list[int] = field(default_factory=list)
    #: open records by slot number (``SLOT_NAMES``); ``counts`` names them
    nslot: list[int] = field(default_factory=lambda: [0] * len(SLOT_NAMES))
    closed: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def counts(self) -> dict[str, int]:
        """Open records by slot name."""
        return dict(zip(SLOTS, self.nslot[1:], strict=True))

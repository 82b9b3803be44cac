"""The gauges that describe the engine (records by campaign and state, due now, blocked by
reason, callbacks due and overdue, leases, agents).

Two threads: the event loop computes a ``Snapshot`` from the engine (``EngineSampler``)
every ``refresh_s`` and right after the rebuild; ``EngineCollector.collect()`` runs in the
HTTP server's thread, which must never walk the live heaps (only the loop touches the
core), so it only reads the last snapshot.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..core.engine import (
    S_CB_DUE,
    S_DUE,
    SLOTS,
    Engine,
    blocked_gauges,
)

PREFIX = "nextcall_"
#: ``nextcall_records_blocked`` reasons, all present for every campaign
BLOCKED_REASONS = ("window", "dormant", "leased", "held", "no_number", "disabled", "budget",
                   "attempts", "dnc")
#: the engine gauges, exposed in this order: name (after ``PREFIX``), help, labels
GAUGES: tuple[tuple[str, str, list[str] | None], ...] = (
    ("records",
     ("Records by campaign and state: open records by where the engine holds them "
      "(dormant, due, callback_upcoming, callback_due, leased, no_number, held, "
      "resolution) and closed records by reason."),
     ["campaign", "state", "reason"]),
    ("records_due",
     ("Due records next can hand out from the pool now (their zone's calling window is "
      "open), by campaign."),
     ["campaign"]),
    ("records_blocked",
     ("Open records next cannot hand out now, by campaign and reason: window (due, window "
      "closed), dormant (not yet due, callbacks included), leased, held (appointments, "
      "waiting or awaiting resolution), no_number, disabled (campaign disabled), budget "
      "(held back by an attempt budget), attempts and dnc (always 0: such records are "
      "closed)."),
     ["campaign", "reason"]),
    ("callbacks_due",
     "Callbacks whose promised time has come, not yet handed out, by campaign.",
     ["campaign"]),
    ("callbacks_overdue",
     ("Due callbacks still waiting more than [metrics] callback_overdue_s after their "
      "promised time, by campaign."),
     ["campaign"]),
    ("callback_oldest_age_seconds",
     ("Seconds since the promised time of the oldest due callback (0 when none is due), "
      "by campaign."),
     ["campaign"]),
    ("next_waiting", "next long polls waiting for a record now, by campaign they draw from.",
     ["campaign"]),
    ("campaign_enabled",
     "1 if the campaign is enabled, 0 if disabled or no longer configured.", ["campaign"]),
    ("leases_active", "Leases currently held.", None),
    ("agents_logged_in", "Agents currently logged in.", None),
    ("records_in_memory", "Open records held in memory.", None),
    ("snapshot_age_seconds",
     ("Seconds since the engine gauges were computed on the event loop; grows when the "
      "loop is stuck."), None),
)
#: the window and callback scans may take at most this share of the loop's time
MAX_SCAN_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class CampaignSample:
    """One campaign's engine gauges at one instant."""

    enabled: bool
    #: open records by engine slot (``SLOTS``)
    slots: Mapping[str, int]
    #: closed records by close reason
    closed: Mapping[str, int]
    #: due pool records whose zone's calling window is open now: what ``next`` can hand out
    due_now: int
    #: due pool records whose zone's calling window is closed now
    blocked_window: int
    #: due pool records of a disabled (or no longer configured) campaign
    blocked_disabled: int
    callbacks_due: int
    callbacks_overdue: int
    #: seconds since the promised time of the oldest due callback; 0 when none is due
    oldest_callback_age_s: float
    #: ``next`` long polls waiting now that include this campaign
    waiting: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The engine gauges at one instant, computed on the loop, read by the scrape thread."""

    taken_at: float
    #: ``time.monotonic()`` when taken, for the snapshot age gauge
    taken_mono: float
    campaigns: Mapping[str, CampaignSample]
    leases_active: int
    agents_logged_in: int
    records_in_memory: int


@dataclass(frozen=True, slots=True)
class _Scan:
    """What the O(due callbacks) part of sampling found for one campaign."""

    #: promised times of due callbacks, sorted
    callback_due_ats: tuple[float, ...]


def scan_campaign(engine: Engine, name: str) -> _Scan:
    """Collect the promised times of ``name``'s due callbacks (a window's end: a window
    is overdue only once it has passed unserved)."""
    due_ats = []
    for rid in engine.due_callback_rids(name):
        rec = engine.record(rid)
        if rec is not None:
            due_ats.append(rec.callback.deadline if rec.callback is not None
                           else rec.due_at)
    due_ats.sort()
    return _Scan(tuple(due_ats))


class EngineSampler:
    """Builds ``Snapshot``s from the engine, on the event loop.

    Slot counts, closed counts, leases, agents and the split of due records by open or
    closed window are exact at every sample (the engine keeps counters per zone). Finding
    the due callbacks' promised times means walking the callback heaps, so that scan is
    redone only when a window opened or closed, or once its cost is paid back: after a
    scan that took ``t`` seconds the next waits at least ``t / max_scan_share``. In
    between, the last scan's figures are used, clamped to the exact totals.
    """

    def __init__(self, callback_overdue_s: float, max_scan_share: float = MAX_SCAN_SHARE,
                 perf: Callable[[], float] = time.perf_counter) -> None:
        self.callback_overdue_s = callback_overdue_s
        self.max_scan_share = max_scan_share
        self._perf = perf
        self._scans: dict[str, _Scan] = {}
        self._windows: tuple[tuple[str, bool, tuple[tuple[str, bool], ...]], ...] = ()
        self._next_scan = float("-inf")
        #: how many full scans were made (tests and debugging)
        self.scans = 0

    def sample(self, engine: Engine, now: float, waiting: Mapping[str, int],
               taken_mono: float | None = None) -> Snapshot:
        """The engine gauges at ``now``. Promotes records that became due (as ``stats``
        does), so the counts do not lag behind the clock."""
        zones = {}
        windows = []
        for name in sorted(engine.queues):
            engine.promote(name, now)
            camp = engine.campaigns.get(name)
            enabled = bool(camp and camp.enabled)
            zones[name] = engine.zone_states(name, now, every=True) if enabled else {}
            windows.append((name, enabled, tuple(sorted(
                (tz, st[0]) for tz, st in zones[name].items()))))
        t0 = self._perf()
        if t0 >= self._next_scan or tuple(windows) != self._windows:
            self._scans = {name: scan_campaign(engine, name) for name in engine.queues}
            self._windows = tuple(windows)
            self._next_scan = t0 + (self._perf() - t0) / self.max_scan_share
            self.scans += 1
        campaigns = {}
        for name, q in engine.queues.items():
            camp = engine.campaigns.get(name)
            enabled = bool(camp and camp.enabled)
            due = q.counts[S_DUE]
            blocked_window = sum(n for is_open, _, n in zones.get(name, {}).values()
                                 if not is_open) if enabled else 0
            scan = self._scans.get(name, _Scan(()))
            cb_due = q.counts[S_CB_DUE]
            due_ats = scan.callback_due_ats
            overdue = bisect.bisect_right(due_ats, now - self.callback_overdue_s)
            campaigns[name] = CampaignSample(
                enabled=enabled, slots=dict(q.counts), closed=dict(q.closed),
                due_now=due - blocked_window if enabled else 0,
                blocked_window=blocked_window,
                blocked_disabled=0 if enabled else due,
                callbacks_due=cb_due, callbacks_overdue=min(overdue, cb_due),
                oldest_callback_age_s=max(now - due_ats[0], 0.0) if due_ats and cb_due
                else 0.0,
                waiting=waiting.get(name, 0))
        return Snapshot(
            taken_at=now, taken_mono=time.monotonic() if taken_mono is None else taken_mono,
            campaigns=campaigns, leases_active=len(engine.leases),
            agents_logged_in=sum(1 for s in engine.agents.values() if s.logged_in),
            records_in_memory=len(engine))


class EngineCollector(Collector):
    """Exposes the last ``Snapshot`` (set by the loop) at scrape time, in the scrape
    thread. Reads one reference and nothing live."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.snapshot: Snapshot | None = None
        self._monotonic = monotonic

    def describe(self) -> Iterable[Metric]:
        """The families, without samples (lets the registry check name clashes)."""
        return list(self._families(None))

    def collect(self) -> Iterable[Metric]:
        """The families with the samples of the last snapshot (none before the first)."""
        return list(self._families(self.snapshot))

    def _families(self, snap: Snapshot | None) -> Iterator[Metric]:
        fams = {name: GaugeMetricFamily(PREFIX + name, doc, labels=labels)
                for name, doc, labels in GAUGES}
        if snap is not None:
            for name, c in sorted(snap.campaigns.items()):
                _add_campaign(fams, name, c)
            fams["leases_active"].add_metric([], snap.leases_active)
            fams["agents_logged_in"].add_metric([], snap.agents_logged_in)
            fams["records_in_memory"].add_metric([], snap.records_in_memory)
            fams["snapshot_age_seconds"].add_metric(
                [], max(self._monotonic() - snap.taken_mono, 0.0))
        yield from fams.values()


def _add_campaign(fams: dict[str, GaugeMetricFamily], name: str, c: CampaignSample) -> None:
    """Campaign ``name``'s samples into the per-campaign families."""
    records = fams["records"]
    for slot in SLOTS:
        records.add_metric([name, slot, ""], c.slots.get(slot, 0))
    for reason, n in sorted(c.closed.items()):
        records.add_metric([name, "closed", reason], n)
    fams["records_due"].add_metric([name], c.due_now)
    by_reason = blocked_gauges(dict(c.slots), c.blocked_window, c.blocked_disabled)
    for reason in BLOCKED_REASONS:
        fams["records_blocked"].add_metric([name, reason], by_reason[reason])
    fams["callbacks_due"].add_metric([name], c.callbacks_due)
    fams["callbacks_overdue"].add_metric([name], c.callbacks_overdue)
    fams["callback_oldest_age_seconds"].add_metric([name], c.oldest_callback_age_s)
    fams["next_waiting"].add_metric([name], c.waiting)
    fams["campaign_enabled"].add_metric([name], 1 if c.enabled else 0)

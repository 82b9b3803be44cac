"""Every Prometheus metric nextcall exports, built around an injected registry.

Two kinds of metric, two threads:

- Counters and histograms of the request path (requests, dispositions, leases granted
  and expired, commit and ``next`` latency) are plain Python counts bumped on the event
  loop (``FastCounter``, ``FastHistogram``: no lock, no child lookup, well under a
  microsecond), exposed by a collector that copies them at scrape time. The rare ones
  (reminders, event-loop lag, rebuild time) are prometheus-client metrics.
- Gauges that describe the engine (records by campaign and state, due now, blocked by
  reason, callbacks due and overdue) come from ``EngineCollector``. Its ``collect()`` runs
  in the HTTP server's thread, which must never walk the live heaps (only the loop touches
  the core), so the loop computes a ``Snapshot`` every ``refresh_s`` and right after the
  rebuild (``EngineSampler``), and the collector only reads the last one.

Label values are bounded: campaigns, result codes and ops come from the configuration and
the protocol, anything else is reported as ``other``; record and agent ids never become
labels. ``docs/metrics.md`` describes every metric and alert for operators.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import platform
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                   HistogramMetricFamily, Metric)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from . import __version__
from .config import MetricsCfg, listen_address
from .core.engine import (
    S_CB_DORMANT,
    S_CB_DUE,
    S_DORMANT,
    S_DUE,
    S_HELD,
    S_LEASED,
    S_NO_NUMBER,
    S_RESOLUTION,
    SLOTS,
    Engine,
)
from .core.errors import NextcallError
from .core.model import Campaign
from .core.records import Lease
from .ops import REGISTRY
from .service import Observer, Service

if TYPE_CHECKING:  # the exporter hooks into them; nothing here depends on their modules
    from .server import Server
    from .storage.sql import SqlStore

logger = logging.getLogger(__name__)

# One series per counter, not two: the `_created` companions double the series count and
# nothing here reads them. This is process-wide; the daemon is the only user of the client.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

PREFIX = "nextcall_"
#: the label value for anything outside the configured, bounded set
OTHER = "other"
#: why ``next`` handed a record out (``Engine.select``)
LEASE_REASONS = ("personal_callback", "team_callback", "pool")
#: reminder channels, and which of them each reminder counter starts at 0 for
REMINDER_CHANNELS = ("event", "email", "scheduler")
REMINDERS_SENT_AT_START = ("event", "email")
REMINDERS_FAILED_AT_START = ("email", "scheduler")
#: ``nextcall_records_blocked`` reasons, all present for every campaign
BLOCKED_REASONS = ("window", "dormant", "leased", "held", "no_number", "disabled", "attempts",
                   "dnc")

# Buckets: SLO thresholds sit on boundaries (PITFALLS §4). `next` answers from memory in
# tens of microseconds plus, when it hands something out, one group commit.
NEXT_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0)
REQUEST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 1.0, 10.0)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                  2.5, 5.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: the event-loop lag probe sleeps this long and records how much longer it took
LAG_PROBE_S = 0.5
#: the window and callback scans may take at most this share of the loop's time
MAX_SCAN_SHARE = 0.01


# kinds of recorded events (identity-compared markers)
_REQUEST, _NEXT, _DISPOSED, _COMMIT = "request", "next", "disposed", "commit"


def _error_codes() -> frozenset[str]:
    """Every wire error code (one per ``NextcallError`` subclass)."""
    codes = set()
    todo: list[type[NextcallError]] = [NextcallError]
    while todo:
        cls = todo.pop()
        codes.add(cls.code)
        todo.extend(cls.__subclasses__())
    return frozenset(codes)


class FastCounter:
    """A labelled counter bumped on the event loop without locks; the scrape thread reads a
    copy of its dict (copying a dict is one atomic step under the GIL)."""

    def __init__(self, name: str, doc: str, labels: list[str]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...], n: float = 1.0) -> None:
        """Add ``n`` to the series ``key`` (label values in order)."""
        v = self.values
        v[key] = v.get(key, 0.0) + n

    def touch(self, key: tuple[str, ...]) -> None:
        """Make series ``key`` exist at 0."""
        self.values.setdefault(key, 0.0)

    def collect(self) -> Metric:
        """The family with every series, as of now."""
        fam = CounterMetricFamily(self.name.removesuffix("_total"), self.doc,
                                  labels=self.labels)
        for key, value in dict(self.values).items():
            fam.add_metric(list(key), value)
        return fam


class FastHistogram:
    """A labelled histogram observed on the event loop without locks (see
    ``FastCounter``). Each series is a list: one count per bucket, +Inf, then the sum."""

    def __init__(self, name: str, doc: str, labels: list[str],
                 buckets: tuple[float, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.buckets = buckets
        self.series: dict[tuple[str, ...], list[float]] = {}
        if not labels:  # an unlabelled histogram exists from the start, at zero
            self.series[()] = [0.0] * (len(buckets) + 2)

    def observe(self, key: tuple[str, ...], value: float) -> None:
        """Count ``value`` in series ``key``."""
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = [0.0] * (len(self.buckets) + 2)
        s[bisect.bisect_left(self.buckets, value)] += 1
        s[-1] += value

    def collect(self) -> Metric:
        """The family with every series, as of now (cumulative buckets)."""
        fam = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, counts in dict(self.series).items():
            counts = list(counts)
            total, acc = counts[-1], 0.0
            buckets = []
            for le, n in zip((*map(str, self.buckets), "+Inf"), counts[:-1], strict=True):
                acc += n
                buckets.append((le, acc))
            fam.add_metric(list(key), buckets, total)
        return fam


class _FastCollector(Collector):
    """Exposes the fast counters and histograms at scrape time, after ``drain`` has
    counted the events the loop recorded since the last scrape."""

    def __init__(self, metrics: list[FastCounter | FastHistogram],
                 drain: Callable[[], None]) -> None:
        self.metrics = metrics
        self.drain = drain

    def describe(self) -> Iterable[Metric]:
        """The families (lets the registry check name clashes)."""
        return [m.collect() for m in self.metrics]

    def collect(self) -> Iterable[Metric]:
        """Every family with its series."""
        self.drain()
        return [m.collect() for m in self.metrics]


class Metrics(Observer):
    """The counters, histograms and build info, registered in ``registry``.

    Also the service's ``Observer``: the service calls it on the event loop as requests are
    answered. ``campaigns`` returns the configured campaigns (it follows reloads), which
    bound the ``campaign`` and ``code`` label values.
    """

    def __init__(self, registry: CollectorRegistry,
                 campaigns: Callable[[], Mapping[str, Campaign]] = dict,
                 process_metrics: bool = True) -> None:
        self.registry = registry
        self._campaigns = campaigns
        self._ops = frozenset(REGISTRY)
        self._codes = _error_codes() | {"ok"}
        self._labelled: set[str] = set()
        self._request_keys: dict[tuple[str, str], tuple[tuple[str, str], tuple[str]]] = {}
        r = registry
        self.build_info = Info(
            "nextcall_build", "The running nextcall version and Python version (value 1).",
            registry=r)
        self.build_info.info({"version": __version__,
                              "python": platform.python_version()})
        self.requests = FastCounter(
            "nextcall_requests_total", "Requests answered, by op and answer code (ok, or "
            "the error code; op 'other' for lines that named no known op).",
            ["op", "code"])
        self.request_latency = FastHistogram(
            "nextcall_request_latency_seconds", "Time from reading a request line to "
            "handing its answer to the socket, by op (next includes long-poll waiting).",
            ["op"], REQUEST_BUCKETS)
        self.next_latency = FastHistogram(
            "nextcall_next_latency_seconds", "Time to answer a next request, long-poll "
            "waiting excluded; an answer with leases includes their commit.", [],
            NEXT_BUCKETS)
        self.dispositions = FastCounter(
            "nextcall_dispositions_total", "Dispositions committed, by campaign and result "
            "code (retried duplicates count once).", ["campaign", "code"])
        self.granted = FastCounter(
            "nextcall_leases_granted_total", "Leases handed out by next, by campaign and "
            "reason (personal_callback, team_callback, pool).", ["campaign", "reason"])
        self.expired = FastCounter(
            "nextcall_leases_expired_total", "Leases that ran out without a disposition, "
            "by campaign (ended at their expiry instant).", ["campaign"])
        self.db_commit = FastHistogram(
            "nextcall_db_commit_seconds", "Duration of one group commit (one transaction).",
            [], COMMIT_BUCKETS)
        self.db_commit_batch = FastHistogram(
            "nextcall_db_commit_batch_size", "Writes (requests waiting on it) per group "
            "commit.", [], BATCH_BUCKETS)
        #: what the loop records on the request path: appended there (one atomic deque
        #: append, no lock), counted into the series by whoever scrapes (``drain``)
        self._events: deque[tuple[Any, ...]] = deque()
        self._drain_lock = threading.Lock()
        r.register(_FastCollector([self.requests, self.request_latency, self.next_latency,
                                   self.dispositions, self.granted, self.expired,
                                   self.db_commit, self.db_commit_batch], self.drain))
        self.reminders_sent = Counter(
            "nextcall_reminders_sent_total", "Callback reminders delivered, by channel "
            "(event: to a subscribed connection; email: accepted by the SMTP server).",
            ["channel"], registry=r)
        self.reminders_failed = Counter(
            "nextcall_reminders_failed_total", "Callback reminders that could not be "
            "delivered, by channel (email: SMTP unreachable or refused; scheduler: the "
            "reminder job failed).", ["channel"], registry=r)
        for channel in REMINDERS_SENT_AT_START:
            self.reminders_sent.labels(channel)
        for channel in REMINDERS_FAILED_AT_START:
            self.reminders_failed.labels(channel)
        self.heap_rebuild = Gauge(
            "nextcall_heap_rebuild_seconds", "Duration of the last rebuild of the in-memory "
            "heap from the database (startup).", registry=r)
        self.loop_lag = Histogram(
            "nextcall_event_loop_lag_seconds", f"How much later than asked a {LAG_PROBE_S} s "
            "sleep on the event loop wakes up: time the loop was busy or blocked.",
            buckets=LAG_BUCKETS, registry=r)
        if process_metrics:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

    # ------------------------------------------------------------------ labels
    def _campaign(self, name: str) -> str:
        return name if name in self._campaigns() else OTHER

    def ensure_campaigns(self, names: Iterable[str]) -> None:
        """Create the per-campaign lease series at 0, so rates and alerts see campaigns
        that have handed nothing out yet."""
        for name in names:
            if name in self._labelled:
                continue
            self._labelled.add(name)
            for reason in LEASE_REASONS:
                self.granted.touch((name, reason))
            self.expired.touch((name,))

    # ------------------------------------------------------------------ hooks
    def request_done(self, op: str, code: str, seconds: float) -> None:
        """The server answered one request (``Server(metrics=...)``): recorded for the
        next scrape (every request passes here: one append, nothing else)."""
        self._events.append((_REQUEST, op, code, seconds))

    def drain(self) -> None:
        """Count the recorded events into the series (the scrape thread, or a test)."""
        events = self._events
        with self._drain_lock:
            while events:
                try:
                    ev = events.popleft()
                except IndexError:
                    break
                kind = ev[0]
                if kind is _REQUEST:
                    keys = self._request_keys.get((ev[1], ev[2]))
                    if keys is None:
                        lop = ev[1] if ev[1] in self._ops else OTHER
                        keys = self._request_keys[(ev[1], ev[2])] = (
                            (lop, ev[2] if ev[2] in self._codes else OTHER), (lop,))
                    self.requests.inc(keys[0])
                    self.request_latency.observe(keys[1], ev[3])
                elif kind is _NEXT:
                    self.next_latency.observe((), ev[1])
                    for campaign, reason in ev[2]:
                        self.granted.inc((self._campaign(campaign),
                                          reason if reason in LEASE_REASONS else OTHER))
                elif kind is _DISPOSED:
                    campaign, code = ev[1], ev[2]
                    camp = self._campaigns().get(campaign)
                    if camp is None:
                        campaign = code = OTHER
                    elif code not in camp.codes:
                        code = OTHER
                    self.dispositions.inc((campaign, code))
                else:
                    self.db_commit.observe((), ev[1])
                    self.db_commit_batch.observe((), ev[2])

    def commit_done(self, seconds: float, batch_size: int) -> None:
        """The store committed one group (``SqlStore.commit_observer``)."""
        self._events.append((_COMMIT, seconds, batch_size))

    def rebuilt(self, seconds: float) -> None:
        """The heap was rebuilt from the database in ``seconds``."""
        self.heap_rebuild.set(seconds)

    def next_answered(self, seconds: float, leases: list[Lease]) -> None:
        """See ``Observer.next_answered``."""
        self._events.append((_NEXT, seconds,
                             [(lz.record.campaign, lz.reason) for lz in leases]))

    def disposed(self, campaign: str, code: str) -> None:
        """See ``Observer.disposed``."""
        self._events.append((_DISPOSED, campaign, code))

    def leases_expired(self, leases: list[Lease]) -> None:
        """See ``Observer.leases_expired``."""
        for lz in leases:
            self.expired.inc((self._campaign(lz.record.campaign),))

    def reminder_sent(self, channel: str) -> None:
        """A callback reminder went out on ``channel``."""
        self.reminders_sent.labels(channel if channel in REMINDER_CHANNELS else OTHER).inc()

    def reminder_failed(self, channel: str) -> None:
        """A callback reminder could not be delivered on ``channel``."""
        self.reminders_failed.labels(channel if channel in REMINDER_CHANNELS
                                     else OTHER).inc()


# --------------------------------------------------------------------------- snapshot
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
    """Collect the promised times of ``name``'s due callbacks."""
    due_ats = []
    for rid in engine.due_callback_rids(name):
        rec = engine.record(rid)
        if rec is not None:
            due_ats.append(rec.due_at)
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
        def gauge(name: str, doc: str, labels: list[str] | None = None
                  ) -> GaugeMetricFamily:
            return GaugeMetricFamily(PREFIX + name, doc, labels=labels)

        records = gauge("records", "Records by campaign and state: open records by where "
                        "the engine holds them (dormant, due, callback_upcoming, "
                        "callback_due, leased, no_number, held, resolution) and closed "
                        "records by reason.",
                        ["campaign", "state", "reason"])
        due = gauge("records_due", "Due records next can hand out from the pool now (their "
                    "zone's calling window is open), by campaign.", ["campaign"])
        blocked = gauge("records_blocked", "Open records next cannot hand out now, by "
                        "campaign and reason: window (due, window closed), dormant (not yet "
                        "due, callbacks included), leased, held (appointments, waiting or "
                        "awaiting resolution), no_number, disabled (campaign disabled), "
                        "attempts and dnc (always 0: such records are closed).",
                        ["campaign", "reason"])
        cb_due = gauge("callbacks_due", "Callbacks whose promised time has come, not yet "
                       "handed out, by campaign.", ["campaign"])
        cb_overdue = gauge("callbacks_overdue", "Due callbacks still waiting more than "
                           "[metrics] callback_overdue_s after their promised time, by "
                           "campaign.", ["campaign"])
        cb_age = gauge("callback_oldest_age_seconds", "Seconds since the promised time of "
                       "the oldest due callback (0 when none is due), by campaign.",
                       ["campaign"])
        waiting = gauge("next_waiting", "next long polls waiting for a record now, by "
                        "campaign they draw from.", ["campaign"])
        enabled = gauge("campaign_enabled", "1 if the campaign is enabled, 0 if disabled or "
                        "no longer configured.", ["campaign"])
        leases = gauge("leases_active", "Leases currently held.")
        agents = gauge("agents_logged_in", "Agents currently logged in.")
        in_memory = gauge("records_in_memory", "Open records held in memory.")
        age = gauge("snapshot_age_seconds", "Seconds since the engine gauges were computed "
                    "on the event loop; grows when the loop is stuck.")
        if snap is not None:
            for name, c in sorted(snap.campaigns.items()):
                for slot in SLOTS:
                    records.add_metric([name, slot, ""], c.slots.get(slot, 0))
                for reason, n in sorted(c.closed.items()):
                    records.add_metric([name, "closed", reason], n)
                due.add_metric([name], c.due_now)
                by_reason = {
                    "window": c.blocked_window,
                    "dormant": c.slots.get(S_DORMANT, 0) + c.slots.get(S_CB_DORMANT, 0),
                    "leased": c.slots.get(S_LEASED, 0),
                    "held": c.slots.get(S_HELD, 0) + c.slots.get(S_RESOLUTION, 0),
                    "no_number": c.slots.get(S_NO_NUMBER, 0),
                    "disabled": c.blocked_disabled, "attempts": 0, "dnc": 0}
                for reason in BLOCKED_REASONS:
                    blocked.add_metric([name, reason], by_reason[reason])
                cb_due.add_metric([name], c.callbacks_due)
                cb_overdue.add_metric([name], c.callbacks_overdue)
                cb_age.add_metric([name], c.oldest_callback_age_s)
                waiting.add_metric([name], c.waiting)
                enabled.add_metric([name], 1 if c.enabled else 0)
            leases.add_metric([], snap.leases_active)
            agents.add_metric([], snap.agents_logged_in)
            in_memory.add_metric([], snap.records_in_memory)
            age.add_metric([], max(self._monotonic() - snap.taken_mono, 0.0))
        yield from (records, due, blocked, cb_due, cb_overdue, cb_age, waiting, enabled,
                    leases, agents, in_memory, age)


# --------------------------------------------------------------------------- runtime
class Exporter:
    """The daemon's metrics at run time: hooks into service, store and server, the
    snapshot refresher, the loop-lag probe and the HTTP endpoint.

    ``start`` after the rebuild (the endpoint then never shows an empty engine), ``stop``
    after the server stopped. The constructor only builds objects.
    """

    def __init__(self, cfg: MetricsCfg, service: Service, store: SqlStore, server: Server,
                 registry: CollectorRegistry | None = None, *,
                 watch: Callable[[Any, str], None] | None = None) -> None:
        self.cfg = cfg
        #: puts the refresher and the loop-lag probe under watch (``supervise.Watch``)
        self.watch = watch
        self.service = service
        self.store = store
        self.server = server
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry, campaigns=lambda: service.engine.campaigns)
        self.collector = EngineCollector()
        self.registry.register(self.collector)
        self.sampler = EngineSampler(cfg.callback_overdue_s)
        self._httpd: Any = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) the endpoint listens on, once started (port 0 is resolved)."""
        if self._httpd is None:
            return None
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def refresh(self) -> None:
        """Count the recorded events and recompute the engine snapshot (on the event
        loop): without a scrape the events must not pile up."""
        self.metrics.drain()
        engine = self.service.engine
        self.metrics.ensure_campaigns(engine.campaigns)
        self.collector.snapshot = self.sampler.sample(engine, self.service.clock(),
                                                      self.service.waiting)

    async def start(self) -> None:
        """Attach the hooks, take the first snapshot, serve HTTP, start the side tasks.

        An address that cannot be bound (in use, not local) is logged as an error and the
        daemon serves on without an endpoint: a monitoring clash must not stop the
        dialing; the missing scrape target shows as ``up == 0``.
        """
        m = self.metrics
        self.service.observer = m
        self.store.commit_observer = m.commit_done
        self.server.metrics = m.request_done
        m.rebuilt(self.service.rebuild_stats.get("total_s", 0.0))
        self.refresh()
        # started even without an endpoint: the refresher drains the recorded events,
        # which would otherwise pile up with nobody scraping
        for coro, name in ((self._refresher(), "metrics-refresh"),
                           (self._lag_probe(), "metrics-loop-lag")):
            task = asyncio.create_task(coro, name=name)
            self._tasks.add(task)
            if self.watch is not None:
                self.watch(task, name)
        host, port = listen_address(self.cfg.address)
        try:
            # start_http_server's default address is 0.0.0.0: always pass ours
            self._httpd, self._thread = prometheus_client.start_http_server(
                port, addr=host, registry=self.registry)
        except OSError as exc:
            logger.error("metrics_unavailable address=%s error=%r", self.cfg.address, exc)
            return
        bound = self.address
        assert bound is not None
        logger.info("metrics_serving address=%s port=%d path=/metrics", *bound)

    async def _refresher(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.refresh_s)
            try:
                self.refresh()
            except Exception:  # a sampling bug must not stop the refresher
                logger.exception("metrics_refresh_failed")

    async def _lag_probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(LAG_PROBE_S)
            self.metrics.loop_lag.observe(max(loop.time() - t0 - LAG_PROBE_S, 0.0))

    async def stop(self) -> None:
        """Stop the side tasks and the HTTP endpoint. Safe to call twice."""
        tasks, self._tasks = self._tasks, set()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            addr = self._wake_address(httpd)
            done = asyncio.ensure_future(asyncio.to_thread(httpd.shutdown))
            # serve_forever looks at the shutdown flag every 0.5 s, or at once after
            # handling a connection: poke it until it notices
            while not done.done():
                try:
                    socket.create_connection(addr, timeout=0.1).close()
                except OSError:
                    pass
                await asyncio.wait([done], timeout=0.02)
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @staticmethod
    def _wake_address(httpd: Any) -> tuple[str, int]:
        host, port = httpd.server_address[:2]
        wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1"}
        return wildcard.get(host, host), port

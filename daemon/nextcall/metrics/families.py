"""The request-path metrics (requests, dispositions, leases granted and expired, commit and
``next`` latency) and the rare ones (reminders, connections, event-loop lag, rebuild time,
build info): their names, help texts, labels and buckets, and the hooks the service, server
and store call to feed them (``Metrics``, the service's ``Observer``, the server's
``ConnectionObserver``)."""

from __future__ import annotations

import platform
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .. import __version__
from ..core.errors import NextcallError
from ..core.model import Campaign
from ..core.records import Lease
from ..limits import DROP_REASONS
from ..ops import REGISTRY
from ..service import Observer
from .fast import FastCollector, FastCounter, FastHistogram

# One series per counter, not two: the `_created` companions double the series count and
# nothing here reads them. This is process-wide; the daemon is the only user of the client.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

#: the label value for anything outside the configured, bounded set
OTHER = "other"
#: why ``next`` handed a record out (``Engine.select``)
LEASE_REASONS = ("personal_callback", "team_callback", "pool")
#: reminder channels, and which of them each reminder counter starts at 0 for
REMINDER_CHANNELS = ("event", "email", "scheduler")
REMINDERS_SENT_AT_START = ("event", "email")
REMINDERS_FAILED_AT_START = ("email", "scheduler")
#: channels of result-code notifications (``notify``), failures also ``error``
NOTIFICATION_CHANNELS = ("email", "error")

# Buckets: SLO thresholds sit on boundaries. `next` answers from memory in
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
        #: what the loop records on the request path: appended there (one atomic deque
        #: append, no lock), counted into the series by whoever scrapes (``drain``)
        self._events: deque[tuple[Any, ...]] = deque()
        self._drain_lock = threading.Lock()
        r = registry
        self.build_info = Info(
            "nextcall_build", "The running nextcall version and Python version (value 1).",
            registry=r)
        self.build_info.info({"version": __version__,
                              "python": platform.python_version()})
        self._add_request_path(r)
        self._add_rare(r, process_metrics)

    def _add_request_path(self, r: CollectorRegistry) -> None:
        """The request-path counters and histograms (lock-free, see ``fast``), exposed
        through one collector that drains the recorded events first."""
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
        r.register(FastCollector([self.requests, self.request_latency, self.next_latency,
                                  self.dispositions, self.granted, self.expired,
                                  self.db_commit, self.db_commit_batch], self.drain))

    def _add_rare(self, r: CollectorRegistry, process_metrics: bool) -> None:
        """The rare metrics (prometheus-client's own) and the process collectors."""
        self.reminders_sent = Counter(
            "nextcall_reminders_sent_total", "Callback reminders delivered, by channel "
            "(event: to a subscribed connection; email: accepted by the SMTP server).",
            ["channel"], registry=r)
        self.reminders_failed = Counter(
            "nextcall_reminders_failed_total", "Callback reminders that could not be "
            "delivered, by channel (email: SMTP unreachable or refused; scheduler: the "
            "reminder job failed).", ["channel"], registry=r)
        self.amendments = Counter(
            "nextcall_amendments_total", "Dispositions amended, by campaign, the code "
            "replaced and the code given (the latest version of each disposition: "
            "dispositions_total - amendments from + amendments to).",
            ["campaign", "from_code", "to_code"], registry=r)
        for channel in REMINDERS_SENT_AT_START:
            self.reminders_sent.labels(channel)
        self.notifications_sent = Counter(
            "nextcall_notifications_sent_total", "Result-code notification e-mails "
            "(notify) accepted by the SMTP server, by channel.", ["channel"], registry=r)
        self.notifications_failed = Counter(
            "nextcall_notifications_failed_total", "Result-code notification e-mails that "
            "could not be sent, by channel (email: SMTP unreachable or refused; error: "
            "building the message failed).", ["channel"], registry=r)
        self.notifications_sent.labels("email")
        for channel in NOTIFICATION_CHANNELS:
            self.notifications_failed.labels(channel)
        for channel in REMINDERS_FAILED_AT_START:
            self.reminders_failed.labels(channel)
        self._add_connections(r)
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

    def _add_connections(self, r: CollectorRegistry) -> None:
        """Connections: open now, refused at ``max_connections``, closed by the daemon,
        refused in the TLS handshake."""
        self.connections_open = Gauge(
            "nextcall_connections_open", "Client connections open now.", registry=r)
        self.connections_refused = Counter(
            "nextcall_connections_refused_total", "Connections refused because "
            "max_connections were open (each got one unavailable line).", registry=r)
        self.connections_dropped = Counter(
            "nextcall_connections_dropped_total", "Connections the daemon closed, by reason "
            "(too_large, partial_line, write_timeout, buffered_output).", ["reason"],
            registry=r)
        for reason in DROP_REASONS:
            self.connections_dropped.labels(reason)
        self.tls_handshake_failures = Counter(
            "nextcall_tls_handshake_failures_total", "TLS clients refused in the handshake "
            "([tcp]): no client certificate, one no CA in client_cafile signed, or not "
            "TLS at all.", registry=r)

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

    def amended(self, campaign: str, from_code: str, to_code: str) -> None:
        """See ``Observer.amended``."""
        camp = self._campaigns().get(campaign)
        codes = camp.codes if camp is not None else {}
        self.amendments.labels(
            campaign if camp is not None else OTHER,
            from_code if from_code in codes else OTHER,
            to_code if to_code in codes else OTHER).inc()

    def leases_expired(self, leases: list[Lease]) -> None:
        """See ``Observer.leases_expired``."""
        for lz in leases:
            self.expired.inc((self._campaign(lz.record.campaign),))

    def reminder_sent(self, channel: str) -> None:
        """A callback reminder went out on ``channel``."""
        self.reminders_sent.labels(channel if channel in REMINDER_CHANNELS else OTHER).inc()

    def notification_sent(self, channel: str) -> None:
        """See ``Observer.notification_sent``."""
        self.notifications_sent.labels(channel if channel in NOTIFICATION_CHANNELS
                                       else OTHER).inc()

    def notification_failed(self, channel: str) -> None:
        """See ``Observer.notification_failed``."""
        self.notifications_failed.labels(channel if channel in NOTIFICATION_CHANNELS
                                         else OTHER).inc()

    def connection_opened(self) -> None:
        """See ``ConnectionObserver.connection_opened``."""
        self.connections_open.inc()

    def connection_closed(self) -> None:
        """See ``ConnectionObserver.connection_closed``."""
        self.connections_open.dec()

    def connection_refused(self) -> None:
        """See ``ConnectionObserver.connection_refused``."""
        self.connections_refused.inc()

    def connection_dropped(self, reason: str) -> None:
        """See ``ConnectionObserver.connection_dropped``."""
        self.connections_dropped.labels(reason if reason in DROP_REASONS else OTHER).inc()

    def tls_handshake_failed(self) -> None:
        """See ``ConnectionObserver.tls_handshake_failed``."""
        self.tls_handshake_failures.inc()

    def reminder_failed(self, channel: str) -> None:
        """A callback reminder could not be delivered on ``channel``."""
        self.reminders_failed.labels(channel if channel in REMINDER_CHANNELS
                                     else OTHER).inc()

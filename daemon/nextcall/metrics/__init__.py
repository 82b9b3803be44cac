"""Every Prometheus metric nextcall exports, built around an injected registry.

Two kinds of metric, two threads:

- Counters and histograms of the request path (requests, dispositions, leases granted
  and expired, commit and ``next`` latency) are plain Python counts bumped on the event
  loop (``FastCounter``, ``FastHistogram``: no lock, no child lookup, well under a
  microsecond), exposed by a collector that copies them at scrape time. The rare ones
  (reminders, event-loop lag, rebuild time) are prometheus-client metrics. Both are defined
  in ``families`` (``Metrics``).
- Gauges that describe the engine (records by campaign and state, due now, blocked by
  reason, callbacks due and overdue) come from ``EngineCollector`` (``collect``). Its
  ``collect()`` runs in the HTTP server's thread, which must never walk the live heaps
  (only the loop touches the core), so the loop computes a ``Snapshot`` every ``refresh_s``
  and right after the rebuild (``EngineSampler``), and the collector only reads the last
  one.

``exporter`` wires them into the daemon and serves the endpoint. Label values are bounded:
campaigns, result codes and ops come from the configuration and the protocol, anything
else is reported as ``other``; record and agent ids never become labels.
``docs/metrics.md`` describes every metric and alert for operators.
"""

from .collect import (
    BLOCKED_REASONS,
    GAUGES,
    MAX_SCAN_SHARE,
    PREFIX,
    CampaignSample,
    EngineCollector,
    EngineSampler,
    Snapshot,
    scan_campaign,
)
from .exporter import Exporter
from .families import (
    BATCH_BUCKETS,
    COMMIT_BUCKETS,
    LAG_BUCKETS,
    LAG_PROBE_S,
    LEASE_REASONS,
    NEXT_BUCKETS,
    OTHER,
    REMINDER_CHANNELS,
    REMINDERS_FAILED_AT_START,
    REMINDERS_SENT_AT_START,
    REQUEST_BUCKETS,
    Metrics,
)
from .fast import FastCollector, FastCounter, FastHistogram

__all__ = [
    "BATCH_BUCKETS", "BLOCKED_REASONS", "COMMIT_BUCKETS", "GAUGES", "LAG_BUCKETS",
    "LAG_PROBE_S", "LEASE_REASONS", "MAX_SCAN_SHARE", "NEXT_BUCKETS", "OTHER", "PREFIX",
    "REMINDERS_FAILED_AT_START", "REMINDERS_SENT_AT_START", "REMINDER_CHANNELS",
    "REQUEST_BUCKETS", "CampaignSample", "EngineCollector", "EngineSampler", "Exporter",
    "FastCollector", "FastCounter", "FastHistogram", "Metrics", "Snapshot", "scan_campaign",
]

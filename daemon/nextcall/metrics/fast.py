"""Counters and histograms for the request path: plain Python counts bumped on the event
loop (no lock, no child lookup, well under a microsecond), exposed by a collector that
copies them at scrape time. prometheus-client's own metrics take a lock per update."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


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


class FastCollector(Collector):
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

"""Micro-benchmarks of the pure core (pytest-benchmark), at 10^4 to 10^7 records.

    .venv/bin/python -m pytest benchmarks/test_core.py --benchmark-only
    NEXTCALL_BENCH_SIZES=10000,1000000 .venv/bin/python -m pytest benchmarks/test_core.py

Each size builds one engine (24 timezones, every window open, records due now) through
``bulk_load``, as a rebuild does. Measured: ``select`` (no change), a ``next`` + ``release``
cycle, a ``next`` + ``dispose`` cycle (a retry due at once: the record goes back to the
pool), ``expire`` (per lease, 1,000 leases run out at once) and ``bulk_load`` itself.
The engine's cost should not grow with the number of records (heaps: O(log n)).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from nextcall.core.engine import Engine, ReadyGroup
from nextcall.core.model import Campaign, Interval, ResultCode
from nextcall.core.results import Disposition, decide

SIZES = [int(x) for x in os.environ.get("NEXTCALL_BENCH_SIZES",
                                        "10000,100000,1000000,10000000").split(",")]
ZONES = ["Pacific/Honolulu", "America/Los_Angeles", "America/Chicago", "America/New_York",
         "America/Sao_Paulo", "Europe/London", "Europe/Amsterdam", "Europe/Helsinki",
         "Asia/Dubai", "Asia/Kolkata", "Asia/Bangkok", "Asia/Tokyo", "Australia/Sydney",
         "Pacific/Auckland"] + [f"Etc/GMT{k:+d}" for k in range(-5, 5)]
NOW = datetime(2026, 12, 2, 12, tzinfo=UTC).timestamp()
CODES = {"NA": ResultCode("NA", "no answer", "retry", delay_s=0)}
ALL_DAY = tuple((Interval(0, 24 * 60),) for _ in range(7))
CAMPAIGN = Campaign("t", CODES, window=ALL_DAY, legal_window=Interval(0, 24 * 60),
                    max_attempts=1000)


def groups(n: int) -> list[ReadyGroup]:
    rng = np.random.default_rng(n)
    rid = np.arange(1, n + 1, dtype=np.int64)
    zone = rid % len(ZONES)
    out = []
    for z, name in enumerate(ZONES):
        r = rid[zone == z]
        k = len(r)
        out.append(ReadyGroup("t", name, r, NOW - rng.random(k) * 86400,
                              rng.integers(0, 4, k), rng.integers(0, 5, k),
                              rng.choice(np.array([0, 1, 3, 4]), k), np.zeros(k, np.int64),
                              31600000000 + r))
    return out


@pytest.fixture(scope="module", params=SIZES, ids=lambda n: f"{n:,}")
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    e = Engine({"t": CAMPAIGN})
    e.bulk_load(groups(request.param), {}, [], NOW)
    e.login("a", ["t"], [])
    yield e


def test_select(benchmark: object, engine: Engine) -> None:
    got = benchmark(engine.select, "a", ("t",), (), NOW)  # type: ignore[operator]
    assert got is not None


def test_next_release(benchmark: object, engine: Engine) -> None:
    def cycle() -> None:
        (lease,) = engine.next("a", ("t",), (), 1, 0, NOW)
        engine.release(lease, NOW)
    benchmark(cycle)  # type: ignore[operator]


def test_next_dispose(benchmark: object, engine: Engine) -> None:
    def cycle() -> None:
        (lease,) = engine.next("a", ("t",), (), 1, 0, NOW)
        d = Disposition(code="NA", agent="a", phone_idx=lease.phone_idx)
        engine.dispose(lease, decide(lease.record, CAMPAIGN, d, NOW), NOW, b"{}", "NA")
    benchmark(cycle)  # type: ignore[operator]


def test_expire_per_1000_leases(benchmark: object, engine: Engine) -> None:
    def setup() -> tuple[tuple[()], dict[str, object]]:
        engine.next("a", ("t",), (), 1000, 0, NOW, lease_s=60)
        return (), {}

    def run() -> None:
        assert len(engine.expire(NOW + 60)) == 1000
    benchmark.pedantic(run, setup=setup, rounds=20)  # type: ignore[attr-defined]


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"{n:,}")
def test_bulk_load(benchmark: object, n: int) -> None:
    data = groups(n)

    def build() -> Engine:
        e = Engine({"t": CAMPAIGN})
        e.bulk_load(data, {}, [], NOW)
        return e
    e = benchmark.pedantic(build, rounds=3 if n <= 10 ** 6 else 1)  # type: ignore[attr-defined]
    assert len(e) == n

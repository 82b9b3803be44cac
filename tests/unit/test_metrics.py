"""Metrics without a daemon: the engine snapshot (due now and blocked by window, callbacks
due, overdue and their age, counted once despite stale heap entries), the collector's
families, bounded label values, and the ``[metrics]`` config table."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nextcall import __version__
from nextcall.config import MetricsCfg, listen_address, load
from nextcall.core import calendar
from nextcall.core.engine import Engine
from nextcall.core.errors import ConfigError
from nextcall.core.model import Campaign, Interval, ResultCode
from nextcall.core.records import CALLBACK, PHONE_ACTIVE, PHONE_DNC, CallbackIntent, Record
from nextcall.metrics import (
    BLOCKED_REASONS,
    OTHER,
    EngineCollector,
    EngineSampler,
    Metrics,
    Snapshot,
)

ROOT = Path(__file__).resolve().parents[2]


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=calendar.zone("UTC")).timestamp()


# Wednesday 2026-03-04 12:00 UTC: 12:00 in London, 07:00 in New York, 21:00 in Tokyo
T0 = at(2026, 3, 4, 12)
CODES = {rc.code: rc for rc in (ResultCode("NA", "no answer", "retry", delay_s=600),
                                ResultCode("CB", "call back", "callback"))}
OFFICE = tuple((Interval(9 * 60, 17 * 60),) for _ in range(7))
ALL_DAY = tuple((Interval(0, 24 * 60),) for _ in range(7))


def campaign(name: str = "alpha", window: tuple[tuple[Interval, ...], ...] = OFFICE,
             enabled: bool = True) -> Campaign:
    return Campaign(name=name, codes=CODES, window=window,
                    legal_window=Interval(0, 24 * 60), enabled=enabled)


def rec(rid: int, tz: str = "Europe/London", due_at: float = 0.0, campaign: str = "alpha",
        phones: list[list[str]] | None = None, **kw: object) -> Record:
    phones = phones or [[f"+3120{rid:07d}", PHONE_ACTIVE]]
    return Record(rid, f"r{rid}", campaign, "l", phones, tz, 1, "{}", due_at=due_at,
                  **kw)  # type: ignore[arg-type]


def cbrec(rid: int, due_at: float, scope: str = "personal_then_team") -> Record:
    intent = CallbackIntent(at=due_at, timezone="UTC", local="", scope=scope, owner="ann",
                            team="red", contact_priority=4, code="CB")
    return rec(rid, tz="UTC", due_at=due_at, state=CALLBACK, owner="ann", team="red",
               callback=intent)


def engine(*camps: Campaign) -> Engine:
    camps = camps or (campaign(),)
    return Engine({c.name: c for c in camps})


def sampler(overdue_s: float = 60) -> EngineSampler:
    # a clock that never advances: every scan is free, so every sample rescans
    return EngineSampler(overdue_s, perf=lambda: 0.0)


# ------------------------------------------------------------------------- the snapshot
def test_due_records_split_by_window_and_blocked_reasons() -> None:
    e = engine()
    for i in range(3):
        e.add(rec(i + 1, tz="Europe/London"), T0)          # 12:00: open
    e.add(rec(10, tz="America/New_York"), T0)              # 07:00: closed
    e.add(rec(11, tz="Asia/Tokyo"), T0)                    # 21:00: closed
    e.add(rec(20, due_at=T0 + 3600), T0)                   # not yet due
    e.add(rec(30, phones=[["+31200000030", PHONE_DNC]]), T0)  # no callable number
    e.set_closed_counts("alpha", "exhausted", 4)
    e.login("ann", ["alpha"], [])
    camps, teams = e.scope_for("ann", None)
    [lease] = e.next("ann", camps, teams, 1, 1000, T0)
    assert lease.record.timezone == "Europe/London"

    c = sampler().sample(e, T0, {"alpha": 2}).campaigns["alpha"]

    assert c.slots == e.queues["alpha"].counts
    assert (c.slots["due"], c.slots["dormant"], c.slots["leased"], c.slots["no_number"]) \
        == (4, 1, 1, 1)
    assert c.due_now == 2 and c.blocked_window == 2
    assert c.due_now + c.blocked_window + c.blocked_disabled == c.slots["due"]
    assert c.closed == {"exhausted": 4}
    assert c.waiting == 2


def test_stale_heap_entries_are_not_counted() -> None:
    e = engine(campaign(window=ALL_DAY))
    for i in range(4):
        e.add(rec(i + 1, tz="Asia/Tokyo"), T0)
    e.login("ann", ["alpha"], [])
    camps, teams = e.scope_for("ann", None)
    # lease and give back: every record now has a stale entry behind its live one
    for lz in e.next("ann", camps, teams, 4, 1000, T0):
        e.release(lz, T0)
    c = sampler().sample(e, T0, {}).campaigns["alpha"]
    assert c.due_now == 4 and c.blocked_window == 0


def test_closed_side_counted_when_it_is_the_larger_one() -> None:
    e = engine()
    e.add(rec(1, tz="Europe/London"), T0)
    for i in range(5):
        e.add(rec(10 + i, tz="Asia/Tokyo"), T0)
    c = sampler().sample(e, T0, {}).campaigns["alpha"]
    assert (c.due_now, c.blocked_window) == (1, 5)


def test_callbacks_due_overdue_and_oldest_age() -> None:
    e = engine(campaign(window=ALL_DAY))
    e.add(cbrec(1, T0 - 30), T0)                 # due, not overdue yet
    e.add(cbrec(2, T0 - 600), T0)                # overdue, in a personal and a team heap
    e.add(cbrec(3, T0 - 7200, scope="anyone"), T0)  # overdue, the oldest
    e.add(cbrec(4, T0 + 600), T0)                # upcoming
    c = sampler(overdue_s=60).sample(e, T0, {}).campaigns["alpha"]
    assert c.callbacks_due == 3
    assert c.callbacks_overdue == 2
    assert c.oldest_callback_age_s == 7200
    assert c.slots["callback_upcoming"] == 1

    # the upcoming one falls due; the sampler promotes it as stats does
    later = sampler(overdue_s=60).sample(e, T0 + 630, {}).campaigns["alpha"]
    assert later.callbacks_due == 4 and later.slots["callback_upcoming"] == 0
    assert later.callbacks_overdue == 3  # rec 4 is 30 s late, not yet overdue
    assert later.oldest_callback_age_s == 7830


def test_a_callback_window_is_overdue_only_after_its_end() -> None:
    e = engine(campaign(window=ALL_DAY))
    win = cbrec(1, T0 - 3600)
    assert win.callback is not None
    win.callback.until = T0 + 600  # a window from an hour ago to ten minutes from now
    e.add(win, T0)
    assert sampler(overdue_s=60).sample(e, T0, {}).campaigns["alpha"].callbacks_overdue == 0
    late = sampler(overdue_s=60).sample(e, T0 + 661, {}).campaigns["alpha"]
    assert (late.callbacks_due, late.callbacks_overdue) == (1, 1)


def test_no_callbacks_means_age_zero() -> None:
    c = sampler().sample(engine(), T0, {}).campaigns["alpha"]
    assert (c.callbacks_due, c.callbacks_overdue, c.oldest_callback_age_s) == (0, 0, 0.0)


def test_disabled_campaign_blocks_its_due_records_as_disabled() -> None:
    e = engine(campaign(enabled=False))
    e.add(rec(1), T0)
    e.add(rec(2, tz="Asia/Tokyo"), T0)
    c = sampler().sample(e, T0, {}).campaigns["alpha"]
    assert not c.enabled
    assert (c.due_now, c.blocked_window, c.blocked_disabled) == (0, 0, 2)


def test_scan_reused_until_paid_back_clamped_and_redone_when_a_window_changes() -> None:
    ticks = iter([0.0, 1.0] + [2.0] * 10)  # the first scan "costs" 1 s: no rescan soon
    s = EngineSampler(60, max_scan_share=0.02, perf=lambda: next(ticks))
    e = engine()
    london, tokyo = rec(1, tz="Europe/London"), rec(2, tz="Asia/Tokyo")
    e.add(london, T0)
    e.add(tokyo, T0)
    first = s.sample(e, T0, {}).campaigns["alpha"]
    assert s.scans == 1 and (first.due_now, first.blocked_window) == (1, 1)

    # both leave the due heaps; the next sample reuses the scan, clamped to the exact total
    leases = [e.lease(r.rid, "ann", 1000, "pool", T0, 300) for r in (london, tokyo)]
    second = s.sample(e, T0 + 1, {}).campaigns["alpha"]
    assert s.scans == 1
    assert (second.slots["due"], second.due_now, second.blocked_window) == (0, 0, 0)

    # back in the heaps at 17:30 London time: a window closed, so the sampler scans at once
    evening = at(2026, 3, 4, 17, 30)
    for lz in leases:
        e.release(lz, evening)
    third = s.sample(e, evening, {}).campaigns["alpha"]
    assert s.scans == 2
    assert (third.due_now, third.blocked_window) == (0, 2)


def test_snapshot_totals() -> None:
    e = engine()
    e.add(rec(1), T0)
    e.login("ann", ["alpha"], [])
    e.login("bob", ["alpha"], [])
    e.logout("bob")
    snap = sampler().sample(e, T0, {})
    assert (snap.records_in_memory, snap.agents_logged_in, snap.leases_active) == (1, 1, 0)
    assert snap.taken_at == T0


# ------------------------------------------------------------------------- the collector
def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_collector_exposes_the_last_snapshot() -> None:
    e = engine()
    e.add(rec(1), T0)
    e.add(rec(2, tz="Asia/Tokyo"), T0)
    e.add(cbrec(3, T0 - 600), T0)
    e.set_closed_counts("alpha", "final", 7)
    now = [100.0]
    collector = EngineCollector(monotonic=lambda: now[0])
    reg = CollectorRegistry()
    reg.register(collector)
    assert not [k for k in scrape(reg) if k[0].startswith("nextcall_")], \
        "no samples before the first snapshot"

    collector.snapshot = sampler().sample(e, T0, {"alpha": 3}, taken_mono=90.0)
    got = scrape(reg)
    c = (("campaign", "alpha"),)
    assert got[("nextcall_records", (("campaign", "alpha"), ("reason", ""),
                                     ("state", "due")))] == 2
    assert got[("nextcall_records", (("campaign", "alpha"), ("reason", "final"),
                                     ("state", "closed")))] == 7
    assert got[("nextcall_records_due", c)] == 1
    assert got[("nextcall_records_blocked", c + (("reason", "window"),))] == 1
    assert {r for (n, labels) in got if n == "nextcall_records_blocked"
            for k, r in labels if k == "reason"} == set(BLOCKED_REASONS)
    assert got[("nextcall_callbacks_due", c)] == 1
    assert got[("nextcall_callbacks_overdue", c)] == 1
    assert got[("nextcall_callback_oldest_age_seconds", c)] == 600
    assert got[("nextcall_next_waiting", c)] == 3
    assert got[("nextcall_campaign_enabled", c)] == 1
    assert got[("nextcall_records_in_memory", ())] == 3
    assert got[("nextcall_snapshot_age_seconds", ())] == 10.0


def test_collector_exposes_totals_without_campaigns() -> None:
    """The scrape thread sees whole snapshots: swapping the reference is all the loop does."""
    collector = EngineCollector()
    snap = Snapshot(taken_at=0, taken_mono=0, campaigns={}, leases_active=5,
                    agents_logged_in=0, records_in_memory=0)
    collector.snapshot = snap
    families = {m.name: m for m in collector.collect()}
    assert families["nextcall_leases_active"].samples[0].value == 5


# ------------------------------------------------------------------------- counters, labels
@pytest.fixture
def metrics() -> Iterator[tuple[Metrics, CollectorRegistry]]:
    reg = CollectorRegistry()
    yield Metrics(reg, campaigns=lambda: {"alpha": campaign()}, process_metrics=False), reg


def test_label_values_stay_bounded(metrics: tuple[Metrics, CollectorRegistry]) -> None:
    m, reg = metrics
    m.request_done("next", "ok", 0.001)
    m.request_done("agent-7731", "not_a_code", 0.001)
    m.disposed("alpha", "NA")
    m.disposed("alpha", "ZZZ")
    m.disposed("gone-campaign", "NA")
    m.reminder_sent("email")
    m.reminder_failed("carrier-pigeon")
    got = scrape(reg)
    assert got[("nextcall_requests_total", (("code", "ok"), ("op", "next")))] == 1
    assert got[("nextcall_requests_total", (("code", OTHER), ("op", OTHER)))] == 1
    assert got[("nextcall_dispositions_total", (("campaign", "alpha"), ("code", "NA")))] == 1
    assert got[("nextcall_dispositions_total", (("campaign", "alpha"), ("code", OTHER)))] == 1
    assert got[("nextcall_dispositions_total", (("campaign", OTHER), ("code", OTHER)))] == 1
    assert got[("nextcall_reminders_sent_total", (("channel", "email"),))] == 1
    assert got[("nextcall_reminders_failed_total", (("channel", OTHER),))] == 1
    assert not any(bad in str(k) for k in got
                   for bad in ("agent-7731", "gone-campaign", "carrier-pigeon"))


def test_amendments_count_by_code_replaced_and_given(
        metrics: tuple[Metrics, CollectorRegistry]) -> None:
    m, reg = metrics
    m.disposed("alpha", "NA")
    m.amended("alpha", "NA", "CB")
    m.amended("alpha", "NA", "ZZZ")
    m.amended("gone-campaign", "NA", "CB")
    got = scrape(reg)
    key = "nextcall_amendments_total"
    assert got[(key, (("campaign", "alpha"), ("from_code", "NA"), ("to_code", "CB")))] == 1
    assert got[(key, (("campaign", "alpha"), ("from_code", "NA"), ("to_code", OTHER)))] == 1
    assert got[(key, (("campaign", OTHER), ("from_code", OTHER), ("to_code", OTHER)))] == 1
    # dispositions are counted as committed: the amendment does not take one back
    assert got[("nextcall_dispositions_total", (("campaign", "alpha"), ("code", "NA")))] == 1


def test_lease_series_exist_at_zero_for_every_campaign(
        metrics: tuple[Metrics, CollectorRegistry]) -> None:
    m, reg = metrics
    m.ensure_campaigns(["alpha"])
    got = scrape(reg)
    for reason in ("personal_callback", "team_callback", "pool"):
        assert got[("nextcall_leases_granted_total", (("campaign", "alpha"),
                                                      ("reason", reason)))] == 0
    assert got[("nextcall_leases_expired_total", (("campaign", "alpha"),))] == 0


def test_build_info_reminders_and_no_created_series(
        metrics: tuple[Metrics, CollectorRegistry]) -> None:
    m, reg = metrics
    m.commit_done(0.003, 4)
    text = generate_latest(reg).decode()
    assert 'nextcall_build_info{python="' in text and f'version="{__version__}"' in text
    assert 'nextcall_reminders_sent_total{channel="email"} 0.0' in text
    assert 'nextcall_reminders_sent_total{channel="event"} 0.0' in text
    assert 'nextcall_reminders_failed_total{channel="email"} 0.0' in text
    assert 'nextcall_reminders_failed_total{channel="scheduler"} 0.0' in text
    assert "nextcall_db_commit_batch_size_sum 4.0" in text
    assert "_created" not in text


# ------------------------------------------------------------------------- [metrics] config
@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    ("0.0.0.0:0", ("0.0.0.0", 0)),
    ("[::1]:9464", ("::1", 9464)),
    ("localhost:9100", ("localhost", 9100)),
    ("metrics.example.com:80", ("metrics.example.com", 80)),
])
def test_listen_address_accepts(text: str, expected: tuple[str, int]) -> None:
    assert listen_address(text) == expected


@pytest.mark.parametrize("text, problem", [
    ("9464", "host:port"),
    (":9464", "host:port"),
    ("127.0.0.1:", "port ''"),
    ("127.0.0.1:99999", "port '99999'"),
    ("127.0.0.1:http", "port 'http'"),
    ("::1:9464", "brackets"),
    ("[::zz]:9464", "not an IPv6 address"),
    ("bad host:9464", "not a host name"),
])
def test_listen_address_refuses(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("[", r"\[")):
        listen_address(text)


def test_metrics_defaults_listen_on_loopback() -> None:
    cfg = MetricsCfg()
    assert cfg.active and listen_address(cfg.address) == ("127.0.0.1", 9464)
    assert not MetricsCfg(address="off").active
    assert not MetricsCfg(address="  ").active
    assert not MetricsCfg(enabled=False).active


def _main(tmp: Path, metrics: str) -> Path:
    (tmp / "c.toml").write_text(textwrap.dedent("""
        [resultsets.s]
        [[resultsets.s.codes]]
        code = "A"
        action = "close"
        [campaigns.c]
        resultset = "s"
    """))
    p = tmp / "main.toml"
    p.write_text('include = ["c.toml"]\n' + textwrap.dedent(metrics))
    return p


def test_metrics_table_loads(tmp_path: Path) -> None:
    s = load(_main(tmp_path, """
        [metrics]
        address = "[::1]:9999"
        refresh_s = 5
        callback_overdue_s = 300
    """))
    assert s.metrics == MetricsCfg(address="[::1]:9999", refresh_s=5, callback_overdue_s=300)


def test_metrics_problems_are_reported_with_their_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(_main(tmp_path, """
            [metrics]
            address = "9464"
            refresh_s = 0
            colour = "red"
        """))
    where = {w.split(": ", 1)[1]: msg for w, msg in exc.value.problems}
    assert "host:port" in where["metrics.address"]
    assert "greater than or equal to 0.1" in where["metrics.refresh_s"]
    assert where["metrics.colour"] == "unknown key"


def test_metrics_only_in_the_main_file(tmp_path: Path) -> None:
    p = _main(tmp_path, "")
    (tmp_path / "c.toml").write_text((tmp_path / "c.toml").read_text()
                                     + '\n[metrics]\naddress = "off"\n')
    with pytest.raises(ConfigError) as exc:
        load(p)
    assert (f"{tmp_path / 'c.toml'}: metrics", "only the main file may set this") \
        in exc.value.problems


def test_shipped_config_serves_metrics_on_loopback() -> None:
    s = load(ROOT / "config" / "nextcall.toml")
    assert s.metrics.active
    assert listen_address(s.metrics.address)[0] == "127.0.0.1"


def test_recorded_events_are_counted_at_scrape_and_do_not_pile_up(
        metrics: tuple[Metrics, CollectorRegistry]) -> None:
    m, reg = metrics
    for _ in range(1000):
        m.request_done("next", "ok", 0.0002)
    m.commit_done(0.001, 3)
    assert len(m._events) == 1001
    m.drain()  # what the loop's refresher does every second without a scrape
    assert len(m._events) == 0
    got = scrape(reg)
    assert got[("nextcall_requests_total", (("code", "ok"), ("op", "next")))] == 1000
    assert got[("nextcall_request_latency_seconds_count", (("op", "next"),))] == 1000
    assert got[("nextcall_db_commit_batch_size_sum", ())] == 3

"""The Prometheus endpoint of a real in-process daemon, scraped over HTTP: counters move
with requests, the record gauges agree with ``stats``, long polls show as waiting, expiries
and overdue callbacks are counted, ``promtool check metrics`` accepts the live output, and
the endpoint is off, failing or stopped as configured."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nextcall import __version__
from nextcall.app import Daemon
from nextcall.config import load
from tests.conftest import AsyncClient, make_records, write_config
from tests.tools import require_tool

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_config(tmp: Path, table: str = 'address = "127.0.0.1:0"') -> Path:
    path = write_config(tmp)
    path.write_text(path.read_text() + f"\n[metrics]\n{table}\n")
    return path


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(load(metrics_config(tmp_path)))
    await d.start()
    yield d
    await d.stop()


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[AsyncClient]:
    c = await AsyncClient.connect(daemon.settings.daemon.socket)
    yield c
    await c.close()


async def fetch(d: Daemon) -> str:
    """The /metrics page, after a snapshot refresh (the loop's job every refresh_s)."""
    assert d.exporter is not None and d.exporter.address is not None
    d.exporter.refresh()
    host, port = d.exporter.address
    url = f"http://{host}:{port}/metrics"

    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200
            return resp.read().decode()
    return await asyncio.to_thread(get)


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


async def scrape(d: Daemon) -> Samples:
    return parse(await fetch(d))


def val(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def until(cond: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_requests_dispositions_and_leases_are_counted(
        daemon: Daemon, client: AsyncClient) -> None:
    before = await scrape(daemon)
    assert val(before, "nextcall_build_info", version=__version__,
               python=next(dict(k[1])["python"] for k in before
                           if k[0] == "nextcall_build_info")) == 1
    await client.call("records.import", campaign="t", list="l",
                      records=make_records(4, prefix="rec-9931-"))
    await client.call("agent.login", agent="agent-7731", campaigns=["t"])
    leases = (await client.call("next", agent="agent-7731", count=2))["leases"]
    assert (await client.call("dispose", lease=leases[0]["token"], code="NA"))["ok"]
    assert not (await client.call("dispose", lease=leases[1]["token"], code="SALE"))["ok"]
    assert not (await client.call("no.such.op"))["ok"]
    text = await fetch(daemon)
    got = parse(text)
    assert "agent-7731" not in text and "rec-9931" not in text, \
        "agent and record ids never become label values"

    def delta(name: str, **labels: str) -> float:
        return val(got, name, **labels) - val(before, name, **labels)
    assert delta("nextcall_requests_total", op="next", code="ok") == 1
    assert delta("nextcall_requests_total", op="dispose", code="ok") == 1
    assert delta("nextcall_requests_total", op="dispose", code="revenue_required") == 1
    assert delta("nextcall_requests_total", op="other", code="unknown_op") == 1
    assert delta("nextcall_request_latency_seconds_count", op="next") == 1
    assert delta("nextcall_next_latency_seconds_count") == 1
    assert delta("nextcall_dispositions_total", campaign="t", code="NA") == 1
    assert val(got, "nextcall_dispositions_total", campaign="t", code="SALE") == 0
    assert delta("nextcall_leases_granted_total", campaign="t", reason="pool") == 2
    assert val(got, "nextcall_leases_granted_total", campaign="t",
               reason="personal_callback") == 0
    # import, login, next (lease), dispose: each waited for a group commit
    assert delta("nextcall_db_commit_seconds_count") >= 4
    assert delta("nextcall_db_commit_batch_size_sum") >= 4
    assert val(got, "nextcall_heap_rebuild_seconds") == \
        pytest.approx(daemon.service.rebuild_stats["total_s"])
    assert val(got, "nextcall_reminders_sent_total", channel="email") == 0


async def test_record_gauges_match_stats(daemon: Daemon, client: AsyncClient) -> None:
    await client.call("records.import", campaign="t", list="l", records=make_records(6))
    await client.call("agent.login", agent="a", campaigns=["t"])
    leases = (await client.call("next", agent="a", count=3))["leases"]
    await client.call("dispose", lease=leases[0]["token"], code="NA")        # dormant
    await client.call("dispose", lease=leases[1]["token"], code="NI", note="no")  # closed
    got = await scrape(daemon)
    st = (await client.call("stats", campaign="t"))
    t = st["campaigns"]["t"]
    for state in ("dormant", "due", "callback_upcoming", "callback_due", "leased",
                  "no_number"):
        assert val(got, "nextcall_records", campaign="t", state=state, reason="") \
            == t[state], state
    assert (t["due"], t["dormant"], t["leased"]) == (3, 1, 1)
    assert val(got, "nextcall_records", campaign="t", state="closed", reason="final") \
        == t["closed"]["final"] == 1
    # campaign t is open around the clock: every due record can be handed out now
    assert val(got, "nextcall_records_due", campaign="t") == 3
    assert val(got, "nextcall_records_blocked", campaign="t", reason="window") == 0
    assert val(got, "nextcall_records_blocked", campaign="t", reason="dormant") == 1
    assert val(got, "nextcall_records_blocked", campaign="t", reason="leased") == 1
    assert val(got, "nextcall_leases_active") == st["leases"] == 1
    assert val(got, "nextcall_agents_logged_in") == st["agents_logged_in"] == 1
    assert val(got, "nextcall_records_in_memory") == st["records_in_memory"] == 5
    assert val(got, "nextcall_campaign_enabled", campaign="t") == 1


async def test_promtool_check_metrics_accepts_the_live_output(
        daemon: Daemon, client: AsyncClient) -> None:
    promtool = require_tool("promtool", "prometheus")
    # every kind of series present: counters with labels, histograms, callbacks, closed
    await client.call("records.import", campaign="t", list="l", records=make_records(3))
    await client.call("agent.login", agent="a", campaigns=["t"])
    leases = (await client.call("next", agent="a", count=3))["leases"]
    await client.call("dispose", lease=leases[0]["token"], code="NI", note="x")
    at = datetime.fromtimestamp(time.time() + 3600, UTC).strftime("%Y-%m-%dT%H:%M")
    assert (await client.call("dispose", lease=leases[1]["token"], code="CB",
                              callback={"at": at}))["ok"]
    text = await fetch(daemon)
    assert "nextcall_records{" in text and "nextcall_next_latency_seconds_bucket" in text
    done = await asyncio.to_thread(subprocess.run, [promtool, "check", "metrics"],
                                   input=text.encode(), capture_output=True, timeout=60,
                                   check=False)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert not (done.stdout + done.stderr).strip(), "no lint findings"
    assert "_created" not in text


async def test_long_poll_shows_as_waiting_until_a_record_arrives(
        daemon: Daemon, client: AsyncClient) -> None:
    await client.call("agent.login", agent="a", campaigns=["t"])
    poll = asyncio.create_task(client.call("next", agent="a", wait=30))
    await until(lambda: daemon.service.waiting["t"] == 1)
    got = await scrape(daemon)
    assert val(got, "nextcall_next_waiting", campaign="t") == 1
    assert val(got, "nextcall_records_due", campaign="t") == 0
    other = await AsyncClient.connect(daemon.settings.daemon.socket)
    try:
        await other.call("records.import", campaign="t", list="l", records=make_records(1))
    finally:
        await other.close()
    answer = await asyncio.wait_for(poll, 10)
    assert len(answer["leases"]) == 1
    got = await scrape(daemon)
    assert val(got, "nextcall_next_waiting", campaign="t") == 0
    assert val(got, "nextcall_leases_granted_total", campaign="t", reason="pool") == 1
    assert val(got, "nextcall_next_latency_seconds_count") == 1


async def test_expired_leases_and_overdue_callbacks(daemon: Daemon,
                                                    client: AsyncClient) -> None:
    offset = [0.0]
    daemon.service.clock = lambda: time.time() + offset[0]
    await client.call("records.import", campaign="t", list="l", records=make_records(2))
    await client.call("agent.login", agent="a", campaigns=["t"])
    leases = (await client.call("next", agent="a", count=2))["leases"]
    promised = time.time() + 300
    at = datetime.fromtimestamp(promised, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert (await client.call("dispose", lease=leases[0]["token"], code="CB",
                              callback={"at": at}))["ok"]
    got = await scrape(daemon)
    assert val(got, "nextcall_records", campaign="t", state="callback_upcoming",
               reason="") == 1
    assert val(got, "nextcall_callbacks_due", campaign="t") == 0

    offset[0] = 900.0  # lease_s is 60: the other lease is long gone; the callback is late
    assert (await client.call("stats"))["leases"] == 0
    got = await scrape(daemon)
    assert val(got, "nextcall_leases_expired_total", campaign="t") == 1
    assert val(got, "nextcall_leases_active") == 0
    assert val(got, "nextcall_callbacks_due", campaign="t") == 1
    assert val(got, "nextcall_callbacks_overdue", campaign="t") == 1
    age = val(got, "nextcall_callback_oldest_age_seconds", campaign="t")
    assert 500 < age < 700  # promised 300 s after the lease, looked at 900 s later


async def test_metrics_off(tmp_path: Path) -> None:
    for i, table in enumerate(('address = "off"', 'address = ""', "enabled = false")):
        root = tmp_path / str(i)
        root.mkdir()
        d = Daemon(load(metrics_config(root, table)))
        assert d.exporter is None
        await d.start()
        try:
            c = await AsyncClient.connect(d.settings.daemon.socket)
            assert (await c.call("ping"))["ok"]
            await c.close()
        finally:
            await d.stop()


async def test_address_in_use_is_logged_and_the_daemon_serves_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d = Daemon(load(metrics_config(tmp_path, f'address = "127.0.0.1:{port}"')))
        await d.start()
        try:
            c = await AsyncClient.connect(d.settings.daemon.socket)
            assert (await c.call("ping"))["ok"]
            await c.close()
            assert d.exporter is not None and d.exporter.address is None
        finally:
            await d.stop()
    lines = [r for r in caplog.records if r.getMessage().startswith("metrics_unavailable")]
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR
    assert f"127.0.0.1:{port}" in lines[0].getMessage()


async def test_endpoint_on_loopback_logged_and_closed_at_stop(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    d = Daemon(load(metrics_config(tmp_path)))
    await d.start()
    assert d.exporter is not None and d.exporter.address is not None
    host, port = d.exporter.address
    assert host == "127.0.0.1" and port > 0
    assert "nextcall_build_info" in await fetch(d)
    await d.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=5).close()
    served = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith("metrics_serving")]
    assert served == [f"metrics_serving address=127.0.0.1 port={port} path=/metrics"]


async def test_reload_reports_metrics_changes_and_keeps_the_endpoint(
        daemon: Daemon, client: AsyncClient) -> None:
    assert daemon.exporter is not None
    before = daemon.exporter.address
    path = Path(daemon.settings.path)
    path.write_text(path.read_text().replace('address = "127.0.0.1:0"',
                                             'address = "127.0.0.1:0"\nrefresh_s = 5'))
    answer = await client.call("config.reload")
    assert answer["ok"] and answer["applied"]
    assert answer["restart_required"] == ["metrics.refresh_s"]
    assert daemon.service.settings.metrics.refresh_s == 1.0, "applied at the next restart"
    assert daemon.exporter.address == before
    assert "nextcall_build_info" in await fetch(daemon)

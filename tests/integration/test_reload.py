"""Hot reload: ``config.reload`` (dry run and apply) and SIGHUP; a bad config is refused
and the running one stays; leases and requests survive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nextcall.app import Daemon
from nextcall.client import Client
from nextcall.config import load
from tests.conftest import CODES, AsyncClient, make_records, wait_until_serving, write_config

BIN = Path(sys.executable).parent / "nextcall"
EXTRA_CODE = '''
[[resultsets.std.codes]]
code = "NEW"
action = "close"
'''


def _camps(tmp: Path) -> str:
    return (tmp / "camps.toml").read_text()


async def test_dry_run_reports_and_changes_nothing(daemon: Daemon, client: AsyncClient,
                                                   tmp_path: Path) -> None:
    await client.call("records.import", campaign="t", list="l", records=[
        {**r, "priority": i % 3} for i, r in enumerate(make_records(6))])
    (tmp_path / "codes.toml").write_text(CODES.replace('code = "OLD"', 'code = "OLDER"')
                                         + EXTRA_CODE)
    camps = _camps(tmp_path).replace('mon = ["00:00-24:00"]', 'mon = []') \
        .replace('tue = ["00:00-24:00"]', 'tue = []').replace('wed = ["00:00-24:00"]',
                                                              'wed = []') \
        .replace('thu = ["00:00-24:00"]', 'thu = []').replace('fri = ["00:00-24:00"]',
                                                              'fri = []') \
        .replace('sat = ["00:00-24:00"]', 'sat = []').replace('sun = ["00:00-24:00"]',
                                                              'sun = []')
    camps += "\n[campaigns.t.scoring]\npriority = -100\n"
    (tmp_path / "camps.toml").write_text(camps)
    ans = await client.call("config.reload", dry_run=True)
    assert ans["ok"] and ans["dry_run"] is True and ans["applied"] is False
    (t,) = ans["campaigns"]
    assert t["campaign"] == "t" and t["status"] == "changed"
    assert t["codes_added"] == ["NEW", "OLDER"] and t["codes_removed"] == ["OLD"]
    assert set(t["settings"]) == {"window", "scoring"}
    assert t["eligibility_changed"] == 6, "a closed window takes every due record out"
    assert t["order_changed"] == 4, "records with priority 1 and 2 change score"
    codes = (await client.call("campaigns"))["campaigns"][0]["codes"]
    assert "NEW" not in {c["code"] for c in codes}, "a dry run applies nothing"
    assert len((await client.call("next", agent="a", campaigns=["t"]))["leases"]) == 1


async def test_apply_keeps_leases_and_switches_codes_and_order(
        daemon: Daemon, client: AsyncClient, tmp_path: Path) -> None:
    await client.call("records.import", campaign="t", list="l", records=[
        {**r, "priority": i} for i, r in enumerate(make_records(4))])
    held = (await client.call("next", agent="a", campaigns=["t"]))["leases"][0]
    assert held["record"]["priority"] == 3
    (tmp_path / "codes.toml").write_text(CODES + EXTRA_CODE)
    (tmp_path / "camps.toml").write_text(_camps(tmp_path)
                                         + "\n[campaigns.t.scoring]\npriority = -100\n")
    ans = await client.call("config.reload")
    assert ans["ok"] and ans["applied"] is True
    assert ans["restart_required"] == []
    # lowest priority first now
    nxt = (await client.call("next", agent="b", campaigns=["t"]))["leases"][0]
    assert nxt["record"]["priority"] == 0
    # the lease taken before the reload is disposed with a code that did not exist then
    done = await client.call("dispose", lease=held["token"], code="NEW")
    assert done["ok"] and done["state"] == "closed", done


async def test_bad_config_is_refused_and_old_one_stays(daemon: Daemon, client: AsyncClient,
                                                       tmp_path: Path) -> None:
    await client.call("records.import", campaign="t", list="l", records=make_records(2))
    (tmp_path / "camps.toml").write_text(_camps(tmp_path).replace("max_attempts = 3",
                                                                  "max_attempts = -1"))
    ans = await client.call("config.reload")
    assert not ans["ok"] and ans["error"]["code"] == "bad_config"
    assert "campaigns.t.max_attempts" in ans["error"]["message"]
    lease = (await client.call("next", agent="a", campaigns=["t"]))["leases"][0]
    assert (await client.call("dispose", lease=lease["token"], code="NA"))["ok"]


async def test_daemon_settings_need_a_restart(daemon: Daemon, client: AsyncClient,
                                             tmp_path: Path) -> None:
    main = tmp_path / "nextcall.toml"
    main.write_text(main.read_text().replace("lease_s = 60", "lease_s = 90"))
    ans = await client.call("config.reload")
    assert ans["ok"] and ans["restart_required"] == ["lease_s"]
    assert daemon.settings.daemon.lease_s == 60


@pytest.fixture
async def agent_only(tmp_path: Path):  # type: ignore[no-untyped-def]
    d = Daemon(load(write_config(tmp_path, auth="trust_own_uid = false")))
    await d.start()
    c = await AsyncClient.connect(d.settings.daemon.socket)
    yield c
    await c.close()
    await d.stop()


async def test_reload_needs_admin(agent_only: AsyncClient) -> None:
    ans = await agent_only.call("config.reload", dry_run=True)
    assert ans["error"]["code"] == "forbidden"


def test_sighup_reloads_a_running_daemon(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        p = subprocess.Popen([str(BIN), "--config", str(cfg), "serve"], stdout=out,
                             stderr=subprocess.STDOUT)
    sock = str(tmp_path / "s.sock")
    try:
        wait_until_serving(sock)
        (tmp_path / "codes.toml").write_text(CODES + EXTRA_CODE)
        os.kill(p.pid, signal.SIGHUP)

        def codes() -> set[str]:
            with Client(sock) as c:
                return {x["code"] for x in c.call("campaigns")["campaigns"][0]["codes"]}
        for _ in range(200):
            if "NEW" in codes():
                break
            time.sleep(0.05)
        assert "NEW" in codes()
        (tmp_path / "codes.toml").write_text("this is not toml [")
        os.kill(p.pid, signal.SIGHUP)
        for _ in range(200):
            if "config_problem" in log.read_text():
                break
            time.sleep(0.05)
        assert "config_problem" in log.read_text()
        assert "NEW" in codes(), "the running config stays after a refused reload"
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_cli_reload_dry_run(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    p = subprocess.Popen([str(BIN), "--config", str(cfg), "serve"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = str(tmp_path / "s.sock")
    try:
        wait_until_serving(sock)
        (tmp_path / "codes.toml").write_text(CODES + EXTRA_CODE)
        out = subprocess.run([str(BIN), "--socket", sock, "reload", "--dry-run"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert "NEW" in out.stdout and "nothing applied (dry run)" in out.stdout
        out = subprocess.run([str(BIN), "--socket", sock, "reload"], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0 and "applied" in out.stdout
        (tmp_path / "codes.toml").write_text("broken [")
        out = subprocess.run([str(BIN), "--socket", sock, "reload"], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 1 and "bad_config" in out.stderr
    finally:
        p.terminate()
        p.wait(30)

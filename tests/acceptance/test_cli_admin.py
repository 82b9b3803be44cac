"""The admin CLI against a real daemon: hold -> resolution -> reopen, a special closure
reopened by schedule-callback, typed fields from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nextcall.client import Client
from tests.conftest import CODES, make_records, wait_until_serving, write_config

BIN = Path(sys.executable).parent / "nextcall"
EXTRA = textwrap.dedent("""
    [[resultsets.std.codes]]
    code = "APPT"
    action = "hold"
    [[resultsets.std.codes]]
    code = "SPC"
    action = "special"
    reopen_teams = ["admins"]
    [[resultsets.std.codes]]
    code = "QUOTE"
    action = "close"
    [[resultsets.std.codes.fields]]
    name = "value"
    type = "money"
    required = true
    [[resultsets.std.codes.fields]]
    name = "chance"
    type = "percent"
""")


@pytest.fixture
def sock(tmp_path: Path) -> Iterator[str]:
    cfg = write_config(tmp_path)
    (tmp_path / "codes.toml").write_text(CODES + EXTRA)
    p = subprocess.Popen([str(BIN), "--config", str(cfg), "serve"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = str(tmp_path / "s.sock")
    wait_until_serving(path)
    with Client(path) as c:
        c.call("records.import", campaign="t", list="l", records=make_records(3))
        # callback owners must be agents of the campaign
        c.call("agent.login", agent="a", campaigns=["t"])
    yield path
    p.terminate()
    p.wait(30)


def cli(sock: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), "--socket", sock, *args], capture_output=True,
                          text=True, timeout=60)


def lease(sock: str) -> dict[str, object]:
    out = cli(sock, "--json", "next", "--agent", "a", "--campaign", "t")
    return json.loads(out.stdout)["leases"][0]  # type: ignore[no-any-return]


def test_hold_then_reopen(sock: str) -> None:
    lz = lease(sock)
    r = cli(sock, "dispose", str(lz["token"]), "APPT")
    assert r.returncode == 1 and "appointment_required" in r.stderr
    soon = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 2))
    r = cli(sock, "dispose", str(lz["token"]), "APPT", "--appointment-at", soon)
    assert r.returncode == 0 and "held" in r.stdout, r.stderr
    rid = lz["record"]["id"]  # type: ignore[index]
    for _ in range(100):
        res = json.loads(cli(sock, "--json", "resolution").stdout)["records"]
        if res:
            break
        time.sleep(0.05)
    assert [x["id"] for x in res] == [rid]
    r = cli(sock, "reopen", rid)
    assert r.returncode == 0 and "ready" in r.stdout
    assert json.loads(cli(sock, "--json", "resolution").stdout)["records"] == []


def test_special_reopened_by_schedule_callback(sock: str) -> None:
    lz = lease(sock)
    rid = lz["record"]["id"]  # type: ignore[index]
    assert cli(sock, "dispose", str(lz["token"]), "SPC").returncode == 0
    when = "2099-06-01T12:00"
    r = cli(sock, "schedule-callback", rid, when, "--owner", "a", "--tz", "UTC")
    assert r.returncode == 0 and "callback" in r.stdout and "for a" in r.stdout, r.stderr
    got = json.loads(cli(sock, "--json", "get", rid).stdout)["record"]
    assert got["state"] == "callback" and got["history"][-1]["code"] == "@callback"


def test_typed_fields_from_the_command_line(sock: str) -> None:
    lz = lease(sock)
    r = cli(sock, "dispose", str(lz["token"]), "QUOTE", "--field", "chance=150")
    assert r.returncode == 1 and "fields.value" in r.stderr
    r = cli(sock, "dispose", str(lz["token"]), "QUOTE", "--field", "value=1200.5",
            "--field", "chance=40")
    assert r.returncode == 0, r.stderr
    got = json.loads(cli(sock, "--json", "get", str(lz["record"]["id"])).stdout)  # type: ignore[index]
    assert got["record"]["history"][-1]["fields"] == {"value": 1200.5, "chance": 40}


def test_a_socket_list_skips_a_missing_socket(sock: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.sock")
    r = cli(f"{missing},{sock}", "ping")
    assert r.returncode == 0, r.stderr
    assert "you are admin" in r.stdout and f"at {sock}" in r.stdout

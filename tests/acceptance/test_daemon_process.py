"""The real daemon as a subprocess, driven by the stdlib client and the real CLI:
concurrent agents never share a record, and ``kill -9`` loses nothing acknowledged."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nextcall.client import Client, ClientError
from tests.conftest import make_records, write_config

BIN = Path(sys.executable).parent / "nextcall"
N_RECORDS = 300
N_CLIENTS = 20


def _config(tmp: Path) -> Path:
    path = write_config(tmp)
    camps = (tmp / "camps.toml").read_text().replace("max_attempts = 3",
                                                     "max_attempts = 1000")
    (tmp / "camps.toml").write_text(camps.replace("grace_s = 60", "grace_s = 60\nlease_s = 300"))
    return path


class Proc:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.sock = str(config.parent / "s.sock")
        self.p: subprocess.Popen[bytes] | None = None
        self.log = config.parent / "daemon.log"

    def start(self) -> None:
        # output to a file: an unread pipe could fill up and stall the daemon
        with self.log.open("ab") as out:
            self.p = subprocess.Popen([str(BIN), "--config", str(self.config), "serve"],
                                      stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with Client(self.sock, timeout=2) as c:
                    c.call("ping")
                    return
            except (OSError, ClientError):
                if self.p.poll() is not None:
                    raise RuntimeError(self.output()) from None
                time.sleep(0.05)
        raise RuntimeError("daemon did not start")

    def kill9(self) -> None:
        assert self.p is not None
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)

    def term(self) -> int:
        assert self.p is not None
        self.p.send_signal(signal.SIGTERM)
        return self.p.wait(30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def proc(tmp_path: Path) -> Iterator[Proc]:
    p = Proc(_config(tmp_path))
    p.start()
    yield p
    if p.p is not None and p.p.poll() is None:
        p.p.kill()
        p.p.wait(10)


def test_concurrent_agents_never_share_a_record_and_kill9_loses_nothing(proc: Proc) -> None:
    with Client(proc.sock) as c:
        ans = c.call("records.import", campaign="t", list="l", records=make_records(N_RECORDS))
        assert ans["inserted"] == N_RECORDS

    lock = threading.Lock()
    held: dict[str, str] = {}  # record id -> agent, while a lease is live
    violations: list[str] = []
    acked: list[tuple[int, str, str]] = []  # (lid, record, code) acknowledged
    open_leases: dict[str, dict[str, Any]] = {}  # token -> lease, leased and not disposed
    sent: dict[str, tuple[str, dict[str, Any]]] = {}  # token -> dispose sent, maybe unanswered
    stop = threading.Event()
    cycles = [0]

    def agent(k: int) -> None:
        rng = random.Random(k)
        name = f"agent{k}"
        try:
            with Client(proc.sock, timeout=10) as c:
                while not stop.is_set():
                    leases = c.call("next", agent=name, campaigns=["t"])["leases"]
                    if not leases:
                        continue
                    lz = leases[0]
                    rid = lz["record"]["id"]
                    with lock:
                        if rid in held:
                            violations.append(f"{rid} leased to {name} while {held[rid]} "
                                              "holds it")
                        held[rid] = name
                        open_leases[lz["token"]] = lz
                    code = rng.choice(["NA0"] * 28 + ["SALE", "CB"])  # most records stay in play
                    fields: dict[str, Any] = {}
                    if code == "SALE":
                        fields["revenue"] = 5.0
                    if code == "CB":
                        fields["callback"] = {"at": "2099-01-01T12:00", "timezone": "UTC"}
                    with lock:
                        # released from our bookkeeping before the daemon may re-issue it
                        held.pop(rid, None)
                        # in flight: the kill may come before or after it is committed
                        sent[lz["token"]] = (code, fields)
                    c.call("dispose", lease=lz["token"], code=code, **fields)
                    with lock:
                        acked.append((int(lz["token"].split(".")[0]), rid, code))
                        open_leases.pop(lz["token"], None)
                        cycles[0] += 1
        except (OSError, ConnectionError, ClientError, ValueError):
            return  # the daemon was killed under us

    threads = [threading.Thread(target=agent, args=(k,), daemon=True)
               for k in range(N_CLIENTS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while cycles[0] < 3000 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill9()
    stop.set()
    for t in threads:
        t.join(15)
    assert not violations, violations[:5]
    assert cycles[0] >= 200, f"the load loop barely ran ({cycles[0]} cycles)"

    db = proc.config.parent / "db.sqlite"
    con = sqlite3.connect(db)
    history_lids = [r[0] for r in con.execute("SELECT lid FROM history")]
    ids = [r[0] for r in con.execute("SELECT id FROM records")]
    con.close()
    assert len(history_lids) == len(set(history_lids)), "a disposition was stored twice"
    missing = {lid for lid, _, _ in acked} - set(history_lids)
    assert not missing, f"acknowledged dispositions lost: {sorted(missing)[:10]}"
    assert len(ids) == N_RECORDS and len(set(ids)) == N_RECORDS

    proc.start()
    with Client(proc.sock) as c:
        # every lease acknowledged before the kill and not disposed is still disposable
        for token, lz in list(open_leases.items()):
            code, fields = sent.get(token, ("NA0", {}))
            # a lease never disposed takes a result; a dispose that was in flight at the
            # kill either committed (the same request is answered as a duplicate) or not
            # (it is applied now); either way the lease is not lost
            ans = c.call("dispose", lease=token, code=code, **fields)
            assert ans["record"] == lz["record"]["id"]
            assert ans["code"] == code
        st = c.call("stats", campaign="t")["campaigns"]["t"]
        total = st["due"] + st["dormant"] + st["callback_due"] + st["callback_upcoming"] \
            + st["leased"] + sum(st["closed"].values())
        assert total == N_RECORDS, st
        sales = sum(1 for _, _, code in acked if code == "SALE")
        assert st["closed"].get("final", 0) >= sales
    assert proc.term() == 0


def _cli(proc: Proc, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), "--socket", proc.sock, *args], capture_output=True,
                          text=True, timeout=60)


def test_cli_tour_and_csv_import(proc: Proc, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,phone,name\nc1,+31612345678,Ann\nc2,not-a-number,Bob\nc1,+31612345679,"
                   "Cy\n")
    r = _cli(proc, "import", str(bad), "--campaign", "t", "--list", "l1")
    assert r.returncode == 1
    assert f"{bad}:3:" in r.stderr and "not-a-number" in r.stderr
    assert f"{bad}:4:" in r.stderr and "already on line 2" in r.stderr
    assert "nothing imported" in r.stderr
    st = json.loads(_cli(proc, "--json", "stats").stdout)
    assert st["campaigns"] == {} or st["campaigns"]["t"]["due"] == 0

    good = tmp_path / "good.csv"
    rows = ["id,phone,phone2,priority,name"]
    rows += [f"g{i},+3161234{i:04d},,{i % 3},Name {i}" for i in range(2500)]
    good.write_text("\n".join(rows) + "\n")
    r = _cli(proc, "import", str(good), "--campaign", "t", "--list", "l1")
    assert r.returncode == 0, r.stderr
    assert "2500 new" in r.stdout

    assert _cli(proc, "login", "alice", "--campaign", "t").returncode == 0
    r = _cli(proc, "--json", "next", "--agent", "alice")
    lease = json.loads(r.stdout)["leases"][0]
    assert lease["record"]["priority"] == 2, "highest priority first"
    assert lease["record"]["data"]["name"].startswith("Name ")
    r = _cli(proc, "dispose", lease["token"], "SALE")
    assert r.returncode == 1 and "revenue_required" in r.stderr
    r = _cli(proc, "dispose", lease["token"], "SALE", "--revenue", "25")
    assert r.returncode == 0 and "closed" in r.stdout
    r = _cli(proc, "--json", "get", lease["record"]["id"])
    rec = json.loads(r.stdout)["record"]
    assert rec["state"] == "closed" and rec["history"][0]["code"] == "SALE"
    r = _cli(proc, "stats")
    assert r.returncode == 0 and "t" in r.stdout
    assert proc.term() == 0
    assert "daemon_stopped exit=0" in proc.output()


def test_sigterm_drains_a_long_poll(proc: Proc) -> None:
    c = Client(proc.sock, timeout=30).connect()
    rid = c.send("next", agent="a", campaigns=["t"], wait=60)
    time.sleep(0.3)
    assert proc.p is not None
    proc.p.send_signal(signal.SIGTERM)
    msg = c.receive(rid)
    assert msg["ok"] and msg["leases"] == []
    assert proc.p.wait(30) == 0
    c.close()
    assert not os.path.exists(proc.sock), "the daemon removes its own socket"

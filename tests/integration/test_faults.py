"""Faults the daemon survives, each with the real daemon: a full disk, a database locked
by another process, a long outside reader, the wall clock set back and forth, and the
whole process stopped (SIGSTOP) for longer than a lease. A side task dying is
``test_lifecycle.py``'s.

A full disk and SIGSTOP need a process of their own: the daemon runs as a subprocess.
Locks and clock steps run the daemon in-process on a real socket and database, with the
service's clock under the test's control. Nothing asserts how fast anything is: the
timeouts are generous and only turn a hang into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nextcall.app import EXIT_FAILURE, Daemon
from nextcall.client import Client, ClientError
from nextcall.clock import WallClock
from nextcall.config import load
from nextcall.storage import sql as S
from nextcall.storage import writer as W
from tests.conftest import AsyncClient, make_records, write_config
from tests.integration.shipped import ok, refused

NEXTCALL = Path(sys.executable).parent / "nextcall"
#: only there so that a hang fails the test
HANG_S = 60.0


@pytest.fixture(autouse=True)
def _no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not under systemd unless a test says so."""
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID", "LISTEN_FDS"):
        monkeypatch.delenv(key, raising=False)


def config(tmp: Path, *, database: Path | None = None, extra_daemon: str = "",
           metrics: str = "enabled = false", campaigns: str | None = None) -> Path:
    """The test config (campaign ``t``, always open), the metrics endpoint off unless
    asked for (several daemons run at once; none may hold the default port)."""
    path = write_config(tmp, extra_daemon=extra_daemon, campaigns=campaigns)
    text = path.read_text() + f"\n[metrics]\n{metrics}\n"
    if database is not None:
        text = text.replace(f"sqlite+aiosqlite:///{tmp}/db.sqlite",
                            f"sqlite+aiosqlite:///{database}")
    path.write_text(text)
    return path


async def eventually(check: Callable[[], Any], what: str, step: Callable[[], Any] | None = None
                     ) -> None:
    """Wait until ``check()`` is true, calling the coroutine function ``step`` (if any)
    between looks; fails after HANG_S."""
    deadline = time.monotonic() + HANG_S
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        if step is not None:
            await step()
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------ a daemon subprocess
class Proc:
    """``nextcall serve`` as a subprocess, its output in a file (an unread pipe could fill
    up and stall it)."""

    def __init__(self, cfg: Path) -> None:
        self.cfg = cfg
        self.sock = str(cfg.parent / "s.sock")
        self.log = cfg.parent / "daemon.log"
        self.p: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None,
              preexec: Callable[[], None] | None = None) -> None:
        """Start and wait until it answers ``ping``."""
        with self.log.open("ab") as out:
            self.p = subprocess.Popen([str(NEXTCALL), "--config", str(self.cfg), "serve"],
                                      stdout=out, stderr=subprocess.STDOUT, env=env,
                                      preexec_fn=preexec)
        deadline = time.monotonic() + HANG_S
        while True:
            try:
                with Client(self.sock, timeout=5) as c:
                    c.call("ping")
                return
            except (OSError, ClientError):
                assert self.p.poll() is None, f"the daemon exited: {self.output()}"
                assert time.monotonic() < deadline, f"no ping: {self.output()}"
                time.sleep(0.05)

    def wait(self) -> int:
        assert self.p is not None
        return self.p.wait(HANG_S)

    def term(self) -> int:
        assert self.p is not None
        self.p.send_signal(signal.SIGTERM)
        return self.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGCONT)  # a stopped process dies only once resumed
            self.p.kill()
            self.p.wait(HANG_S)


# ------------------------------------------------------------------ a full disk
class SmallDisk:
    """Where the database lives, with little room: a 4 MiB tmpfs, or (where mounting is
    not permitted) a 4 MiB limit on the size of any file the daemon writes
    (``RLIMIT_FSIZE``: a write beyond it fails with ``EFBIG``)."""

    SIZE = 4 << 20

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path

    def limit(self) -> None:
        """In the daemon's process, before it runs: the file size limit (rlimit only).
        SIGXFSZ is ignored, so a write past it is an error, not a kill."""
        if self.kind == "rlimit":
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.SIZE, self.SIZE))

    def free(self) -> None:
        """Space comes back (the next daemon runs without the file size limit)."""
        if self.kind == "tmpfs":
            subprocess.run(["mount", "-o", "remount,size=256m", str(self.path)], check=True,
                           capture_output=True, timeout=60)


@pytest.fixture(params=["tmpfs", "rlimit"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SmallDisk]:
    path = tmp_path / "disk"
    path.mkdir()
    if request.param == "tmpfs":
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root and mount(8); the rlimit variant runs")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SmallDisk.SIZE},mode=0700",
                            "tmpfs", str(path)], capture_output=True, text=True, timeout=60)
        if r.returncode:
            pytest.skip(f"mount -t tmpfs failed ({r.stderr.strip()}); the rlimit variant runs")
        try:
            yield SmallDisk("tmpfs", path)
        finally:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=60)
        return
    try:
        resource.getrlimit(resource.RLIMIT_FSIZE)
    except (AttributeError, OSError) as exc:
        pytest.skip(f"RLIMIT_FSIZE is not available here ({exc!r})")
    yield SmallDisk("rlimit", path)


def _fill(c: Client) -> tuple[list[str], ClientError]:
    """Import until a write fails; the ids of every record acknowledged, and the error."""
    blob = "x" * 2000
    acked: list[str] = []
    for k in range(60):  # 60 x 400 x 2 KB: far beyond the 4 MiB
        recs = make_records(400, prefix=f"b{k}-", data={"blob": blob})
        try:
            ans = c.call("records.import", campaign="t", list="l", records=recs)
        except ClientError as exc:
            return acked, exc
        assert ans["inserted"] == 400, ans
        acked += [r["id"] for r in recs]
    raise AssertionError("the disk never filled up")


def test_a_full_disk_fails_writes_typed_and_a_restart_keeps_all_acknowledged(
        small_disk: SmallDisk, tmp_path: Path) -> None:
    """Fail-stop: the commit that finds no room fails its request with ``unavailable``
    and the daemon exits 70; once there is room again, a restart serves everything that
    was acknowledged, and nothing that was not."""
    cfg = config(tmp_path, database=small_disk.path / "db.sqlite",
                 extra_daemon="max_line_bytes = 4194304")
    proc = Proc(cfg)
    try:
        proc.start(preexec=small_disk.limit)
        with Client(proc.sock, timeout=HANG_S) as c:
            first = make_records(3, prefix="a")
            c.call("records.import", campaign="t", list="l", records=first)
            c.call("agent.login", agent="ann", campaigns=["t"])
            lease = c.call("next", agent="ann")["leases"][0]
            sold = c.call("dispose", lease=lease["token"], code="SALE", revenue=5)
            acked, failure = _fill(c)
        assert failure.code == "unavailable", failure
        assert proc.wait() == EXIT_FAILURE, proc.output()
        out = proc.output()
        assert "CRITICAL nextcall.app storage_failed" in out
        assert re.search(r"full|EFBIG|too large|disk I/O", out), out[-2000:]

        small_disk.free()
        proc.start()
        with Client(proc.sock, timeout=HANG_S) as c:
            st = c.call("stats", campaign="t")["campaigns"]["t"]
            assert st["due"] + sum(st["closed"].values()) == len(first) + len(acked), st
            got = c.call("record.get", record=sold["record"])["record"]
            assert got["state"] == "closed"
            assert [h["code"] for h in got["history"]] == ["SALE"]
            for rid in (acked[0], acked[-1]) if acked else ():
                assert c.call("record.get", record=rid)["record"]["id"] == rid
            failed_chunk = f"b{len(acked) // 400}-0"
            with pytest.raises(ClientError) as nf:
                c.call("record.get", record=failed_chunk)
            assert nf.value.code == "not_found", "a record of the failed commit is there"
            more = make_records(1, prefix="after")
            assert c.call("records.import", campaign="t", list="l",
                          records=more)["inserted"] == 1
        assert proc.term() == 0, proc.output()
    finally:
        proc.kill()


# ------------------------------------------------------------------ locks
@contextlib.asynccontextmanager
async def started(tmp: Path) -> AsyncIterator[tuple[Daemon, AsyncClient]]:
    """A started in-process daemon (metrics off) with three records and ``ann`` logged
    in, and an admin client."""
    d = Daemon(load(config(tmp)))
    await asyncio.wait_for(d.start(), HANG_S)
    c = await AsyncClient.connect(d.settings.daemon.socket)
    try:
        await ok(c, "records.import", campaign="t", list="l", records=make_records(3))
        await ok(c, "agent.login", agent="ann", campaigns=["t"])
        yield d, c
    finally:
        await c.close()
        await asyncio.wait_for(d.stop(), HANG_S)


@contextlib.contextmanager
def outside(d: Daemon, begin: str) -> Iterator[None]:
    """Another process's transaction on the daemon's database, open while in the block."""
    con = sqlite3.connect(d.store.sqlite_path or "", isolation_level=None, timeout=0)
    try:
        con.execute(begin)
        con.execute("SELECT count(*) FROM records").fetchone()
        yield
    finally:
        con.rollback()
        con.close()


async def test_an_outside_write_lock_holds_writes_back_and_nothing_else(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A write waits for the lock, up to the bound, without blocking the event loop:
    pings and reads are answered meanwhile, and the write commits once the lock is
    free."""
    caplog.set_level(logging.INFO)
    async with started(tmp_path) as (d, c):
        other = await AsyncClient.connect(d.settings.daemon.socket)
        lease = (await ok(c, "next", agent="ann"))["leases"][0]
        with outside(d, "BEGIN IMMEDIATE"):
            await asyncio.sleep(0.1)  # a lone request: it would commit on the event loop
            dispose = asyncio.create_task(c.call("dispose", lease=lease["token"], code="SALE",
                                                 revenue=5))
            await eventually(lambda: any(m.startswith("sqlite_write_lock_busy")
                                         for m in caplog.messages), "a write waits")
            await ok(other, "ping")
            st = await ok(other, "stats", campaign="t")
            assert st["campaigns"]["t"]["leased"] == 0  # memory is ahead of the commit
            got = await ok(other, "record.get", record=lease["record"]["id"])
            assert got["record"]["history"] == []  # the database is not, yet
            assert not dispose.done()
        assert (await asyncio.wait_for(dispose, HANG_S))["ok"]
        got = await ok(other, "record.get", record=lease["record"]["id"])
        assert [h["code"] for h in got["record"]["history"]] == ["SALE"]
        assert not d.stop_event.is_set()
        await other.close()


async def running(d: Daemon) -> asyncio.Task[int]:
    """``d.run()`` as a task, once the daemon serves."""
    task = asyncio.create_task(d.run(), name="test-daemon-run")
    started = asyncio.create_task(d.started.wait())
    await asyncio.wait([task, started], timeout=HANG_S, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        started.cancel()
        raise AssertionError(f"the daemon did not start: {task}")
    return task


async def test_a_write_lock_held_past_the_bound_fails_typed_and_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Past ``BUSY_TIMEOUT_S`` (shortened here) the write fails with ``unavailable`` and
    the daemon stops with 70; after a restart the acknowledged lease is there and the
    unacknowledged disposition is not."""
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(W, "BUSY_TIMEOUT_S", 0.5)
    settings = load(config(tmp_path))
    d = Daemon(settings)
    run = await running(d)
    c = await AsyncClient.connect(settings.daemon.socket)
    try:
        await ok(c, "records.import", campaign="t", list="l", records=make_records(2))
        await ok(c, "agent.login", agent="ann", campaigns=["t"])
        lease = (await ok(c, "next", agent="ann"))["leases"][0]
        with outside(d, "BEGIN IMMEDIATE"):
            ans = await c.call("dispose", lease=lease["token"], code="SALE", revenue=5)
            refused(ans, "unavailable")
            assert await asyncio.wait_for(run, HANG_S) == EXIT_FAILURE
    finally:
        await c.close()
    assert any(m.startswith("storage_failed") for m in caplog.messages)

    again = Daemon(settings)
    await asyncio.wait_for(again.start(), HANG_S)
    c = await AsyncClient.connect(settings.daemon.socket)
    try:
        st = (await ok(c, "stats", campaign="t"))["campaigns"]["t"]
        assert st["leased"] == 1 and sum(st["closed"].values()) == 0, st
        ans = await ok(c, "dispose", lease=lease["token"], code="SALE", revenue=5)
        assert "duplicate" not in ans
        got = await ok(c, "record.get", record=lease["record"]["id"])
        assert [h["code"] for h in got["record"]["history"]] == ["SALE"]
    finally:
        await c.close()
        await asyncio.wait_for(again.stop(), HANG_S)


async def test_a_long_outside_reader_blocks_no_write_and_the_log_is_rewound_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """WAL: a reader on an old snapshot (a backup, a ``sqlite3`` session) never blocks a
    commit. The checkpointer asks for the log to be rewound (here after every commit),
    also when every write commits on the event loop; the rewind does not wait for the
    reader (it would hold every commit up, here for an hour), it is tried again until the
    reader has gone, and then it succeeds."""
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(S, "WAL_RESET_BYTES", 0)
    monkeypatch.setattr(W, "BUSY_TIMEOUT_S", 3600.0)
    n = 0
    async with started(tmp_path) as (d, c):
        writer = d.store.writer
        assert isinstance(writer, W.SqliteWriter)

        async def lone_write() -> None:
            nonlocal n
            n += 1
            await asyncio.sleep(0.1)  # lone writes: each would commit on the event loop
            await ok(c, "records.import", campaign="t", list="l",
                     records=make_records(1, prefix=f"w{n}-"))

        with outside(d, "BEGIN"):
            await eventually(lambda: "wal_reset_blocked reason=reader_on_old_snapshot"
                             in caplog.messages, "a rewind tried with the reader there",
                             lone_write)
            await lone_write()  # writes go on
            assert writer.resets == 0
        await eventually(lambda: writer.resets > 0, "the log rewound", lone_write)
        assert "wal_reset_done after=blocked" in caplog.messages
        assert not [m for m in caplog.messages if m.startswith("wal_checkpoint_failed")]
        assert not d.stop_event.is_set()


# ------------------------------------------------------------------ the wall clock
#: a campaign open 09:00-17:00 UTC every day, 60 s leases
WINDOW = textwrap.dedent("""
    [campaigns.t]
    resultset = "std"
    max_attempts = 3
    grace_s = 60
    lease_s = 60
    legal_window = "08:00-21:00"
    timezone = "UTC"
    [campaigns.t.window]
""") + "".join(f'{d} = ["09:00-17:00"]\n' for d in
               ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))


class Clocks:
    """The wall clock and a clock of elapsed time, both under the test's control."""

    def __init__(self, wall: float) -> None:
        self.wall = wall
        self.elapsed = 1000.0

    def advance(self, seconds: float) -> None:
        """Time passes."""
        self.wall += seconds
        self.elapsed += seconds

    def set_to(self, hhmm: str) -> None:
        """Someone sets the wall clock to ``hhmm`` UTC on the same day; no time passes."""
        day = datetime.fromtimestamp(self.wall, UTC).date().isoformat()
        self.wall = datetime.fromisoformat(f"{day}T{hhmm}:00+00:00").timestamp()

    def step(self, seconds: float) -> None:
        """Someone sets the wall clock by ``seconds``; no time passes."""
        self.wall += seconds


@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[tuple[Daemon, Clocks, AsyncClient]]:
    """An in-process daemon on a campaign open 09:00-17:00 UTC with 60 s leases, three
    records imported at 12:00 and ``ann`` logged in; its clocks; an admin client."""
    clocks = Clocks(datetime(2027, 6, 15, 12, 0, tzinfo=UTC).timestamp())
    d = Daemon(load(config(tmp_path, campaigns=WINDOW)))
    d.service.clock = WallClock(lambda: clocks.wall, lambda: clocks.elapsed)
    await asyncio.wait_for(d.start(), HANG_S)
    c = await AsyncClient.connect(d.settings.daemon.socket)
    try:
        await ok(c, "records.import", campaign="t", list="l", records=make_records(3))
        await ok(c, "agent.login", agent="ann", campaigns=["t"])
        yield d, clocks, c
    finally:
        await c.close()
        await asyncio.wait_for(d.stop(), HANG_S)


async def take(c: AsyncClient, agent: str) -> list[dict[str, Any]]:
    leases: list[dict[str, Any]] = (await ok(c, "next", agent=agent, campaigns=["t"])
                                    )["leases"]
    return leases


async def test_leases_last_their_length_whichever_way_the_wall_clock_is_set(
        clocked: tuple[Daemon, Clocks, AsyncClient], caplog: pytest.LogCaptureFixture
        ) -> None:
    caplog.set_level(logging.INFO)
    d, clocks, c = clocked
    first = (await take(c, "ann"))[0]  # 60 s from 12:00
    clocks.step(-3600)  # set back an hour: the lease must not last an hour longer
    clocks.advance(30)
    second = (await take(c, "ann"))[0]
    assert second["record"]["id"] != first["record"]["id"]
    clocks.advance(31)  # 61 s after the first lease was handed out
    refused(await c.call("dispose", lease=first["token"], code="NA"), "lease_expired", "lease")
    again = (await take(c, "bob"))[0]  # its record is handed out again
    assert again["record"]["id"] == first["record"]["id"]

    clocks.step(3600)  # set forward an hour: 29 s of the second lease are left
    clocks.advance(10)
    await ok(c, "dispose", lease=second["token"], code="NA")
    # the moved expiry is written, so a restart restores the lease as it stands now:
    # handed out 10 s ago, 50 s left
    lid = int(again["token"].split(".")[0])
    await eventually(lambda: abs(_stored_expiry(d, lid) - (clocks.wall + 50)) < 0.01,
                     f"lease {lid} stored as expiring 50 s from now")
    stepped = [m for m in caplog.messages if m.startswith("clock_stepped")]
    assert len(stepped) == 2 and stepped[0].startswith("clock_stepped step_s=-3600.000 "), \
        stepped


def _stored_expiry(d: Daemon, lid: int) -> float:
    con = sqlite3.connect(d.store.sqlite_path or "")
    try:
        row = con.execute("SELECT expires_at FROM leases WHERE lid = ?", (lid,)).fetchone()
    finally:
        con.close()
    return float(row[0])


async def test_a_long_poll_waits_its_length_when_the_clock_is_set_back(
        clocked: tuple[Daemon, Clocks, AsyncClient]) -> None:
    d, clocks, c = clocked
    assert len(await take(c, "ann")) == 1
    await ok(c, "next", agent="ann", count=2)  # the pool is empty now
    poll = asyncio.create_task(c.call("next", agent="ann", wait=1))
    await eventually(lambda: d.service.waiting["t"] == 1, "the long poll waits")
    clocks.step(-3600)
    clocks.advance(1)
    ans = await asyncio.wait_for(poll, HANG_S)  # not an hour and a second
    assert ans["leases"] == []


async def test_nothing_is_handed_out_outside_its_window_or_before_its_time(
        clocked: tuple[Daemon, Clocks, AsyncClient]) -> None:
    """Windows, due times and callbacks follow the wall clock as it reads now."""
    d, clocks, c = clocked
    lease = (await take(c, "ann"))[0]
    cb = await ok(c, "dispose", lease=lease["token"], code="CB",
                  callback={"at": "2027-06-15T14:00", "timezone": "UTC", "scope": "personal"})
    assert cb["state"] == "callback"
    clocks.set_to("14:05")  # the callback is due, and its window open
    st = (await ok(c, "stats", campaign="t"))["campaigns"]["t"]
    assert st["callback_due"] == 1, st
    clocks.set_to("08:30")  # before the window opens, and before the callback's time
    assert await take(c, "ann") == []
    clocks.set_to("17:30")  # after the window closed
    assert await take(c, "ann") == []
    clocks.set_to("13:00")  # the window is open; the callback is ahead again
    st = (await ok(c, "stats", campaign="t"))["campaigns"]["t"]
    assert (st["callback_due"], st["callback_upcoming"]) == (0, 1), st
    got = await take(c, "ann")
    assert [lz["reason"] for lz in got] == ["pool"], got
    assert got[0]["record"]["id"] != lease["record"]["id"]
    clocks.set_to("14:00")
    got = await take(c, "ann")
    assert [(lz["record"]["id"], lz["reason"]) for lz in got] == \
        [(lease["record"]["id"], "personal_callback")]


# ------------------------------------------------------------------ SIGSTOP
def pings(notify: socket.socket, seen: list[str]) -> int:
    """``WATCHDOG=1`` lines received so far on a NOTIFY_SOCKET stand-in."""
    with contextlib.suppress(BlockingIOError):
        while True:
            seen += notify.recv(65536).decode().split("\n")
    return seen.count("WATCHDOG=1")


def wait_for(check: Callable[[], bool], what: str, proc: Proc) -> None:
    deadline = time.monotonic() + HANG_S
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}\n{proc.output()}"
        time.sleep(0.05)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=HANG_S) as r:
        body: bytes = r.read()
    return body.decode()


def sample(text: str, name: str) -> float:
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


#: longer than the lease (5 s), so it runs out while the daemon is stopped
STOP_S = 7.0


def test_a_stopped_daemon_expires_the_leases_that_ran_out_and_recovers(
        tmp_path: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    seen: list[str] = []
    cfg = config(tmp_path, metrics='address = "127.0.0.1:0"\nrefresh_s = 0.2')
    cfg.write_text(cfg.read_text().replace("lease_s = 60", "lease_s = 5"))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "1000000"}
    env.pop("JOURNAL_STREAM", None)
    proc = Proc(cfg)
    try:
        proc.start(env=env)
        port = int(re.findall(r"metrics_serving address=\S+ port=(\d+)", proc.output())[0])
        with Client(proc.sock, timeout=HANG_S) as c:
            c.call("records.import", campaign="t", list="l", records=make_records(1))
            c.call("agent.login", agent="ann", campaigns=["t"])
            lease = c.call("next", agent="ann")["leases"][0]
        assert proc.p is not None
        proc.p.send_signal(signal.SIGSTOP)
        time.sleep(STOP_S)
        before = pings(notify, seen)
        proc.p.send_signal(signal.SIGCONT)
        with Client(proc.sock, timeout=HANG_S) as c:
            with pytest.raises(ClientError) as gone:
                c.call("dispose", lease=lease["token"], code="NA")
            assert gone.value.code == "lease_expired"
            again = c.call("next", agent="bob", campaigns=["t"])["leases"]
            assert [lz["record"]["id"] for lz in again] == [lease["record"]["id"]]
        wait_for(lambda: pings(notify, seen) > before, "watchdog pings again", proc)
        wait_for(lambda: sample(scrape(port), "nextcall_leases_expired_total") == 1,
                 "the expiry counted", proc)
        # the loop-lag probe slept through the stop: the pause shows
        assert sample(scrape(port), "nextcall_event_loop_lag_seconds_sum") >= 1.0
        assert proc.term() == 0, proc.output()
    finally:
        proc.kill()
        notify.close()
    assert "side_task_died" not in proc.output()

"""The daemon's lifecycle: a side task that dies stops the daemon with status 70 (never a
hang), a dead store writer fails every waiting and later write, a failed start unwinds
exactly what had started, and the signal handlers that were there before come back.

Each test runs the real daemon in-process on a real socket and database. Timeouts are
generous and only there to turn a hang into a failure."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nextcall.app import EXIT_FAILURE, Daemon
from nextcall.config import load
from nextcall.core.errors import StorageError
from nextcall.metrics import Exporter
from nextcall.notify.reminders import REFILL_JOB_ID, Reminders
from nextcall.server import Server
from nextcall.storage import sql as S
from nextcall.storage import statements as ST
from nextcall.storage.writer import SqliteWriter
from nextcall.supervise import Supervisor, signal_handlers
from tests.conftest import AsyncClient, make_records, write_config

#: long enough for a loaded machine; only there so that a hang fails the test
HANG_S = 60.0


@pytest.fixture(autouse=True)
def _no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not under systemd unless a test says so."""
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID", "LISTEN_FDS"):
        monkeypatch.delenv(key, raising=False)


def settings_for(tmp: Path, database: str | None = None) -> Any:
    """The test config with the metrics endpoint on a free loopback port."""
    path = write_config(tmp)
    text = path.read_text() + '\n[metrics]\naddress = "127.0.0.1:0"\n'
    if database is not None:
        text = text.replace(f"sqlite+aiosqlite:///{tmp}/db.sqlite", database)
    path.write_text(text)
    return load(path)


def task_named(name: str) -> asyncio.Task[Any]:
    found = [t for t in asyncio.all_tasks() if t.get_name() == name and not t.done()]
    assert len(found) == 1, f"expected one running task {name!r}, found {found}"
    return found[0]


async def running(d: Daemon) -> asyncio.Task[int]:
    """``d.run()`` as a task, once the daemon serves."""
    task = asyncio.create_task(d.run(), name="test-daemon-run")
    started = asyncio.create_task(d.started.wait())
    await asyncio.wait([task, started], timeout=HANG_S, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        started.cancel()
        raise AssertionError(f"the daemon did not start: {task}")
    return task


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def _insert(rid: int) -> ST.Op:
    row = {"rid": rid, "id": f"x{rid}", "campaign": "t", "list": "l",
           "phones": '[["+31612340000","active"]]', "timezone": "UTC", "priority": 0,
           "data": "{}", "state": "ready", "reason": None, "due_at": 0.0, "attempts": 0,
           "owner": None, "team": None, "best_cp": 0, "phone_idx": 0, "callback": None,
           "imported_at": 1.0, "updated_at": 1.0}
    return (ST.INS_RECORD, tuple(row[c] for c in ST.RECORD_COLS))


# ------------------------------------------------------------------ killing side tasks
Kill = Callable[[Daemon, pytest.MonkeyPatch], Awaitable[None]]


async def kill_watchdog(d: Daemon, mp: pytest.MonkeyPatch) -> None:
    task_named("watchdog").cancel()


async def kill_checkpointer(d: Daemon, mp: pytest.MonkeyPatch) -> None:
    real = S.SqlStore._checkpoint

    def broken(self: S.SqlStore, mode: str = "PASSIVE") -> None:
        if mode == "PASSIVE":  # the loop's checkpoints; the one at close still works
            raise RuntimeError("checkpointer killed by the test")
        real(self, mode)
    mp.setattr(S.SqlStore, "_checkpoint", broken)


async def kill_sqlite_writer(d: Daemon, mp: pytest.MonkeyPatch) -> None:
    def broken(self: SqliteWriter, con: Any) -> None:
        raise RuntimeError("writer killed by the test")
    # after each commit, outside it: where a dead writer used to hang every later write
    mp.setattr(SqliteWriter, "_maybe_reset", broken)
    d.store.commit_now_when = None  # through the writer thread
    c = await AsyncClient.connect(d.settings.daemon.socket)
    try:
        got = await c.call("records.import", campaign="t", list="l", records=make_records(2))
        assert got["ok"], got  # committed before the thread died
    finally:
        await c.close()


async def kill_metrics_refresh(d: Daemon, mp: pytest.MonkeyPatch) -> None:
    task_named("metrics-refresh").cancel()


async def kill_loop_lag_probe(d: Daemon, mp: pytest.MonkeyPatch) -> None:
    class Broken:
        def observe(self, value: float) -> None:
            raise RuntimeError("loop-lag probe killed by the test")
    assert d.exporter is not None
    mp.setattr(d.exporter.metrics, "loop_lag", Broken())


async def kill_reminders(d: Daemon, mp: pytest.MonkeyPatch) -> None:
    scheduler = d.reminders.scheduler
    assert scheduler is not None
    scheduler.modify_job(REFILL_JOB_ID, next_run_time=datetime.now(UTC))


async def _refill_fails(self: Reminders) -> None:
    raise RuntimeError("reminder refill killed by the test")


KILLS: dict[str, Kill] = {
    "watchdog": kill_watchdog,
    "store-checkpoint": kill_checkpointer,
    "store-writer": kill_sqlite_writer,
    "metrics-refresh": kill_metrics_refresh,
    "metrics-loop-lag": kill_loop_lag_probe,
    "reminders-refill": kill_reminders,
}


@pytest.mark.parametrize("name", list(KILLS))
async def test_a_dead_side_task_stops_the_daemon_with_status_70(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    if name == "reminders-refill":
        monkeypatch.setattr(Reminders, "_refill", _refill_fails)  # bound when scheduled
    d = Daemon(settings_for(tmp_path))
    run = await running(d)
    await KILLS[name](d, monkeypatch)
    assert await asyncio.wait_for(run, HANG_S) == EXIT_FAILURE
    died = [m for m in messages(caplog) if m.startswith("side_task_died")]
    assert any(m.startswith(f"side_task_died name={name} ") for m in died), died
    assert f"daemon_stopped exit={EXIT_FAILURE}" in messages(caplog)
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert d.server.path is not None and not Path(d.server.path).exists()


async def test_a_clean_stop_reports_no_death_and_exits_0(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    d = Daemon(settings_for(tmp_path))
    run = await running(d)
    d.stop_event.set()
    assert await asyncio.wait_for(run, HANG_S) == 0
    assert not [m for m in messages(caplog) if m.startswith("side_task_died")]
    assert d.supervisor.deaths == []
    await d.stop()  # a second stop does nothing
    assert messages(caplog).count("daemon_stopped exit=0") == 1


async def test_metrics_side_tasks_run_without_an_endpoint(tmp_path: Path) -> None:
    """A port in use leaves the daemon without an endpoint (logged), but the refresher
    still drains the recorded events and is watched like the others."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings_for(tmp_path)
        path = tmp_path / "nextcall.toml"
        port = taken.getsockname()[1]
        path.write_text(path.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
        d = Daemon(load(path))
        await asyncio.wait_for(d.start(), HANG_S)
        try:
            assert d.exporter is not None and d.exporter.address is None
            task_named("metrics-refresh")
            task_named("metrics-loop-lag")
        finally:
            await d.stop()


# ------------------------------------------------------------------ a dead store writer
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/store.sqlite"
    url: str = request.getfixturevalue("pg_url")
    return url


async def test_a_dead_writer_fails_queued_and_later_writes(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    failures: list[BaseException] = []
    store = S.SqlStore(db_url, on_failure=failures.append)
    await store.open()
    await store.migrate()
    try:
        if store.dialect == "sqlite":
            queued = threading.Event()

            def dies_after_commit(self: SqliteWriter, con: Any) -> None:
                queued.wait(HANG_S)
                raise RuntimeError("writer killed by the test")
            # the writer thread dies after its next commit, outside it
            monkeypatch.setattr(SqliteWriter, "_maybe_reset", dies_after_commit)
            await asyncio.wait_for(store.write_ops([_insert(2)]), HANG_S)  # committed
            waiting = store.ops_future([_insert(3)])  # queued while the writer dies
            queued.set()
        else:
            await store.write_ops([_insert(2)])
            waiting = store.ops_future([_insert(3)])
            task = store.writer_task
            assert task is not None
            task.cancel()  # before it takes the queued write
        with pytest.raises(StorageError):
            await asyncio.wait_for(waiting, HANG_S)
        assert len(failures) == 1, "the daemon is told to stop, once"
        with pytest.raises(StorageError):
            await asyncio.wait_for(store.write_ops([_insert(4)]), HANG_S)
    finally:
        await asyncio.wait_for(store.close(), HANG_S)


@pytest.mark.postgres
async def test_a_dead_postgresql_writer_stops_the_daemon(
        pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    d = Daemon(settings_for(tmp_path, pg_url))
    run = await running(d)
    task_named("store-writer").cancel()
    assert await asyncio.wait_for(run, HANG_S) == EXIT_FAILURE
    assert any(m.startswith("side_task_died name=store-writer ") for m in messages(caplog))


# ------------------------------------------------------------------ a failed start
class StartFailed(Exception):
    """Raised by a start-up step the test breaks."""


async def _fails(*args: Any, **kwargs: Any) -> None:
    raise StartFailed


@pytest.fixture
def held_socket(tmp_path: Path) -> Iterator[Path]:
    """Another live listener on the daemon's socket path: the server cannot bind it."""
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
        s.listen()
        yield path


@pytest.mark.parametrize("step", ["reminders", "exporter", "server"])
async def test_a_failed_start_unwinds_exactly_what_started(
        step: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    expected: type[BaseException] = StartFailed
    if step == "reminders":
        monkeypatch.setattr(Reminders, "start", _fails)
    elif step == "exporter":
        monkeypatch.setattr(Exporter, "start", _fails)
    else:
        request.getfixturevalue("held_socket")
        expected = OSError
    stopped: list[str] = []

    def spy(real: Callable[[Any], Awaitable[None]], name: str) -> Any:
        async def stop(self: Any) -> None:
            stopped.append(name)
            await real(self)
        return stop
    for cls, method, name in ((Reminders, "stop", "reminders"), (Exporter, "stop", "exporter"),
                              (Server, "stop", "server"), (S.SqlStore, "close", "store")):
        monkeypatch.setattr(cls, method, spy(getattr(cls, method), name))
    d = Daemon(settings_for(tmp_path))
    with pytest.raises(expected):
        await asyncio.wait_for(d.start(), HANG_S)
    began = {"reminders": ["reminders", "store"], "exporter": ["exporter", "reminders", "store"],
             "server": ["server", "exporter", "reminders", "store"]}[step]
    assert stopped == began, "each step that began is undone, in reverse order"
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()], \
        "no task is left (watchdog, checkpointer, metrics)"
    writer = d.store.writer
    assert isinstance(writer, SqliteWriter)
    await asyncio.wait_for(writer.ended, HANG_S)  # the thread ended cleanly
    assert not [t for t in threading.enumerate() if t.name == "nextcall-writer"]
    assert d.reminders.scheduler is None
    assert d.exporter is not None and d.exporter.address is None
    assert not [m for m in messages(caplog) if m.startswith(("side_task_died", "daemon_ready"))]
    if step == "server":
        assert (tmp_path / "s.sock").exists(), "the other daemon's socket is left alone"
    await d.stop()  # nothing left to stop


async def test_a_failed_start_ends_run_with_the_error_and_handlers_restored(
        tmp_path: Path, held_socket: Path) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    d = Daemon(settings_for(tmp_path))
    with pytest.raises(OSError, match="another daemon"):
        await asyncio.wait_for(d.run(), HANG_S)
    assert {sig: signal.getsignal(sig) for sig in before} == before


# ------------------------------------------------------------------ signal handlers
@pytest.fixture
def own_handlers() -> Iterator[dict[signal.Signals, Any]]:
    """Python-level handlers of the embedding program, put back after the test."""
    got: list[signal.Signals] = []

    def handler(signum: int, frame: Any) -> None:
        got.append(signal.Signals(signum))
    sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in sigs}
    try:
        yield {sig: handler for sig in sigs}
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


async def test_sigterm_stops_the_daemon_and_the_previous_handlers_come_back(
        tmp_path: Path, own_handlers: dict[signal.Signals, Any]) -> None:
    d = Daemon(settings_for(tmp_path))
    run = await running(d)
    for sig, handler in own_handlers.items():
        assert signal.getsignal(sig) is not handler, "the daemon's, while it runs"
    signal.raise_signal(signal.SIGHUP)  # a reload: the daemon serves on
    await asyncio.sleep(0)
    assert not run.done()
    signal.raise_signal(signal.SIGTERM)
    assert await asyncio.wait_for(run, HANG_S) == 0
    for sig, handler in own_handlers.items():
        assert signal.getsignal(sig) is handler


async def test_signal_handlers_are_given_back_when_installing_fails() -> None:
    loop = asyncio.get_running_loop()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RuntimeError), signal_handlers(loop, {signal.SIGTERM: lambda: None,
                                                           signal.SIGKILL: lambda: None}):
        pass
    assert signal.getsignal(signal.SIGTERM) is before


# ------------------------------------------------------------------ the supervisor
async def test_the_supervisor_tells_deaths_from_ends_at_stop() -> None:
    deaths: list[str] = []
    sup = Supervisor(on_death=lambda name, error: deaths.append(name))

    async def forever() -> None:
        await asyncio.Event().wait()

    async def fails() -> None:
        raise RuntimeError("boom")

    returned = asyncio.create_task(asyncio.sleep(0), name="returns")
    failed = asyncio.create_task(fails(), name="fails")
    quiet = asyncio.create_task(forever(), name="cancelled-at-stop")
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(HANG_S,), name="ends")
    thread.start()
    for what, name in ((returned, "returns"), (failed, "fails"), (quiet, "cancelled-at-stop"),
                       (thread, "ends")):
        sup.watch(what, name)
    release.set()
    await asyncio.wait([returned, failed])
    for _ in range(int(HANG_S * 100)):
        if len(deaths) == 3:
            break
        await asyncio.sleep(0.01)
    assert sorted(deaths) == ["ends", "fails", "returns"]
    sup.stop()
    quiet.cancel()
    await asyncio.wait([quiet])
    await asyncio.sleep(0)
    assert len(deaths) == 3, "a task cancelled at stop is no death"

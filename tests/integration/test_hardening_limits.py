"""Connection limits, roles by groups and file modes, over the real daemon and socket:

- a burst of connects from one thread all succeed (the client retries a full listen
  queue; the daemon listens with ``listen_backlog``, also on a socket handed over);
- roles come from the groups of the connecting process (``SO_PEERGROUPS``), not from the
  user database (forked children with their own uid and groups; root only);
- the database, its ``-wal``/``-shm`` and the directories the daemon creates are private,
  and a database others can read is reported at start;
- ``max_connections``, ``partial_line_timeout_s`` and ``max_buffered_bytes``.

Limits are configured small so that nothing depends on how fast anything happens; every
wait is bounded only to avoid hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nextcall import files
from nextcall.app import Daemon
from nextcall.client import Client
from nextcall.config import load
from nextcall.limits import DROP_REASONS, listen_backlog, to_drop
from nextcall.roles import ADMIN, AGENT, SO_PEERGROUPS, SUPERVISOR, role_for
from nextcall.server import Server
from tests.conftest import AsyncClient, wait_until_serving, write_config

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "nextcall"
PING = b'{"id":1,"op":"ping"}\n'


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def sample(daemon: Daemon, name: str, **labels: str) -> float:
    assert daemon.metrics is not None
    value = daemon.metrics.registry.get_sample_value(name, labels)
    assert value is not None, name
    return value


async def started(tmp: Path, extra_daemon: str = "", auth: str = "") -> Daemon:
    d = Daemon(load(write_config(tmp, extra_daemon=extra_daemon, auth=auth)))
    await d.start()
    return d


@contextlib.asynccontextmanager
async def running(tmp: Path, extra_daemon: str = "", auth: str = "") -> AsyncIterator[Daemon]:
    d = await started(tmp, extra_daemon, auth)
    try:
        yield d
    finally:
        await d.stop()


async def until(check: Callable[[], bool], what: str, timeout_s: float = 15) -> None:
    """Wait until ``check()`` holds (bounded; polls the loop, asserts nothing on time)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def read_to_eof(c: AsyncClient, timeout_s: float = 15) -> bytes:
    """Everything the daemon sends until it closes (a reset counts as closed)."""
    data = b""
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await c.reader.read(1 << 20):
                data += chunk
    except (ConnectionError, OSError) as exc:
        if isinstance(exc, TimeoutError):
            pytest.fail("the connection is still open")
    return data


# ---------------------------------------------------------------------------- connect bursts


def test_the_backlog_is_the_configured_one_capped_by_somaxconn(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    cap = tmp_path / "somaxconn"
    cap.write_text("128\n")
    assert listen_backlog(1024, str(cap)) == 128
    assert "listen_backlog_capped configured=1024 somaxconn=128" in caplog.text
    assert listen_backlog(64, str(cap)) == 64
    assert listen_backlog(64, str(tmp_path / "missing")) == 64


async def test_500_connects_in_a_row_from_one_thread_all_succeed(tmp_path: Path) -> None:
    # a queue of 4 overflows at once while the loop accepts: the client must retry EAGAIN
    async with running(tmp_path, "listen_backlog = 4") as daemon:
        path = daemon.settings.daemon.socket

        def burst() -> int:
            done = 0
            for _ in range(500):
                Client(path, timeout=30).connect().close()
                done += 1
            return done

        assert await asyncio.to_thread(burst) == 500
        c = await AsyncClient.connect(path)
        assert (await c.call("ping"))["ok"] is True
        await c.close()


def queued_before_full(path: str, most: int = 5000) -> int:
    """Connect without blocking until the listen queue is full; how many got in. Runs on
    the event loop's thread, so nothing is accepted meanwhile."""
    socks: list[socket.socket] = []
    try:
        while len(socks) < most:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:
                s.close()
                break
            socks.append(s)
        return len(socks)
    finally:
        for s in socks:
            s.close()


async def test_the_daemon_listens_with_listen_backlog(tmp_path: Path) -> None:
    async with running(tmp_path, "listen_backlog = 5") as daemon:
        # the kernel takes one more than the backlog on a Unix socket
        assert 5 <= queued_before_full(daemon.settings.daemon.socket) <= 6


async def test_a_handed_over_socket_gets_listen_backlog_too(tmp_path: Path) -> None:
    async with running(tmp_path, "listen_backlog = 5") as daemon:
        path = str(tmp_path / "activated.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(4096)  # what systemd does (Backlog= defaults to SOMAXCONN)
        server = Server(daemon.settings, daemon.service)
        await server.start(sock)
        try:
            # asyncio listens again: with its default, this would be 100
            assert 5 <= queued_before_full(path) <= 6
        finally:
            await server.stop()
            sock.close()


# ---------------------------------------------------------------------------- roles by groups


def test_role_for_matches_gids_by_primary_or_supplementary_group(tmp_path: Path) -> None:
    s = load(write_config(tmp_path, auth="admin_gids = [5001]\nsupervisor_gids = [5002]\n"
                                          "trust_own_uid = false"))
    assert role_for(s, 4000, 5001) == ADMIN
    assert role_for(s, 4000, 100, frozenset({7, 5001})) == ADMIN
    assert role_for(s, 4000, 5002) == SUPERVISOR
    assert role_for(s, 4000, 100, frozenset({5002})) == SUPERVISOR
    assert role_for(s, 4000, 100, frozenset({5002, 5001})) == ADMIN
    assert role_for(s, 4000, 100, frozenset({7, 8})) == AGENT
    assert role_for(s, 4000, 100) == AGENT


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or SO_PEERGROUPS is None,
    reason="changing uid and groups in a child needs root, and SO_PEERGROUPS Linux")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other uids can reach (pytest's tmp_path is root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="nextcall-roles-", dir="/tmp"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _child_ping(path: str, uid: int, gid: int, groups: list[int], out: int) -> None:
    """In a forked child: become (uid, gid, groups), ping, write the answer to ``out``."""
    try:
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        s.sendall(PING)
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        os.write(out, data)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        os.write(out, json.dumps({"child_error": repr(exc)}).encode())
    finally:
        os._exit(0)


async def ping_as(path: str, uid: int, gid: int, groups: list[int]) -> dict[str, Any]:
    """``ping`` from a process with these credentials (forked; the loop serves meanwhile)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child_ping(path, uid, gid, groups, w)
    os.close(w)

    def collect() -> bytes:
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        return data

    answer: dict[str, Any] = json.loads(await asyncio.wait_for(asyncio.to_thread(collect), 30))
    assert "child_error" not in answer, answer
    return answer


@needs_root
async def test_a_supplementary_group_of_the_process_gives_its_role(
        shared_dir: Path) -> None:
    # uid 54321 has no entry in the user database: only the kernel knows its groups
    auth = "admin_gids = [54011]\nsupervisor_gids = [54012]"
    async with running(shared_dir, 'socket_mode = "0666"', auth) as daemon:
        path = daemon.settings.daemon.socket
        assert (await ping_as(path, 54321, 54000, [54011]))["role"] == ADMIN
        assert (await ping_as(path, 54321, 54000, [7, 54012]))["role"] == SUPERVISOR
        assert (await ping_as(path, 54321, 54011, []))["role"] == ADMIN  # primary gid
        plain = await ping_as(path, 54321, 54000, [54013])
        assert plain["role"] == AGENT and plain["uid"] == 54321


@pytest.fixture
def user_in_group() -> Iterator[tuple[int, int, int]]:
    """A user whose user-database entry lists a supplementary group: (uid, gid, group)."""
    if os.geteuid() != 0 or not (shutil.which("useradd") and shutil.which("groupadd")):
        pytest.skip("creating a user needs root and useradd/groupadd")
    name = f"nch9{uuid.uuid4().hex[:10]}"
    subprocess.run(["groupadd", name + "g"], check=True, capture_output=True)
    try:
        subprocess.run(["useradd", "--no-create-home", "-G", name + "g", name], check=True,
                       capture_output=True)
        try:
            import grp
            import pwd
            user = pwd.getpwnam(name)
            yield user.pw_uid, user.pw_gid, grp.getgrnam(name + "g").gr_gid
        finally:
            subprocess.run(["userdel", name], capture_output=True)
    finally:
        subprocess.run(["groupdel", name + "g"], capture_output=True)


@needs_root
async def test_the_user_database_is_not_consulted(
        shared_dir: Path, user_in_group: tuple[int, int, int]) -> None:
    uid, gid, group = user_in_group
    async with running(shared_dir, 'socket_mode = "0666"',
                       f"admin_gids = [{group}]") as daemon:
        path = daemon.settings.daemon.socket
        # /etc/group lists the user in the group; this process dropped it: no admin
        assert (await ping_as(path, uid, gid, []))["role"] == AGENT
        # a login session carries the group: admin
        assert (await ping_as(path, uid, gid, [group]))["role"] == ADMIN


# ---------------------------------------------------------------------------- file modes


def test_directories_and_files_are_created_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        files.make_dirs(tmp_path / "a" / "b")
        assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700
        files.make_dirs(tmp_path / "s", files.socket_dir_mode(0o660))
        assert mode(tmp_path / "s") == 0o710
        assert files.create_private(tmp_path / "db") is True
        assert mode(tmp_path / "db") == 0o600
        (tmp_path / "db").chmod(0o644)
        assert files.create_private(tmp_path / "db") is False  # left as it is
        assert files.open_to_others([tmp_path / "db", tmp_path / "none"]) == [
            (str(tmp_path / "db"), 0o644)]
    finally:
        os.umask(old)
    assert [files.socket_dir_mode(m) for m in (0o600, 0o660, 0o666, 0o606)] == [
        0o700, 0o710, 0o711, 0o701]


def _relative_config(tmp: Path) -> Path:
    """The ``make run`` layout: ./var/nextcall.db and ./run/nextcall.sock in ``tmp``."""
    write_config(tmp)
    cfg = tmp / "relative.toml"
    cfg.write_text(textwrap.dedent("""
        include = ["codes.toml", "camps.toml"]
        [daemon]
        socket = "./run/nextcall.sock"
        database = "sqlite+aiosqlite:///./var/nextcall.db"
        drain_timeout_s = 5
        [metrics]
        enabled = false
    """))
    return cfg


def _umask_022() -> None:
    os.umask(0o022)


def test_migrate_and_serve_create_the_database_and_directories_private(
        tmp_path: Path) -> None:
    cfg = _relative_config(tmp_path)
    run = subprocess.run([str(BIN), "--config", str(cfg), "migrate"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, preexec_fn=_umask_022)
    assert run.returncode == 0, run.stderr
    assert mode(tmp_path / "var") == 0o700
    assert mode(tmp_path / "var" / "nextcall.db") == 0o600
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        p = subprocess.Popen([str(BIN), "--config", str(cfg), "serve"], cwd=tmp_path,
                             stdout=out, stderr=subprocess.STDOUT, preexec_fn=_umask_022)
    try:
        wait_until_serving(str(tmp_path / "run" / "nextcall.sock"))
        for suffix in files.SQLITE_SUFFIXES:
            assert mode(tmp_path / "var" / f"nextcall.db{suffix}") == 0o600, suffix
        assert mode(tmp_path / "var") == 0o700
        assert mode(tmp_path / "run") == 0o710  # the group may reach the 0660 socket
        assert mode(tmp_path / "run" / "nextcall.sock") == 0o660
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(60)
    assert "storage_files_readable" not in log.read_text()


async def test_the_daemon_creates_its_database_private_in_process(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(f"{tmp_path}/db.sqlite",
                                           f"{tmp_path}/state/db/db.sqlite"))
    old = os.umask(0o022)  # a Daemon embedded in a process with the usual umask
    try:
        d = Daemon(load(cfg))
        await d.start()
        try:
            for suffix in files.SQLITE_SUFFIXES:
                assert mode(tmp_path / "state" / "db" / f"db.sqlite{suffix}") == 0o600
            assert mode(tmp_path / "state") == mode(tmp_path / "state" / "db") == 0o700
        finally:
            await d.stop()
    finally:
        os.umask(old)


async def test_a_database_others_can_read_is_reported_at_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path):
        pass
    db = tmp_path / "db.sqlite"
    db.chmod(0o644)
    caplog.set_level(logging.WARNING)
    async with running(tmp_path):
        pass
    assert f"storage_files_readable path={db} mode=0644" in caplog.text
    assert mode(db) == 0o644  # reported, not changed


# ---------------------------------------------------------------------------- limits


async def test_a_connection_over_max_connections_gets_one_error_line_and_is_closed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path, "max_connections = 2") as daemon:
        path = daemon.settings.daemon.socket
        a, b = await AsyncClient.connect(path), await AsyncClient.connect(path)
        for c in (a, b):
            assert (await c.call("ping"))["ok"] is True
        assert sample(daemon, "nextcall_connections_open") == 2
        extra = await AsyncClient.connect(path)
        lines = (await read_to_eof(extra)).splitlines()
        assert len(lines) == 1, lines
        err = json.loads(lines[0])
        assert err["id"] is None and err["ok"] is False
        assert err["error"]["code"] == "unavailable"
        assert "max_connections = 2" in err["error"]["message"]
        assert sample(daemon, "nextcall_connections_refused_total") == 1
        assert "connection_refused reason=max_connections limit=2" in caplog.text
        assert (await a.call("ping"))["ok"] is True  # the others are served on
        await a.close()
        await until(lambda: len(daemon.server.conns) < 2, "the closed connection to go")
        c = await AsyncClient.connect(path)
        assert (await c.call("ping"))["ok"] is True
        for x in (b, c, extra):
            await x.close()


async def test_a_partial_line_is_closed_after_its_timeout_and_idle_lines_are_not(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with running(tmp_path, "partial_line_timeout_s = 0.2") as daemon:
        path = daemon.settings.daemon.socket
        idle = await AsyncClient.connect(path)
        assert (await idle.call("ping"))["ok"] is True
        slow = await AsyncClient.connect(path)
        await slow.send_raw(b'{"id":1,"op":"pi')
        lines = (await read_to_eof(slow)).splitlines()
        assert len(lines) == 1, lines
        err = json.loads(lines[0])
        assert err["id"] is None and err["error"]["code"] == "bad_request"
        assert "not completed within 0.2 s" in err["error"]["message"]
        assert "request_incomplete" in caplog.text
        assert sample(daemon, "nextcall_connections_dropped_total",
                      reason="partial_line") == 1
        await asyncio.sleep(0.6)  # idle between lines, three timeouts long: allowed
        assert (await idle.call("ping"))["ok"] is True
        # a line that arrives in pieces but completes is served
        await idle.send_raw(b'{"id":"p","op":')
        await asyncio.sleep(0.05)
        await idle.send_raw(b'"ping"}\n')
        assert (await idle.read())["ok"] is True
        for c in (idle, slow):
            await c.close()


def test_to_drop_takes_the_largest_first_until_under_the_limit() -> None:
    held = [(100, "a"), (700, "b"), (300, "c"), (50, "d")]
    assert to_drop(held, 2000) == []
    assert to_drop(held, 1150) == []
    assert to_drop(held, 1000) == [(700, "b")]
    assert to_drop(held, 400) == [(700, "b"), (300, "c")]
    assert to_drop(held, 0) == [(700, "b"), (300, "c"), (100, "a"), (50, "d")]


BIG = 3 * 1024 * 1024  # an answer far larger than a socket's kernel buffer


def read_line(s: socket.socket) -> bytes:
    """One line from a blocking socket, or what came before the connection ended."""
    data = b""
    with contextlib.suppress(ConnectionError):
        while not data.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    return data


async def test_buffered_output_over_the_limit_drops_the_connection_holding_most(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # a ping's answer echoes its id: a 3 MiB id makes a 3 MiB answer, of which the
    # kernel takes a few hundred KiB; two such unread answers exceed 4 MiB
    extra = f"max_line_bytes = {4 * 1024 * 1024}\nmax_buffered_bytes = {4 * 1024 * 1024}"
    async with running(tmp_path, extra) as daemon:
        path = daemon.settings.daemon.socket
        line = json.dumps({"id": "x" * BIG, "op": "ping"}).encode() + b"\n"

        def dropped() -> float:
            return sample(daemon, "nextcall_connections_dropped_total",
                          reason="buffered_output")

        # raw sockets: an asyncio client would read into its own buffer meanwhile
        stalled = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
        for s in stalled:
            s.settimeout(30)
            await asyncio.to_thread(s.connect, path)
        await asyncio.to_thread(stalled[0].sendall, line)
        await until(lambda: len(daemon.server.write_paused) == 1, "the first answer held")
        assert dropped() == 0  # one client's 3 MiB is within the limit
        await asyncio.to_thread(stalled[1].sendall, line)
        await until(lambda: dropped() == 1, "a connection to be dropped")
        assert len(daemon.server.write_paused) == 1
        assert "action=dropping" in caplog.text
        reader = await AsyncClient.connect(path)  # a client that reads is served
        assert (await reader.call("ping"))["ok"] is True
        # the one dropped sees part of its answer then the end; the other gets it whole
        got = [await asyncio.to_thread(read_line, s) for s in stalled]
        whole = sorted(g.endswith(b"\n") and len(g) > BIG for g in got)
        assert whole == [False, True], [len(g) for g in got]
        for s in stalled:
            s.close()
        await reader.close()


def test_every_connection_metric_is_documented() -> None:
    from prometheus_client import CollectorRegistry

    from nextcall.metrics import Metrics
    reg = CollectorRegistry()
    Metrics(reg, process_metrics=False)
    names = {m.name for m in reg.collect() if m.name.startswith("nextcall_connections")}
    assert names == {"nextcall_connections_open", "nextcall_connections_refused",
                     "nextcall_connections_dropped"}
    docs = (ROOT / "docs" / "metrics.md").read_text()
    for name in ("nextcall_connections_open", "nextcall_connections_refused_total",
                 "nextcall_connections_dropped_total"):
        assert f"`{name}`" in docs, name
    for reason in DROP_REASONS:
        assert f"`{reason}`" in docs, reason

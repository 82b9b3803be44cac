"""The servers the benchmark measures nextcall against, and the CPU accounting around them.

- ``PgServer``: a private PostgreSQL 15 instance on a Unix socket (``listen_addresses=''``,
  ``shared_buffers=256MB``, fsync and synchronous_commit left on), so nothing else runs in it
  and its processes can be counted; it falls back to the system server at 127.0.0.1:5432 only
  when the private one cannot start, and says so.
- ``RedisServer``: a private ``redis-server`` on a Unix socket without persistence.
- ``cpu_sample``/``cpu_split``/``wait_quiet``: CPU seconds from /proc, so every window can
  report the client's, the servers' and everybody else's share of the 2 cores.

PEERS.md (in the shared notes) is the method these follow.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_SETTINGS = ("server_version", "fsync", "synchronous_commit", "full_page_writes",
               "wal_sync_method", "shared_buffers", "wal_level", "max_wal_size",
               "checkpoint_timeout", "autovacuum", "listen_addresses",
               "unix_socket_directories")
PG_SYSTEM_HOST, PG_SYSTEM_PORT, PG_SYSTEM_DB = "127.0.0.1", 5432, "test"
CLK_TCK = os.sysconf("SC_CLK_TCK")
QUIET_CORE = 0.25
QUIET_SAMPLE_S = 0.5


def _run(cmd: list[str], timeout_s: float = 60) -> str:
    """Run a command, return stdout; raise with its stderr so the caller can say why."""
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}...: {(out.stderr or out.stdout).strip()[-500:]}")
    return out.stdout


class PgServer:
    """A PostgreSQL instance for one benchmark run.

    ``start()`` tries a private instance in a temporary directory (run as user ``postgres``,
    which refuses root); if that fails it uses the system server and ``note`` says why.
    ``stop()`` stops and deletes the private instance; it is safe to call twice.
    """

    def __init__(self) -> None:
        self.private = False
        self.note = ""
        self.dir: Path | None = None
        self.host = PG_SYSTEM_HOST
        self.port = PG_SYSTEM_PORT

    def start(self) -> None:
        """Start the private instance, or fall back to the system one."""
        try:
            self._start_private()
            self.private = True
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            self.stop()
            self.host, self.port = PG_SYSTEM_HOST, PG_SYSTEM_PORT
            self.note = (f"private PostgreSQL failed to start ({exc}); using the system "
                         f"server at {PG_SYSTEM_HOST}:{PG_SYSTEM_PORT} over TCP, whose "
                         "settings are whatever that server has")
            self.psql(PG_SYSTEM_DB, "SELECT 1")

    def _start_private(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="nextcall-bench-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        as_pg = ["runuser", "-u", "postgres", "--"]
        _run(as_pg + [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                      "--auth=trust", "-E", "UTF8", "--no-sync"], timeout_s=120)
        opts = (f"-c listen_addresses='' -c unix_socket_directories={self.dir} "
                "-c shared_buffers=256MB")
        _run(as_pg + [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"),
                      "-o", opts, "-w", "-t", "60", "start"], timeout_s=90)
        self.host = str(self.dir)
        self.port = 5432

    @property
    def pid(self) -> int:
        """The postmaster's pid: every backend and helper of the instance is its child."""
        data = (self.dir / "data") if self.private and self.dir else Path(
            self.psql("postgres", "SHOW data_directory").strip())
        return int((data / "postmaster.pid").read_text().split()[0])

    def dsn(self, db: str) -> str:
        """A libpq/asyncpg URL for database ``db``."""
        if self.private:
            return f"postgresql://postgres@/{db}?host={self.host}"
        return f"postgresql://postgres@{self.host}:{self.port}/{db}"

    def sqlalchemy_url(self, db: str) -> str:
        """The daemon's ``database`` setting for database ``db``."""
        return self.dsn(db).replace("postgresql://", "postgresql+asyncpg://", 1)

    @property
    def peer_db(self) -> str:
        """Where the SKIP LOCKED peer keeps its tables."""
        return "peer" if self.private else PG_SYSTEM_DB

    def psql(self, db: str, sql: str) -> str:
        """Run SQL through psql (the orchestrator stays synchronous)."""
        return _run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                     "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql])

    def fresh_database(self, db: str) -> None:
        """Drop and create ``db`` so every repetition starts from nothing."""
        self.psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        self.psql("postgres", f"CREATE DATABASE {db}")

    def settings(self) -> dict[str, str]:
        """The settings in effect, to print: fsync and friends decide the peer's speed."""
        return {name: self.psql("postgres", f"SHOW {name}").strip() for name in PG_SETTINGS}

    def stop(self) -> None:
        """Stop and delete the private instance (fast shutdown, then SIGKILL if stuck)."""
        if self.dir is None:
            return
        data = self.dir / "data"
        if (data / "postmaster.pid").exists():
            try:
                _run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D",
                      str(data), "-m", "fast", "-w", "-t", "30", "stop"], timeout_s=40)
            except (RuntimeError, subprocess.TimeoutExpired):
                pid_file = data / "postmaster.pid"
                if pid_file.exists():
                    _kill_tree(int(pid_file.read_text().split()[0]))
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


class RedisServer:
    """A private ``redis-server`` on a Unix socket with persistence off (PEERS.md)."""

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> str:
        """The server's Unix socket (once started)."""
        assert self.dir is not None
        return str(self.dir / "redis.sock")

    def start(self) -> None:
        """Start the server and wait until its socket exists.

        Raises:
            RuntimeError: the server exited or did not create its socket within 10 s.
        """
        self.dir = Path(tempfile.mkdtemp(prefix="nextcall-bench-redis-"))
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.socket, "--unixsocketperm",
             "700", "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--logfile", str(self.dir / "log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start (see {self.dir / 'log'})")
            time.sleep(0.02)

    @property
    def pid(self) -> int:
        """The server's pid (one process; background threads are counted with it)."""
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """Stop the server and delete its directory; safe to call twice."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def pg_version() -> str:
    """The PostgreSQL binaries' version, for the report's header."""
    return _run([str(PG_BIN / "postgres"), "--version"]).split()[2]


def redis_version() -> str:
    """The redis-server version string, for the report's header."""
    return _run(["redis-server", "--version"]).split("v=")[1].split()[0]


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    """SIGTERM, wait, then SIGKILL: a stuck child must not outlive the benchmark."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            proc.wait(5)


def _kill_tree(pid: int) -> None:
    for p in _descendants([pid], _parents()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


# --- CPU accounting -------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw[raw.rindex(b")") + 2:].decode().split()


def _parents() -> dict[int, int]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields is not None:
                out[int(name)] = int(fields[1])
    return out


def _descendants(roots: Iterable[int], parents: dict[int, int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    todo = [r for r in roots if r in parents]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, []))
    return seen


def _tree_cpu_s(pids: set[int]) -> float:
    """CPU seconds of the live processes plus the children they reaped (cutime, cstime),
    so a backend that exits mid-window is still counted, once, via its parent."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += sum(int(x) for x in fields[11:15])
    return ticks / CLK_TCK


def _machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine: all but idle and iowait (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU seconds at one instant."""

    wall_s: float
    machine_s: float
    client_s: float
    server_s: float


def cpu_sample(client_pids: Iterable[int], server_pids: Iterable[int]) -> CpuSample:
    """Read the machine's, the client trees' and the server trees' CPU seconds now."""
    parents = _parents()
    client = _descendants(client_pids, parents)
    server = _descendants(server_pids, parents) - client
    return CpuSample(time.monotonic(), _machine_busy_s(), _tree_cpu_s(client),
                     _tree_cpu_s(server))


@dataclass(frozen=True)
class CpuSplit:
    """Average use between two samples, in percent of one core."""

    client_pct: float
    server_pct: float
    other_pct: float


def cpu_split(a: CpuSample, b: CpuSample) -> CpuSplit:
    """What the client, the servers and every other process used between ``a`` and ``b``.

    "Other" is the machine's busy time minus client and servers (the orchestrator, which
    sleeps in a pipe read meanwhile, lands there too); clamped at 0 because the two
    sources tick independently.
    """
    wall = max(b.wall_s - a.wall_s, 1e-9)
    client = (b.client_s - a.client_s) / wall * 100
    server = (b.server_s - a.server_s) / wall * 100
    machine = (b.machine_s - a.machine_s) / wall * 100
    return CpuSplit(client, server, max(machine - client - server, 0.0))


@dataclass(frozen=True)
class Quiet:
    """How ``wait_quiet`` ended: ``ok`` is false when it gave up."""

    ok: bool
    waited_s: float
    other_pct: float
    own_pct: float


def wait_quiet(client_pids: Iterable[int], server_pids: Iterable[int],
               timeout_s: float = 30.0) -> Quiet:
    """Wait until other processes use at most 25 % of a core, and the benchmark's own
    processes too (a checkpoint or vacuum left over from the setup would land in the
    window). Gives up after ``timeout_s`` and says so, so a busy machine cannot stall the
    run."""
    clients, servers = list(client_pids), list(server_pids)
    start = time.monotonic()
    prev = cpu_sample(clients, servers)
    while True:
        time.sleep(QUIET_SAMPLE_S)
        cur = cpu_sample(clients, servers)
        split = cpu_split(prev, cur)
        own = split.client_pct + split.server_pct
        waited = cur.wall_s - start
        if split.other_pct <= QUIET_CORE * 100 and own <= QUIET_CORE * 100:
            return Quiet(True, waited, split.other_pct, own)
        if waited >= timeout_s:
            return Quiet(False, waited, split.other_pct, own)
        prev = cur

"""Group commit: the one writer of each database.

Every change is queued as a ``Write`` (ops, the records whose stored fields the caller
needs back, and a callback). The writer commits whatever is queued the moment it is free,
in one transaction, then hands the whole batch back to the event loop in one call, where
each callback runs. Nothing waits to build a batch (a batch is what queued during the
previous commit), and nothing costs a wake-up per request: the loop wakes the writer only
when it is idle, and the writer wakes the loop once per batch.

SQLite: a dedicated thread with its own ``sqlite3`` connection (``BEGIN IMMEDIATE``;
``sqlite3`` releases the GIL while SQLite works, so commits overlap the event loop).
PostgreSQL: an asyncio task on one asyncpg connection. Both read back, inside the same
transaction, the stored fields (id, list, data, team) of records handed out in the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..core.errors import StorageError
from .base import Done, Fetched
from .statements import Op, Stmt, pg_set_based

logger = logging.getLogger(__name__)

#: called on the event loop with each batch: (writes, fetched rows or None, the failure or
#: None, seconds the commit took)
Finished = Callable[[list["Write"], Fetched | None, BaseException | None, float], None]
_FETCH_COLS = 'rid, id, "list", data, team'
#: how long a commit waits for another connection's write lock (an outside ``sqlite3``
#: session, a migration run by hand) before it fails; the daemon then stops (fail-stop)
BUSY_TIMEOUT_S = 10.0
_SQLITE_BUSY = 5


class _Busy(Exception):
    """Another connection holds the write lock, and this commit may not wait for it."""


class Write:
    """One caller's changes: committed together with whatever else is queued."""

    __slots__ = ("ops", "fetch", "done")

    def __init__(self, ops: Sequence[Op], fetch: Sequence[int], done: Done) -> None:
        self.ops = ops
        self.fetch = fetch
        self.done = done


def _runs(ops: list[Op]) -> list[tuple[Stmt, list[tuple[Any, ...]]]]:
    """Consecutive ops of one statement, as (statement, rows); order is kept."""
    out: list[tuple[Stmt, list[tuple[Any, ...]]]] = []
    last: Stmt | None = None
    for stmt, params in ops:
        if stmt is last:
            out[-1][1].append(params)
        else:
            out.append((stmt, [params]))
            last = stmt
    return out


class Writer:
    """What the store needs of a writer."""

    def submit(self, w: Write) -> None:
        """Queue ``w`` for the next commit."""
        raise NotImplementedError

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        raise NotImplementedError


class SqliteWriter(Writer):
    """Group commit on a dedicated thread (see the module docstring)."""

    def __init__(self, path: str, synchronous: str, loop: asyncio.AbstractEventLoop,
                 finished: Finished) -> None:
        self.path = path
        self.synchronous = synchronous
        self._loop = loop
        self._finished = finished
        self._queue: deque[Write | None] = deque()
        self._idle = True
        self._wake = threading.Event()
        self._sql: dict[Stmt, str] = {}
        self._thread = threading.Thread(target=self._run, name="nextcall-writer", daemon=True)
        self._con: sqlite3.Connection | None = None
        #: held while a batch commits (by the writer thread, or inline by the loop)
        self._committing = threading.Lock()
        #: set by the checkpointer when the log should be rewound (``reset_wal``)
        self._reset_wanted = False
        #: the batch being committed began after a rewind was asked for: rewind after it
        self._reset_due = False
        #: how many times the writer rewound the log (tests, debugging)
        self.resets = 0
        #: the last rewind found a reader in the way (logged once until one succeeds)
        self._reset_blocked = False
        #: resolved on the loop when the thread ends: None after ``close``, else the
        #: exception it died of (the daemon watches it)
        self.ended: asyncio.Future[None] = loop.create_future()

    def start(self) -> None:
        """Open the connection (in the caller's thread, so errors surface) and start."""
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                              check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        con.execute("PRAGMA foreign_keys=ON")
        # checkpoints run on a side thread, never inside a commit
        con.execute("PRAGMA wal_autocheckpoint=0")
        # SQLite itself never waits on this connection: a commit on the event loop must
        # not block it behind another process's lock, and rewinding the log must not wait
        # for a long reader; only the writer thread waits for a lock (``_begin``)
        con.execute("PRAGMA busy_timeout=0")
        self._con = con
        self._thread.start()

    def submit(self, w: Write) -> None:
        """Queue ``w``; wake the writer only if it sleeps."""
        self._queue.append(w)
        if self._idle:
            self._idle = False
            self._wake.set()

    def reset_wal(self) -> None:
        """Ask the writer to checkpoint and truncate the log after the next commit it
        begins: it is the only writer, so nothing waits for it, and most frames are copied
        already. Until then no write commits on the event loop (``commit_now``)."""
        self._reset_wanted = True

    def _maybe_reset(self, con: sqlite3.Connection) -> None:
        if not self._reset_due:
            return
        self._reset_due = self._reset_wanted = False
        try:
            # without waiting (busy_timeout 0): a reader on an old snapshot (a backup, an
            # outside sqlite3 session) would hold every commit up for the whole timeout
            busy = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as exc:  # the next checkpoint asks again
            logger.warning("wal_reset_failed error=%r", exc)
            return
        if busy:  # a reader in the way: the next checkpoint asks again
            if not self._reset_blocked:
                logger.warning("wal_reset_blocked reason=reader_on_old_snapshot")
            self._reset_blocked = True
            return
        if self._reset_blocked:
            logger.info("wal_reset_done after=blocked")
        self._reset_blocked = False
        self.resets += 1

    def commit_now(self, w: Write) -> bool:
        """Commit ``w`` at once on the calling thread (the event loop) if nothing else is
        queued and the writer is not committing; False leaves it to the caller to queue.

        When requests come one at a time, handing each to the writer thread and back
        costs four thread switches for one commit of tens of microseconds (on a virtual
        machine the switches cost more than the commit); batching only pays when several
        requests wait together, and then this is not used (``SqlStore.commit_now_when``).
        A commit that would wait (another connection holds the write lock) and one the
        checkpointer wants the log rewound after are left to the writer thread.
        """
        if self._queue or self._reset_wanted or not self._committing.acquire(blocking=False):
            return False
        con = self._con
        assert con is not None
        try:
            t0 = time.perf_counter()
            fetched = self._commit(con, [w], wait=False)
        except _Busy:
            self._committing.release()
            return False
        except BaseException as exc:  # noqa: BLE001 - fails the batch, stops the store
            self._committing.release()
            self._finished([w], None, exc, 0.0)
            return True
        self._committing.release()
        self._finished([w], fetched, None, time.perf_counter() - t0)
        return True

    async def close(self) -> None:
        """Commit what is queued, stop the thread, close the connection."""
        self._queue.append(None)
        self._idle = False
        self._wake.set()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def _run(self) -> None:
        q = self._queue
        con = self._con
        assert con is not None
        stop = False
        batch: list[Write] = []
        error: BaseException | None = None
        try:
            while not stop:
                if not q:
                    self._idle = True
                    if not q:  # checked again after publishing "idle" (no lost wake-up)
                        self._wake.wait()
                    self._wake.clear()
                    self._idle = False
                batch = []
                while q:
                    w = q.popleft()
                    if w is None:
                        stop = True
                    else:
                        batch.append(w)
                if not batch:
                    continue
                t0 = time.perf_counter()
                # a rewind follows a commit that began after it was asked for (the log
                # measured then holds that commit's frames)
                self._reset_due = self._reset_wanted
                with self._committing:
                    fetched = self._commit(con, batch)
                done, batch = batch, []
                self._loop.call_soon_threadsafe(self._finished, done, fetched, None,
                                                time.perf_counter() - t0)
                with self._committing:
                    self._maybe_reset(con)
        except BaseException as exc:  # noqa: BLE001 - fails every write, stops the writer
            error = exc  # a failed commit or any other death
        finally:
            con.close()
            self._loop.call_soon_threadsafe(self._stopped, batch, error)

    def _stopped(self, batch: list[Write], error: BaseException | None) -> None:
        """On the loop, once the thread is gone: resolve ``ended``; after a death, fail
        ``batch`` and every write queued since, so no caller waits forever (the store is
        then broken: later writes fail at once)."""
        if error is None:
            self.ended.set_result(None)
            return
        self.ended.set_exception(error)
        self.ended.exception()  # reported through the failed writes: no warning at exit
        pending = batch + [w for w in self._queue if w is not None]
        self._queue.clear()
        self._finished(pending, None, error, 0.0)

    def _begin(self, con: sqlite3.Connection, wait: bool) -> None:
        """Take the write lock. Another connection may hold it: the writer thread then
        waits up to ``BUSY_TIMEOUT_S`` (and fails after: the store breaks, the daemon
        stops), the event loop never waits (``_Busy``)."""
        try:
            con.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != _SQLITE_BUSY:
                raise
            if not wait:
                raise _Busy from exc
        logger.warning("sqlite_write_lock_busy action=waiting max_s=%.1f", BUSY_TIMEOUT_S)
        con.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        try:
            con.execute("BEGIN IMMEDIATE")
        finally:
            con.execute("PRAGMA busy_timeout=0")

    def _commit(self, con: sqlite3.Connection, batch: list[Write], wait: bool = True
                ) -> Fetched:
        if len(batch) == 1:
            ops, rids = batch[0].ops, batch[0].fetch
        else:
            ops = [op for w in batch for op in w.ops]
            rids = [rid for w in batch for rid in w.fetch]
        sql = self._sql
        self._begin(con, wait)  # nothing to roll back if it fails
        try:
            for stmt, rows in _grouped(ops):
                text = sql.get(stmt)
                if text is None:
                    text = sql[stmt] = stmt.render("sqlite")
                if len(rows) == 1:
                    con.execute(text, rows[0])
                else:
                    con.executemany(text, rows)
            fetched: Fetched = {}
            for k in range(0, len(rids), _FETCH_CHUNK):
                chunk = list(rids[k:k + _FETCH_CHUNK])
                size = _padded(len(chunk))
                chunk += chunk[-1:] * (size - len(chunk))  # one statement per size class
                for rid, rec_id, lst, data, team in con.execute(_fetch_sql(size), chunk):
                    fetched[rid] = (rec_id, lst, data, team)
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise
        return fetched


_FETCH_CHUNK = 512
_fetch_texts: dict[int, str] = {}


def _padded(n: int) -> int:
    size = 1
    while size < n:
        size *= 2
    return size


def _fetch_sql(size: int) -> str:
    text = _fetch_texts.get(size)
    if text is None:
        text = _fetch_texts[size] = (f"SELECT {_FETCH_COLS} FROM records WHERE rid IN "
                                     f"({','.join('?' * size)})")
    return text


def _grouped(ops: Sequence[Op]) -> list[tuple[Stmt, list[tuple[Any, ...]]]]:
    """The ops as runs for ``executemany``: one run per statement when no row is touched
    twice (order between rows of different tables and different rows does not matter),
    else consecutive runs in order."""
    by_stmt: dict[Stmt, list[tuple[Any, ...]]] = {}
    for stmt, params in ops:
        rows = by_stmt.get(stmt)
        if rows is None:
            by_stmt[stmt] = [params]
        else:
            rows.append(params)
    if len(by_stmt) == len(ops) or _distinct_rows(by_stmt):
        return list(by_stmt.items())
    return _runs(list(ops))


def _distinct_rows(by_stmt: dict[Stmt, list[tuple[Any, ...]]]) -> bool:
    """Whether every op is a set-based insert or keyed update, each touching its own row
    (the tables' primary keys), so the ops may be grouped by statement."""
    touched: dict[str, set[Any]] = {}
    for stmt, rows in by_stmt.items():
        pk = _PK.get(stmt.table)
        if not stmt.table or (stmt.key is None and stmt.table != "history" and pk is None):
            return False
        if pk is None:
            continue  # history: appended rows, nothing to collide with
        col = len(stmt.cols) if stmt.key is not None else (
            stmt.cols.index(pk) if pk in stmt.cols else None)
        if col is None:
            return False
        keys = touched.setdefault(stmt.table, set())
        for row in rows:
            if row[col] in keys:
                return False
            keys.add(row[col])
    return True


#: the primary key each set-based table is checked on (a batch touching one row twice
#: takes the transaction path: one statement sees one snapshot)
_PK = {"leases": "lid", "records": "rid"}


def _one_statement(ops: list[Op], rids: list[int]) -> tuple[str, list[Any]] | None:
    """The batch as one PostgreSQL statement (data-modifying CTEs over ``unnest``ed
    arrays, then the fetch), or None when it needs the transaction path: a statement
    without a set-based form, one row touched twice, a fetched record also updated
    (the fetch would see it as it was before the statement), or a row filled from a
    record the batch writes (``_fills_from_written``)."""
    by_stmt: dict[Stmt, list[tuple[Any, ...]]] = {}
    for stmt, params in ops:
        by_stmt.setdefault(stmt, []).append(params)
    if _fills_from_written(by_stmt):
        return None
    touched: dict[str, set[Any]] = {}
    ctes: list[str] = []
    args: list[Any] = []
    for stmt, rows in by_stmt.items():
        text = pg_set_based(stmt, len(args) + 1)
        if text is None:
            return None
        pk = _PK.get(stmt.table)
        if pk is not None:
            col = len(stmt.cols) if stmt.key is not None else (
                stmt.cols.index(pk) if pk in stmt.cols else None)
            if col is not None:
                keys = touched.setdefault(stmt.table, set())
                for row in rows:
                    if row[col] in keys:
                        return None
                    keys.add(row[col])
        ctes.append(f"s{len(ctes)} AS ({text})")
        args.extend(list(col) for col in zip(*rows, strict=True))
    if touched.get("records", set()) & set(rids):
        return None
    tail = (f" SELECT {_FETCH_COLS} FROM records WHERE rid = ANY(${len(args) + 1}::bigint[])"
            if rids else " SELECT NULL, NULL, NULL, NULL, NULL WHERE false")
    if rids:
        args.append(rids)
    return ("WITH " + ", ".join(ctes) + tail if ctes else tail.lstrip()), args


def _fills_from_written(by_stmt: dict[Stmt, list[tuple[Any, ...]]]) -> bool:
    """Whether a row the batch inserts takes a column from a record (``Stmt.fill``: a
    history row's list) that the batch also writes: one statement would read the record
    as it was before it. (The daemon never does this: a record is written before its
    history; tests and tools may.)"""
    filled = {row[0] for stmt, rows in by_stmt.items() if stmt.fill is not None
              for row in rows if row[-1] is None}
    if not filled:
        return False
    for stmt, rows in by_stmt.items():
        if stmt.table == "records" and stmt.fill is None and (
                stmt.key is None or "list" in stmt.cols):
            col = len(stmt.cols) if stmt.key is not None else stmt.cols.index("rid")
            if any(row[col] in filled for row in rows):
                return True
    return False


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy ``postgresql+asyncpg://`` URL as an asyncpg DSN."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep else url


class PgWriter(Writer):
    """Group commit on one asyncpg connection, as an asyncio task."""

    def __init__(self, dsn: str, finished: Finished) -> None:
        self.dsn = dsn
        self._finished = finished
        self._queue: list[Write] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        self._sql: dict[Stmt, str] = {}

    async def start(self) -> None:
        """Connect (errors surface here) and start the task."""
        import asyncpg
        self._conn = await asyncpg.connect(self.dsn)
        self._task = asyncio.create_task(self._run(), name="store-writer")

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The writer task (the daemon watches it)."""
        return self._task

    def submit(self, w: Write) -> None:
        """Queue ``w`` and wake the task."""
        self._queue.append(w)
        self._wake.set()

    async def close(self) -> None:
        """Commit what is queued, stop the task, disconnect."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.wait([self._task])
            if not self._task.cancelled():
                self._task.exception()  # a death was reported through the failed writes
        if self._conn is not None:
            await self._conn.close()

    async def _run(self) -> None:
        batch: list[Write] = []
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if not self._queue:
                    if self._closing:
                        return
                    continue
                batch, self._queue = self._queue, []
                t0 = time.perf_counter()
                fetched = await self._commit(batch)
                done, batch = batch, []
                self._finished(done, fetched, None, time.perf_counter() - t0)
                if self._queue:
                    self._wake.set()
        except BaseException as exc:  # noqa: BLE001 - fails every write, stops the writer
            # a failed commit, a cancel, any other death: no caller may wait forever
            pending, self._queue = batch + self._queue, []
            self._finished(pending, None, exc, 0.0)
            raise

    async def _commit(self, batch: list[Write]) -> Fetched:
        ops = [op for w in batch for op in w.ops]
        rids = [rid for w in batch for rid in w.fetch]
        one = _one_statement(ops, rids)
        if one is not None:
            # the whole batch in one statement: one round trip, committed on its own
            rows = await self._conn.fetch(one[0], *one[1])
            return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}
        return await self._transaction(ops, rids)

    async def _transaction(self, ops: list[Op], rids: list[int]) -> Fetched:
        conn = self._conn
        sql = self._sql
        fetched: Fetched = {}
        # the commit is not cancelled half-way: a stop waits for it
        async with conn.transaction():
            for stmt, rows in _runs(ops):
                text = sql.get(stmt)
                if text is None:
                    text = sql[stmt] = stmt.render("postgresql")
                if len(rows) == 1:
                    await conn.execute(text, *rows[0])
                else:
                    await conn.executemany(text, rows)
            if rids:
                for row in await conn.fetch(f"SELECT {_FETCH_COLS} FROM records "
                                            "WHERE rid = ANY($1::bigint[])", rids):
                    fetched[row[0]] = (row[1], row[2], row[3], row[4])
        return fetched


def translate(exc: BaseException) -> StorageError:
    """A driver failure as the storage error callers see."""
    err = StorageError(f"commit failed: {exc}")
    err.__cause__ = exc
    return err

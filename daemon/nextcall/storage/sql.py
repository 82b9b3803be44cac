"""The SQL store: SQLite (aiosqlite, default) or PostgreSQL (asyncpg), same code.

Writes go through one writer task that group-commits: every change queued while the
previous commit ran is committed in the next single transaction, then all its callers are
answered. Nothing waits to build a batch (PITFALLS §9): the writer commits whatever is
pending the moment it is free. On SQLite the writer's connection starts its
transactions with ``BEGIN IMMEDIATE`` and never checkpoints; a side thread checkpoints
the WAL, so page copying stays off the commit path.

Driver exceptions are translated here (``StorageError``); nothing above catches SQLAlchemy
types. A failed commit fails every caller of that batch and marks the store broken: the
daemon then stops (fail-stop) and a restart rebuilds a consistent state from the database.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import bindparam, create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import NullPool
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..core.errors import StorageError
from .schema import agents, history, leases, phone_lists, records, reminders

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
CHECKPOINT_INTERVAL_S = 1.0

# Hot-path statements, compiled once; executemany'd in runs by the writer.
INS_LEASE = insert(leases)
END_LEASE = update(leases).where(leases.c.lid == bindparam("b_lid")).values(
    ended_at=bindparam("ended_at"), end=bindparam("end"), code=bindparam("code"),
    result=bindparam("result"))
EXT_LEASE = update(leases).where(leases.c.lid == bindparam("b_lid")).values(
    expires_at=bindparam("expires_at"))
INS_HISTORY = insert(history)
UPD_RECORD = update(records).where(records.c.rid == bindparam("b_rid")).values(
    state=bindparam("state"), reason=bindparam("reason"), due_at=bindparam("due_at"),
    attempts=bindparam("attempts"), owner=bindparam("owner"), team=bindparam("team"),
    best_cp=bindparam("best_cp"), phone_idx=bindparam("phone_idx"),
    callback=bindparam("callback"), updated_at=bindparam("updated_at"))
#: a disposition that also changes numbers or moves the record (dnc, remove, block, roll)
UPD_RECORD_MOVE = update(records).where(records.c.rid == bindparam("b_rid")).values(
    state=bindparam("state"), reason=bindparam("reason"), due_at=bindparam("due_at"),
    attempts=bindparam("attempts"), owner=bindparam("owner"), team=bindparam("team"),
    best_cp=bindparam("best_cp"), phone_idx=bindparam("phone_idx"),
    callback=bindparam("callback"), updated_at=bindparam("updated_at"),
    phones=bindparam("phones"), campaign=bindparam("campaign"), list=bindparam("list"))
DEL_LISTED = delete(phone_lists).where(phone_lists.c.number == bindparam("b_number"))
INS_LISTED = insert(phone_lists)
UPD_RECORD_DATA = update(records).where(records.c.rid == bindparam("b_rid")).values(
    list=bindparam("list"), phones=bindparam("phones"), timezone=bindparam("timezone"),
    priority=bindparam("priority"), data=bindparam("data"), updated_at=bindparam("updated_at"),
    team=func.coalesce(bindparam("team"), records.c.team))
INS_RECORD = insert(records)
DEL_AGENT = delete(agents).where(agents.c.agent == bindparam("b_agent"))
INS_AGENT = insert(agents)
#: a callback reminder was sent (one row per record and callback instant); DEL first, as
#: a callback moved away and back to an instant is reminded again
DEL_REMINDER = delete(reminders).where(reminders.c.rid == bindparam("b_rid"),
                                       reminders.c.at == bindparam("b_at"))
INS_REMINDER = insert(reminders)

Op = tuple[Any, dict[str, Any]]

REBUILD_COLUMNS = ("rid", "id", "campaign", "list", "phones", "timezone", "priority", "data",
                   "state", "reason", "due_at", "attempts", "owner", "team", "best_cp",
                   "phone_idx", "callback")
OPEN_STATES = ("ready", "callback", "held")


@dataclass
class Snapshot:
    """Everything a rebuild needs, as plain tuples."""

    records: list[tuple[Any, ...]]
    closed_counts: list[tuple[str, str, int]]
    leases: list[tuple[Any, ...]]
    agents: list[tuple[Any, ...]]
    max_rid: int
    max_lid: int
    listed: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Pending:
    ops: list[Op]
    fut: asyncio.Future[None]


class SqlStore:
    """Async store over SQLAlchemy Core. The constructor connects nothing."""

    def __init__(self, url: str, *, synchronous: str = "normal",
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        self.synchronous = synchronous
        self.on_failure = on_failure
        self.writer: AsyncEngine | None = None
        self.reader: AsyncEngine | None = None
        self.broken: BaseException | None = None
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ckpt_task: asyncio.Task[None] | None = None
        self._closing = False
        # SQLite writes: a sync engine on one dedicated thread (see _commit_sync)
        self._sync_writer: Engine | None = None
        self._sync_conn: Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._sql_cache: dict[tuple[int, tuple[str, ...]], tuple[str, tuple[str, ...]]] = {}
        #: seconds of each commit, for metrics
        self.commit_observer: Callable[[float, int], None] | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def sqlite_path(self) -> str | None:
        """The database file, for SQLite URLs."""
        if self.dialect != "sqlite":
            return None
        return make_url(self.url).database

    def _sqlite_setup(self, engine: AsyncEngine | Engine, *, writer: bool) -> None:
        sync = self.synchronous.upper()
        target = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

        @event.listens_for(target, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            # The pysqlite driver's own transaction handling is off; we BEGIN ourselves.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.execute(f"PRAGMA synchronous={sync}")
            cur.execute("PRAGMA foreign_keys=ON")
            if writer:
                # checkpoints run on a side thread, never inside a commit
                cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

        @event.listens_for(target, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    async def open(self) -> None:
        """Connect and start the writer.

        Raises:
            StorageError: the database cannot be opened.
        """
        try:
            if self.dialect == "sqlite":
                path = self.sqlite_path
                if path and path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                self.writer = create_async_engine(self.url, pool_size=1, max_overflow=0)
                self.reader = create_async_engine(self.url, pool_size=4, max_overflow=4)
                # aiosqlite makes every DBAPI call a thread hop (about 20 per next+dispose
                # cycle, measured); the hot path instead runs each group commit as one
                # call on a dedicated thread, through the same Core statements.
                sync_url = make_url(self.url).set(drivername="sqlite+pysqlite")
                self._sync_writer = create_engine(sync_url, poolclass=NullPool)
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="nextcall-writer")
                self._sqlite_setup(self._sync_writer, writer=True)
                self._sqlite_setup(self.writer, writer=True)
                self._sqlite_setup(self.reader, writer=False)
            else:
                self.writer = create_async_engine(self.url, pool_size=2, max_overflow=0,
                                                  pool_pre_ping=True)
                self.reader = create_async_engine(self.url, pool_size=4, max_overflow=4,
                                                  pool_pre_ping=True)
            async with self.writer.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except (SQLAlchemyError, OSError) as exc:
            raise StorageError(f"cannot open database {self._safe_url()}: {exc}") from exc
        self._task = asyncio.create_task(self._writer_loop(), name="store-writer")
        if self.dialect == "sqlite":
            self._ckpt_task = asyncio.create_task(self._checkpoint_loop(),
                                                  name="store-checkpoint")

    def _safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    async def migrate(self) -> list[str]:
        """Bring the schema to the newest revision; returns the revisions applied."""
        assert self.writer is not None
        applied: list[str] = []

        def _upgrade(sync_conn: Connection) -> None:
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = sync_conn
            from alembic.runtime.migration import MigrationContext
            before = MigrationContext.configure(sync_conn).get_current_revision()
            command.upgrade(cfg, "head")
            after = MigrationContext.configure(sync_conn).get_current_revision()
            if before != after:
                applied.append(f"{before or 'empty'} -> {after}")

        try:
            # Alembic manages its own transaction; run outside our BEGIN IMMEDIATE hook
            # on a plain connection.
            async with self.writer.connect() as conn:
                await conn.run_sync(_upgrade)
                await conn.commit()
        except SQLAlchemyError as exc:
            raise StorageError(f"migration failed: {exc}") from exc
        return applied

    async def close(self) -> None:
        """Commit what is queued, stop the writer, checkpoint, disconnect."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._ckpt_task is not None:
            self._ckpt_task.cancel()
            try:
                await self._ckpt_task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_sync)
            self._executor.shutdown(wait=True)
        if self.dialect == "sqlite" and self.broken is None:
            await asyncio.to_thread(self._checkpoint, "TRUNCATE")
        for eng in (self.writer, self.reader):
            if eng is not None:
                await eng.dispose()

    # ------------------------------------------------------------------ writes
    def submit(self, ops: list[Op]) -> asyncio.Future[None]:
        """Queue ``ops`` for the next group commit; the future resolves once committed.

        The future fails with ``StorageError`` if the commit fails or the store is broken.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.broken is not None:
            fut.set_exception(StorageError("storage has failed; the daemon is stopping"))
            return fut
        self._queue.append(_Pending(ops, fut))
        self._wake.set()
        return fut

    async def write(self, ops: list[Op]) -> None:
        """``submit`` and wait. The commit itself is shielded from cancellation."""
        await asyncio.shield(self.submit(ops))

    async def _writer_loop(self) -> None:
        assert self.writer is not None
        # One connection for the writer's whole life: no pool checkout or reset per batch.
        conn = None if self._sync_writer is not None else await self.writer.connect()
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if not self._queue:
                    if self._closing:
                        return
                    continue
                batch, self._queue = self._queue, []
                ops = [op for p in batch for op in p.ops]
                t0 = time.perf_counter()
                try:
                    if conn is None:
                        # SQLite: the whole transaction in one hop to the writer thread
                        await loop.run_in_executor(self._executor, self._commit_sync, ops)
                    else:
                        await conn.begin()
                        await self._execute_runs(conn, ops)
                        await conn.commit()
                except BaseException as exc:  # noqa: BLE001 - every failure fails the batch
                    self._fail(batch, exc)
                    if conn is not None:
                        try:
                            await conn.rollback()
                        except BaseException:  # noqa: BLE001 - the connection may be gone
                            pass
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    return
                dt = time.perf_counter() - t0
                if self.commit_observer is not None:
                    self.commit_observer(dt, len(batch))
                for p in batch:
                    if not p.fut.done():
                        p.fut.set_result(None)
                if self._queue:
                    self._wake.set()
        finally:
            if conn is not None:
                await conn.close()

    def _compiled(self, stmt: Any, keys: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
        """SQL text and parameter order of ``stmt`` for these keys, compiled once by
        SQLAlchemy for SQLite (qmark style)."""
        hit = self._sql_cache.get((id(stmt), keys))
        if hit is None:
            compiled = stmt.compile(dialect=self._sync_writer.dialect,  # type: ignore[union-attr]
                                    column_keys=list(keys))
            hit = (compiled.string, tuple(compiled.positiontup or ()))
            self._sql_cache[(id(stmt), keys)] = hit
        return hit

    def _commit_sync(self, ops: Sequence[Op]) -> None:
        # Runs on the single writer thread; the connection lives there for good. The
        # statements are SQLAlchemy's, compiled once; each run of rows goes to the driver's
        # executemany directly, which keeps per-row work in C (SQLAlchemy's per-row
        # parameter processing was the largest CPU cost of a busy daemon).
        assert self._sync_writer is not None
        if self._sync_conn is None:
            self._sync_conn = self._sync_writer.connect()
        raw = self._sync_conn.connection.driver_connection
        assert raw is not None
        try:
            raw.execute("BEGIN IMMEDIATE")
            i = 0
            while i < len(ops):
                stmt, first = ops[i]
                keys = tuple(first)
                j = i
                while j < len(ops) and ops[j][0] is stmt and len(ops[j][1]) == len(keys):
                    j += 1
                sql, order = self._compiled(stmt, keys)
                raw.executemany(sql, [tuple(op[1][k] for k in order) for op in ops[i:j]])
                i = j
            raw.execute("COMMIT")
        except BaseException:
            try:
                raw.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - no transaction, or the connection is gone
                pass
            self._sync_conn.close()
            self._sync_conn = None
            raise

    def _close_sync(self) -> None:
        if self._sync_conn is not None:
            self._sync_conn.close()
            self._sync_conn = None
        if self._sync_writer is not None:
            self._sync_writer.dispose()

    def _fail(self, batch: list[_Pending], exc: BaseException) -> None:
        err = StorageError(f"commit failed: {exc}")
        err.__cause__ = exc
        logger.error("store_commit_failed error=%r batch=%d", exc, len(batch))
        self.broken = exc
        for p in batch + self._queue:
            if not p.fut.done():
                p.fut.set_exception(err)
        self._queue = []
        if self.on_failure is not None:
            self.on_failure(exc)

    @staticmethod
    async def _execute_runs(conn: AsyncConnection, ops: Sequence[Op]) -> None:
        # Consecutive ops on the same statement become one executemany; order is kept.
        i = 0
        while i < len(ops):
            stmt = ops[i][0]
            j = i
            while j < len(ops) and ops[j][0] is stmt:
                j += 1
            params = [op[1] for op in ops[i:j]]
            await conn.execute(stmt, params if len(params) > 1 else params[0])
            i = j

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self, mode: str = "PASSIVE") -> None:
        path = self.sqlite_path
        if not path or path == ":memory:":
            return
        con = sqlite3.connect(path, timeout=10)
        try:
            con.execute(f"PRAGMA wal_checkpoint({mode})")
        finally:
            con.close()

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
            try:
                await asyncio.to_thread(self._checkpoint)
            except (sqlite3.Error, OSError) as exc:
                logger.warning("wal_checkpoint_failed error=%r", exc)

    # ------------------------------------------------------------------ reads
    async def snapshot(self, now: float) -> Snapshot:
        """Read everything a rebuild needs in as few round trips as possible."""
        t0 = time.perf_counter()
        if self.dialect == "sqlite":
            try:
                snap = await asyncio.to_thread(self._sqlite_snapshot, now)
            except sqlite3.Error as exc:
                raise StorageError(f"rebuild read failed: {exc}") from exc
        else:
            snap = await self._sql_snapshot(now)
        snap.timings["read_s"] = time.perf_counter() - t0
        return snap

    def _sqlite_snapshot(self, now: float) -> Snapshot:
        # stdlib sqlite3 in a thread: tuples at C speed, one read transaction.
        con = sqlite3.connect(self.sqlite_path or "", timeout=10)
        try:
            con.execute("BEGIN")
            cols = ", ".join(REBUILD_COLUMNS)
            recs = con.execute(f"SELECT {cols} FROM records WHERE state IN ('ready', "
                               "'callback', 'held') ORDER BY rid").fetchall()
            closed = con.execute("SELECT campaign, COALESCE(reason, 'final'), count(*) FROM "
                                 "records WHERE state = 'closed' GROUP BY 1, 2").fetchall()
            ls = con.execute("SELECT lid, secret, rid, agent, uid, issued_at, expires_at, "
                             "phone, phone_idx, reason FROM leases WHERE ended_at IS NULL "
                             "AND expires_at > ?", (now,)).fetchall()
            ags = con.execute("SELECT agent, campaigns, teams, logged_in FROM agents") \
                .fetchall()
            max_rid = con.execute("SELECT COALESCE(max(rid), 0) FROM records").fetchone()[0]
            max_lid = con.execute("SELECT COALESCE(max(lid), 0) FROM leases").fetchone()[0]
            listed = con.execute("SELECT number, list FROM phone_lists").fetchall()
            con.execute("COMMIT")
        finally:
            con.close()
        return Snapshot(recs, closed, ls, ags, max_rid, max_lid, listed)

    async def _sql_snapshot(self, now: float) -> Snapshot:
        assert self.reader is not None
        try:
            async with self.reader.connect() as conn:
                cols = [records.c[c] for c in REBUILD_COLUMNS]
                recs = (await conn.execute(select(*cols).where(
                    records.c.state.in_(OPEN_STATES)).order_by(records.c.rid))).all()
                closed = (await conn.execute(select(
                    records.c.campaign, records.c.reason, func.count()).where(
                    records.c.state == "closed").group_by(records.c.campaign,
                                                          records.c.reason))).all()
                closed = [(c, r or "final", n) for c, r, n in closed]  # type: ignore[misc]
                ls = (await conn.execute(select(
                    leases.c.lid, leases.c.secret, leases.c.rid, leases.c.agent,
                    leases.c.uid, leases.c.issued_at, leases.c.expires_at, leases.c.phone,
                    leases.c.phone_idx, leases.c.reason).where(
                    leases.c.ended_at.is_(None), leases.c.expires_at > now))).all()
                ags = (await conn.execute(select(agents.c.agent, agents.c.campaigns,
                                                 agents.c.teams, agents.c.logged_in))).all()
                max_rid = (await conn.execute(select(func.coalesce(func.max(records.c.rid),
                                                                   0)))).scalar_one()
                max_lid = (await conn.execute(select(func.coalesce(func.max(leases.c.lid),
                                                                   0)))).scalar_one()
                listed = (await conn.execute(select(phone_lists.c.number,
                                                    phone_lists.c.list))).all()
        except SQLAlchemyError as exc:
            raise StorageError(f"rebuild read failed: {exc}") from exc
        return Snapshot([tuple(r) for r in recs], [tuple(r) for r in closed],
                        [tuple(r) for r in ls], [tuple(r) for r in ags], int(max_rid),
                        int(max_lid), [(str(n), str(x)) for n, x in listed])

    async def _read(self, fn: Callable[[AsyncConnection], Any]) -> Any:
        assert self.reader is not None
        try:
            async with self.reader.connect() as conn:
                return await fn(conn)
        except SQLAlchemyError as exc:
            raise StorageError(f"read failed: {exc}") from exc

    async def get_record(self, record_id: str) -> dict[str, Any] | None:
        """A record row with its history and leases, or None."""
        async def fn(conn: AsyncConnection) -> dict[str, Any] | None:
            row = (await conn.execute(select(records).where(records.c.id == record_id))) \
                .mappings().first()
            if row is None:
                return None
            hist = (await conn.execute(select(history).where(history.c.rid == row["rid"])
                                       .order_by(history.c.hid))).mappings().all()
            ls = (await conn.execute(select(leases).where(leases.c.rid == row["rid"])
                                     .order_by(leases.c.lid))).mappings().all()
            return {"record": dict(row), "history": [dict(h) for h in hist],
                    "leases": [dict(x) for x in ls]}
        result: dict[str, Any] | None = await self._read(fn)
        return result

    async def get_lease(self, lid: int) -> dict[str, Any] | None:
        """A lease row (for tokens the engine no longer remembers)."""
        async def fn(conn: AsyncConnection) -> dict[str, Any] | None:
            row = (await conn.execute(select(leases).where(leases.c.lid == lid))) \
                .mappings().first()
            return dict(row) if row else None
        result: dict[str, Any] | None = await self._read(fn)
        return result

    async def existing_ids(self, ids: Sequence[str]) -> dict[str, tuple[int, str, str]]:
        """Map of record id -> (rid, state, campaign) for those ids already stored."""
        async def fn(conn: AsyncConnection) -> dict[str, tuple[int, str, str]]:
            out: dict[str, tuple[int, str, str]] = {}
            for k in range(0, len(ids), 500):
                chunk = list(ids[k:k + 500])
                rows = (await conn.execute(select(records.c.id, records.c.rid,
                                                  records.c.state, records.c.campaign)
                                           .where(records.c.id.in_(chunk)))).all()
                for rid_id, rid, state, campaign in rows:
                    out[rid_id] = (int(rid), state, campaign)
            return out
        result: dict[str, tuple[int, str, str]] = await self._read(fn)
        return result

    async def records_where(self, campaign: str, list_name: str, state: str,
                            reason: str | None) -> list[dict[str, Any]]:
        """Full record rows of one list in one state (list reloads)."""
        async def fn(conn: AsyncConnection) -> list[dict[str, Any]]:
            q = select(records).where(records.c.campaign == campaign,
                                      records.c.list == list_name, records.c.state == state)
            if reason is not None:
                q = q.where(records.c.reason == reason)
            return [dict(r) for r in (await conn.execute(q.order_by(records.c.rid)))
                    .mappings().all()]
        result: list[dict[str, Any]] = await self._read(fn)
        return result

    async def reminders_of_callbacks(self) -> list[tuple[int, float, float]]:
        """(rid, callback instant, sent_at) of every reminder sent for a record that is
        in the callback state now (older rows are history)."""
        async def fn(conn: AsyncConnection) -> list[tuple[int, float, float]]:
            q = select(reminders.c.rid, reminders.c.at, reminders.c.sent_at).join(
                records, records.c.rid == reminders.c.rid).where(
                records.c.state == "callback")
            return [(int(r), float(a), float(t)) for r, a, t in
                    (await conn.execute(q)).all()]
        result: list[tuple[int, float, float]] = await self._read(fn)
        return result

    async def reminders_of(self, rid: int) -> list[dict[str, Any]]:
        """Every reminder sent for record ``rid``, oldest first."""
        async def fn(conn: AsyncConnection) -> list[dict[str, Any]]:
            q = select(reminders).where(reminders.c.rid == rid).order_by(
                reminders.c.sent_at)
            return [dict(r) for r in (await conn.execute(q)).mappings().all()]
        result: list[dict[str, Any]] = await self._read(fn)
        return result

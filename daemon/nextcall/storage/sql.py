"""The SQL store: SQLite (default) or PostgreSQL, chosen by the URL.

Writes go through one writer (``storage/writer.py``) that group-commits: every change
queued while the previous commit ran is committed in the next single transaction, then
its callers are answered. On SQLite the writer's connection never checkpoints; a side
thread checkpoints the WAL, so page copying stays off the commit path. The start-up read
is ``storage/snapshot.py``. Other reads (a record with its history, list reloads,
reminders) go through SQLAlchemy Core on a small pool.

Driver exceptions are translated here (``StorageError``); nothing above catches SQLAlchemy
or driver types. A failed commit fails every caller of that batch and marks the store
broken: the daemon then stops (fail-stop) and a restart rebuilds a consistent state from
the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .. import files
from ..core.changes import Change
from ..core.errors import StorageError
from ..core.reports import ReportQuery
from . import listing
from . import snapshot as snap
from .base import Done, Fetched
from .prefetch import HEAD_REVISION, SqliteRead
from .query import RecordQuery
from .reports import run_report
from .schema import history, leases, list_versions, records, reminders
from .statements import Op, ops_of
from .writer import (
    BUSY_TIMEOUT_S,
    PgWriter,
    SqliteWriter,
    Write,
    Writer,
    asyncpg_dsn,
    translate,
)

#: ``attempts_since`` starts reading leases issued this long before the instant it is
#: asked for (a wall clock stepped back makes issue times not quite ascending)
ATTEMPTS_MARGIN_S = 86_400.0

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
CHECKPOINT_INTERVAL_S = 1.0
#: a write-ahead log larger than this after a checkpoint is rewound by the writer
WAL_RESET_BYTES = 64 * 1024 * 1024
Snapshot = snap.Snapshot


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


class SqlStore:
    """The database behind the daemon. The constructor connects nothing."""

    def __init__(self, url: str, *, synchronous: str = "normal",
                 on_failure: Callable[[BaseException], None] | None = None,
                 watch: Callable[[Any, str], None] | None = None,
                 commit_observer: Callable[[float, int], None] | None = None,
                 after_batch: Callable[[], None] | None = None,
                 commit_now_when: Callable[[], bool] | None = None,
                 committed_now: Callable[[float], None] | None = None) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        self.synchronous = synchronous
        self.on_failure = on_failure
        #: puts the writer and the checkpointer under watch (``supervise.Watch``)
        self.watch = watch
        #: migrations (Alembic) run on this engine; reads on ``reader``
        self.admin: AsyncEngine | None = None
        self.reader: AsyncEngine | None = None
        self.writer: Writer | None = None
        self.broken: BaseException | None = None
        self._ckpt_task: asyncio.Task[None] | None = None
        #: (seconds, writes) of each commit, on the event loop, for metrics
        self.commit_observer = commit_observer
        #: called on the event loop after each batch's callbacks ran (the server writes
        #: the answers they queued, one write per connection)
        self.after_batch = after_batch
        #: whether a write may commit at once on the event loop instead of going to the
        #: writer thread (SQLite): the server says so when no other request is in flight
        self.commit_now_when = commit_now_when
        #: told how long each commit made at once on the event loop took, once it ended
        self.committed_now = committed_now

    # ------------------------------------------------------------------ lifecycle
    @property
    def sqlite_path(self) -> str | None:
        """The database file, for SQLite URLs."""
        if self.dialect != "sqlite":
            return None
        return make_url(self.url).database

    def _sqlite_setup(self, engine: AsyncEngine, *, writer: bool) -> None:
        sync = self.synchronous.upper()
        target = engine.sync_engine

        @event.listens_for(target, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            # The pysqlite driver's own transaction handling is off; we BEGIN ourselves.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            cur.execute(f"PRAGMA synchronous={sync}")
            cur.execute("PRAGMA foreign_keys=ON")
            if writer:
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
                    # private from the first byte: lease secrets and phone numbers
                    files.make_dirs(Path(path).parent)
                    files.create_private(path)
                self.admin = create_async_engine(self.url, pool_size=1, max_overflow=0)
                self.reader = create_async_engine(self.url, pool_size=4, max_overflow=4)
                self._sqlite_setup(self.admin, writer=True)
                self._sqlite_setup(self.reader, writer=False)
            else:
                self.admin = create_async_engine(self.url, pool_size=1, max_overflow=0,
                                                 pool_pre_ping=True)
                self.reader = create_async_engine(self.url, pool_size=4, max_overflow=4,
                                                  pool_pre_ping=True)
            async with self.admin.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
            path = self.sqlite_path
            if path and path != ":memory:":
                files.warn_if_open(path + suffix for suffix in files.SQLITE_SUFFIXES)
            if self.dialect == "sqlite":
                w = SqliteWriter(self.sqlite_path or "", self.synchronous,
                                 asyncio.get_running_loop(), self._finished)
                w.start()
                self.writer = w
                self._ckpt_task = asyncio.create_task(self._checkpoint_loop(),
                                                      name="store-checkpoint")
                if self.watch is not None:
                    self.watch(w.ended, "store-writer")
                    self.watch(self._ckpt_task, "store-checkpoint")
            else:
                pg = PgWriter(asyncpg_dsn(self.url), self._finished)
                await pg.start()
                self.writer = pg
                if self.watch is not None:
                    self.watch(pg.task, "store-writer")
        except (SQLAlchemyError, OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open database {self._safe_url()}: {exc}") from exc
        except Exception as exc:  # asyncpg's own errors (connection refused, auth)
            if type(exc).__module__.startswith("asyncpg"):
                raise StorageError(f"cannot open database {self._safe_url()}: {exc}") from exc
            raise

    @property
    def writer_task(self) -> asyncio.Task[None] | None:
        """The PostgreSQL writer's task (None on SQLite, whose writer is a thread)."""
        return self.writer.task if isinstance(self.writer, PgWriter) else None

    def _safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    async def revision(self) -> str | None:
        """The schema's Alembic revision (None when the database is empty)."""
        assert self.admin is not None
        try:
            async with self.admin.connect() as conn:
                row = (await conn.exec_driver_sql(
                    "SELECT version_num FROM alembic_version")).first()
                await conn.rollback()
        except SQLAlchemyError:
            return None
        return str(row[0]) if row else None

    async def migrate(self) -> list[str]:
        """Bring the schema to the newest revision; returns the revisions applied.

        A schema already at the head is left alone without loading Alembic (the common
        start, where half a second matters)."""
        assert self.admin is not None
        if await self.revision() == HEAD_REVISION:
            return []
        from alembic import command
        from alembic.config import Config as AlembicConfig
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
            async with self.admin.connect() as conn:
                await conn.run_sync(_upgrade)
                await conn.commit()
        except SQLAlchemyError as exc:
            raise StorageError(f"migration failed: {exc}") from exc
        return applied

    async def close(self) -> None:
        """Commit what is queued, stop the writer, checkpoint, disconnect."""
        if self.writer is not None:
            await self.writer.close()
        if self._ckpt_task is not None:
            self._ckpt_task.cancel()
            await asyncio.wait([self._ckpt_task])  # a death is the supervisor's to report
        if self.dialect == "sqlite" and self.broken is None and self.writer is not None:
            await asyncio.to_thread(self._checkpoint, "TRUNCATE")
            # fresh statistics let the next start find the zones of the ready records by
            # skipping through the index (the SQLite documentation's advice at close)
            await asyncio.to_thread(self._optimize)
        for eng in (self.admin, self.reader):
            if eng is not None:
                await eng.dispose()

    # ------------------------------------------------------------------ writes
    def submit(self, changes: Sequence[Change], done: Done, fetch: Sequence[int] = ()
               ) -> None:
        """Queue ``changes`` for the next group commit. ``done`` is called on the event
        loop once they are committed, with the stored fields (id, list, data, team) of the
        records in ``fetch``, or with a ``StorageError`` if the commit failed or the
        store is broken."""
        self.submit_ops(ops_of(changes), done, fetch)

    def submit_ops(self, ops: Sequence[Op], done: Done, fetch: Sequence[int] = ()) -> None:
        """``submit`` of statements already built (``storage/statements.py``)."""
        if self.broken is not None or self.writer is None:
            done(StorageError("storage has failed; the daemon is stopping"))
            return
        w = Write(ops, fetch, done)
        now_ok = self.commit_now_when
        if now_ok is not None and now_ok() and isinstance(self.writer, SqliteWriter):
            t0 = time.perf_counter()
            if self.writer.commit_now(w):
                if self.committed_now is not None:
                    self.committed_now(time.perf_counter() - t0)
                return
        self.writer.submit(w)

    def future(self, changes: Sequence[Change], fetch: Sequence[int] = ()
               ) -> asyncio.Future[Fetched]:
        """``submit`` as a future (resolves with the fetched rows)."""
        return self.ops_future(ops_of(changes), fetch)

    def ops_future(self, ops: Sequence[Op], fetch: Sequence[int] = ()
                   ) -> asyncio.Future[Fetched]:
        """``submit_ops`` as a future."""
        fut: asyncio.Future[Fetched] = asyncio.get_running_loop().create_future()

        def done(result: Fetched | BaseException) -> None:
            if fut.done():
                return
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)
        self.submit_ops(ops, done, fetch)
        return fut

    async def write(self, changes: Sequence[Change]) -> None:
        """Commit ``changes`` and wait. The commit itself is shielded from cancellation."""
        await asyncio.shield(self.future(changes))

    async def write_ops(self, ops: Sequence[Op]) -> None:
        """``write`` of statements already built."""
        await asyncio.shield(self.ops_future(ops))

    def _finished(self, batch: list[Write], fetched: Fetched | None,
                  exc: BaseException | None, seconds: float) -> None:
        """A batch is committed (or failed): answer its callers, on the event loop."""
        if exc is not None:
            self._fail(batch, exc)
            return
        assert fetched is not None
        obs = self.commit_observer
        if obs is not None:
            obs(seconds, len(batch))
        for w in batch:
            try:
                w.done(fetched)
            except Exception:  # a caller's bug must not strand the rest of the batch
                logger.exception("commit_callback_failed")
        if self.after_batch is not None:
            self.after_batch()

    def _fail(self, batch: list[Write], exc: BaseException) -> None:
        err = translate(exc)
        logger.error("store_commit_failed error=%r batch=%d", exc, len(batch))
        self.broken = exc
        for w in batch:
            try:
                w.done(err)
            except Exception:  # noqa: BLE001 - keep failing the others
                logger.exception("commit_callback_failed")
        if self.on_failure is not None:
            self.on_failure(exc)

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

    def _optimize(self) -> None:
        path = self.sqlite_path
        if not path or path == ":memory:":
            return
        con = sqlite3.connect(path, timeout=10)
        try:
            con.execute("PRAGMA analysis_limit=1000")
            con.execute("ANALYZE")
        except sqlite3.Error as exc:
            logger.warning("sqlite_optimize_failed error=%r", exc)
        finally:
            con.close()

    async def _checkpoint_loop(self) -> None:
        path = self.sqlite_path or ""
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
            try:
                await asyncio.to_thread(self._checkpoint)
                wal = await asyncio.to_thread(_size, path + "-wal")
            except (sqlite3.Error, OSError) as exc:
                logger.warning("wal_checkpoint_failed error=%r", exc)
                continue
            if wal > WAL_RESET_BYTES and isinstance(self.writer, SqliteWriter):
                # Under continuous writes a passive checkpoint never finds the log fully
                # copied when a transaction starts, so the log is never rewound and grows
                # without end. The writer rewinds it between two of its commits.
                self.writer.reset_wal()

    # ------------------------------------------------------------------ reads
    async def snapshot(self, prefetched: SqliteRead | None = None) -> Snapshot:
        """Read everything a rebuild needs (``storage/snapshot.py``), or finish the read
        ``nextcall serve`` started early.

        Raises:
            StorageError: the read failed.
        """
        try:
            if self.dialect == "sqlite":
                if prefetched is not None:
                    raw = await asyncio.to_thread(prefetched.result)
                    return snap.assemble(raw)
                return await asyncio.to_thread(snap.read_sqlite, self.sqlite_path or "")
            return await snap.read_postgres(asyncpg_dsn(self.url))
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"rebuild read failed: {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("asyncpg"):
                raise StorageError(f"rebuild read failed: {exc}") from exc
            raise

    async def max_rid(self) -> int:
        """The highest record number stored (0 when none)."""
        async def fn(conn: AsyncConnection) -> int:
            return int((await conn.execute(select(func.coalesce(func.max(records.c.rid), 0))))
                       .scalar_one())
        result: int = await self._read(fn)
        return result

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

    async def payloads(self, rids: Sequence[int]) -> Fetched:
        """The fields kept only in the database (id, list, data, team) of records."""
        async def fn(conn: AsyncConnection) -> Fetched:
            out: Fetched = {}
            for k in range(0, len(rids), 500):
                chunk = list(rids[k:k + 500])
                rows = (await conn.execute(select(records.c.rid, records.c.id,
                                                  records.c.list, records.c.data,
                                                  records.c.team)
                                           .where(records.c.rid.in_(chunk)))).all()
                for rid, rec_id, lst, data, team in rows:
                    out[int(rid)] = (rec_id, lst, data, team)
            return out
        if not rids:
            return {}
        result: Fetched = await self._read(fn)
        return result

    async def list_versions(self) -> dict[str, int]:
        """Each list's version (a database from before 0008 has none: 0)."""
        async def fn(conn: AsyncConnection) -> dict[str, int]:
            rows = (await conn.execute(select(list_versions.c.list,
                                              list_versions.c.version))).all()
            return {str(n): int(v) for n, v in rows}
        got: dict[str, int] = await self._read(fn)
        return got

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

    async def records_page(self, query: RecordQuery) -> list[dict[str, Any]]:
        """One page of a campaign's records, in rid order (``storage/listing.py``)."""
        result: list[dict[str, Any]] = await self._read(
            lambda conn: listing.read_page(conn, query))
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

    async def attempts_since(self, since: float) -> list[tuple[int, str, float]]:
        """(rid, number, issued_at) of every lease issued at or after ``since``.

        Lease numbers grow with their issue time, so the first lease worth reading is
        found by bisecting ``lid`` on the primary key (a few dozen lookups) rather than by
        an index on ``issued_at`` that every ``next`` would have to maintain. The search
        aims a day early, so a wall clock stepped back by less than that loses nothing.
        """
        async def fn(conn: AsyncConnection) -> list[tuple[int, str, float]]:
            lo, hi = (await conn.execute(select(func.coalesce(func.min(leases.c.lid), 0),
                                                func.coalesce(func.max(leases.c.lid), 0)))
                      ).one()
            aim = since - ATTEMPTS_MARGIN_S
            while lo < hi:
                mid = (lo + hi) // 2
                at = (await conn.execute(select(leases.c.issued_at).where(
                    leases.c.lid >= mid).order_by(leases.c.lid).limit(1))).scalar()
                if at is None or at >= aim:
                    hi = mid
                else:
                    lo = mid + 1
            q = select(leases.c.rid, leases.c.phone, leases.c.issued_at).where(
                leases.c.lid >= lo, leases.c.issued_at >= since).order_by(
                leases.c.issued_at)
            return [(int(r), str(p or ""), float(t)) for r, p, t in
                    (await conn.execute(q)).all()]
        result: list[tuple[int, str, float]] = await self._read(fn)
        return result

    async def reminders_of(self, rid: int) -> list[dict[str, Any]]:
        """Every reminder sent for record ``rid``, oldest first."""
        async def fn(conn: AsyncConnection) -> list[dict[str, Any]]:
            q = select(reminders).where(reminders.c.rid == rid).order_by(
                reminders.c.sent_at)
            return [dict(r) for r in (await conn.execute(q)).mappings().all()]
        result: list[dict[str, Any]] = await self._read(fn)
        return result

    async def report(self, query: ReportQuery) -> dict[str, list[dict[str, Any]]]:
        """A report over the history, computed in SQL (``storage/reports.py``)."""
        async def fn(conn: AsyncConnection) -> dict[str, list[dict[str, Any]]]:
            return await run_report(conn, self.dialect, query)
        result: dict[str, list[dict[str, Any]]] = await self._read(fn)
        return result

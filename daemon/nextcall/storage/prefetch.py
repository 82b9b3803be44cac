"""The start-up read of a SQLite database, started before the daemon's heavy imports.

Standard library only, so ``nextcall serve`` can start it right after reading the config:
SQLite packs and concatenates the ready records in C on worker threads, without the GIL,
while the main thread imports the rest of the daemon (SQLAlchemy, pydantic models,
prometheus-client: about half a second). ``storage/snapshot.py`` turns the result into
columns. The read is only started when the schema is already at the newest revision, so
the migration that follows changes nothing it read.
"""

from __future__ import annotations

import os
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

#: the newest migration (``storage/migrations/versions``); a test keeps them equal
HEAD_REVISION = "0005"
#: ready records per chunk (a chunk is one query on one connection)
CHUNK_ROWS = 200_000

_DUE = "max(due_at, 0.0)"
_PHONE = "CAST(substr(phones, 5, length(phones) - 16) AS INTEGER)"
#: exactly one active number, as the daemon writes it
SIMPLE = f"(length(phones) < 40 AND printf('[[\"+%d\",\"active\"]]', {_PHONE}) = phones)"
HEX = (f"printf('%016x%016x%08x%016x%016x', rid, CAST({_DUE} AS INTEGER), "
       f"CAST(({_DUE} - CAST({_DUE} AS INTEGER)) * 4294967296 AS INTEGER), "
       "((priority + 32768) << 48) | (attempts << 16) | ((best_cp + 128) << 8) | phone_idx, "
       f"CASE WHEN {SIMPLE} THEN {_PHONE} ELSE 0 END)")
CHUNK = (f"SELECT group_concat({HEX}, ''), group_concat(CASE WHEN {SIMPLE} THEN NULL ELSE "
         "rid || char(9) || phones END, char(30)) FROM records WHERE state = 'ready' "
         "AND campaign = ? AND timezone = ? AND rid BETWEEN ? AND ?")
PAIRS = ("SELECT campaign, timezone, count(*), min(rid), max(rid) FROM records "
         "WHERE state = 'ready' GROUP BY campaign, timezone")
OTHER_COLUMNS = ("rid", "id", "campaign", "list", "phones", "timezone", "priority", "data",
                 "state", "reason", "due_at", "attempts", "owner", "team", "best_cp",
                 "phone_idx", "callback")
OTHERS = (f"SELECT {', '.join(OTHER_COLUMNS)} FROM records "
          "WHERE state IN ('callback', 'held') ORDER BY rid")
CLOSED = ("SELECT campaign, COALESCE(reason, 'final'), count(*) FROM records "
          "WHERE state = 'closed' GROUP BY 1, 2")
LEASES = ("SELECT lid, secret, rid, agent, uid, issued_at, expires_at, phone, phone_idx, "
          "reason FROM leases WHERE ended_at IS NULL")
AGENTS = "SELECT agent, campaigns, teams, logged_in FROM agents"
LISTED = "SELECT number, list FROM phone_lists"
MAX_RID = "SELECT COALESCE(max(rid), 0) FROM records"
MAX_LID = "SELECT COALESCE(max(lid), 0) FROM leases"


@dataclass
class RawSnapshot:
    """The rows and packed strings of a start-up read, before decoding."""

    #: (campaign, timezone, first rid, last rid) of each chunk, and its (hex, phones)
    chunks: list[tuple[str, str, int, int]]
    results: list[tuple[Any, Any]]
    others: list[tuple[Any, ...]]
    closed: list[tuple[Any, ...]]
    #: every lease not ended (the caller drops those expired by now)
    leases: list[tuple[Any, ...]]
    agents: list[tuple[Any, ...]]
    listed: list[tuple[Any, ...]]
    max_rid: int
    max_lid: int


def chunks_of(pairs: list[tuple[Any, ...]]) -> list[tuple[str, str, int, int]]:
    """(campaign, timezone, first rid, last rid) ranges of about ``CHUNK_ROWS`` records."""
    out = []
    for campaign, tz, count, lo, hi in pairs:
        parts = max(1, -(-int(count) // CHUNK_ROWS))
        step = -(-(int(hi) - int(lo) + 1) // parts)
        for k in range(parts):
            a = int(lo) + k * step
            out.append((campaign, tz, a, min(int(hi), a + step - 1)))
    return out


def _chunk(path: str, chunk: tuple[str, str, int, int]) -> tuple[Any, Any]:
    con = sqlite3.connect(path, timeout=10)
    try:
        row = con.execute(CHUNK, chunk).fetchone()
        return row[0], row[1]
    finally:
        con.close()


def schema_revision(path: str) -> str | None:
    """The database's Alembic revision, or None (no file, no table)."""
    if not os.path.exists(path):
        return None
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return None
    try:
        row = con.execute("SELECT version_num FROM alembic_version").fetchone()
        return str(row[0]) if row else None
    except sqlite3.Error:
        return None
    finally:
        con.close()


class SqliteRead:
    """A start-up read running on worker threads; ``result()`` waits for it."""

    def __init__(self, path: str, workers: int | None = None) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1),
                                        thread_name_prefix="nextcall-rebuild")
        # the small queries on a thread of their own, beside the chunk workers
        self._side = ThreadPoolExecutor(1, thread_name_prefix="nextcall-rebuild-main")
        self._main: Future[RawSnapshot] = self._side.submit(self._read)

    def _read(self) -> RawSnapshot:
        con = sqlite3.connect(self.path, timeout=10)
        try:
            chunks = chunks_of(con.execute(PAIRS).fetchall())
            futures = [self._pool.submit(_chunk, self.path, c) for c in chunks]
            others = con.execute(OTHERS).fetchall()
            closed = con.execute(CLOSED).fetchall()
            leases = con.execute(LEASES).fetchall()
            agents = con.execute(AGENTS).fetchall()
            listed = con.execute(LISTED).fetchall()
            max_rid = con.execute(MAX_RID).fetchone()[0]
            max_lid = con.execute(MAX_LID).fetchone()[0]
        finally:
            con.close()
        # the chunk futures run on the other workers of the pool
        return RawSnapshot(chunks, [f.result() for f in futures], others, closed, leases,
                           agents, listed, int(max_rid), int(max_lid))

    def result(self) -> RawSnapshot:
        """The read's rows (blocking).

        Raises:
            sqlite3.Error: the read failed.
        """
        try:
            return self._main.result()
        finally:
            self._pool.shutdown(wait=False)
            self._side.shutdown(wait=False)


def start(path: str) -> SqliteRead | None:
    """Begin reading ``path`` if its schema is current (else the daemon migrates first and
    reads afterwards)."""
    if schema_revision(path) != HEAD_REVISION:
        return None
    return SqliteRead(path)

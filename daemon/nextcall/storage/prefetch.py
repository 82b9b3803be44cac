"""The start-up read of a SQLite database, started before the daemon's heavy imports.

Standard library only, so ``nextcall serve`` can start it right after reading the config,
while the main thread imports the rest of the daemon (SQLAlchemy, pydantic models,
prometheus-client: about half a second). SQLite packs and concatenates the ready records
in C, range by range of record numbers, in **child processes** (one per core): SQLite
threads in one process contend on its global mutexes and gained almost nothing, separate
processes read twice as fast on two cores. ``storage/snapshot.py`` turns the result into
columns. The read is only started when the schema is already at the newest revision, so
the migration that follows changes nothing it read.

``python -m nextcall.storage.prefetch DB lo:hi ...`` is the child: for each range it
writes the packed records (already converted from hex to bytes, 36 bytes a record) and
the JSON numbers of the others, each as an 8-byte length and the bytes.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

#: the newest migration (``storage/migrations/versions``); a test keeps them equal
HEAD_REVISION = "0010"
#: ready records per chunk (a chunk is one query on one connection)
CHUNK_ROWS = 200_000

_DUE = "max(due_at, 0.0)"
_PHONE = "CAST(substr(phones, 5, length(phones) - 16) AS INTEGER)"
#: exactly one number, active, as the daemon writes it (numbers are E.164 digits: the
#: import normalises them)
SIMPLE = "(phones GLOB '[[][[]\"+[1-9]*\",\"active\"]]' AND instr(phones, '],[') = 0)"
HEX = (f"printf('%016x%016x%08x%016x%016x', rid, CAST({_DUE} AS INTEGER), "
       f"CAST(({_DUE} - CAST({_DUE} AS INTEGER)) * 4294967296 AS INTEGER), "
       "((priority + 32768) << 48) | (attempts << 16) | ((best_cp + 128) << 8) | phone_idx, "
       f"CASE WHEN {SIMPLE} THEN {_PHONE} ELSE 0 END)")
#: a range of record numbers, read in rowid order (``+state``: not through an index)
CHUNK = (f"SELECT group_concat({HEX}, ''), group_concat(CASE WHEN {SIMPLE} THEN NULL ELSE "
         "rid || char(9) || phones END, char(30)) FROM records WHERE +state = 'ready' "
         "AND rid BETWEEN ? AND ?")
PAIRS = "SELECT DISTINCT campaign, timezone FROM records WHERE state = 'ready'"
#: the ready records of one campaign and timezone, from the index alone
PAIR_RIDS = ("SELECT group_concat(rid, ',') FROM records WHERE state = 'ready' "
             "AND campaign = ? AND timezone = ?")
#: two subqueries: SQLite answers a lone min() or max() from the key, both at once by a scan
RID_SPAN = ("SELECT COALESCE((SELECT min(rid) FROM records), 0), "
            "COALESCE((SELECT max(rid) FROM records), 0)")
OTHER_COLUMNS = ("rid", "id", "campaign", "list", "phones", "timezone", "priority", "data",
                 "state", "reason", "due_at", "attempts", "owner", "team", "best_cp",
                 "phone_idx", "callback", "quote_value", "quote_chance")
OTHERS = (f"SELECT {', '.join(OTHER_COLUMNS)} FROM records "
          "WHERE state IN ('callback', 'held') ORDER BY rid")
#: the quotes of ready records (expected-value scoring), through the partial index
QUOTES = ("SELECT rid, quote_value, quote_chance FROM records "
          "WHERE quote_value IS NOT NULL AND state = 'ready'")
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

    #: the packed ready records of each rid range, in rid order, and the JSON numbers of
    #: those whose numbers are not one active number (``rid TAB json`` joined by RS)
    chunks: list[tuple[Any, Any]]
    #: (campaign, timezone, their ready records' rids as "r1,r2,...")
    pairs: list[tuple[str, str, str]]
    others: list[tuple[Any, ...]]
    closed: list[tuple[Any, ...]]
    #: every lease not ended (the caller drops those expired by now)
    leases: list[tuple[Any, ...]]
    agents: list[tuple[Any, ...]]
    listed: list[tuple[Any, ...]]
    max_rid: int
    max_lid: int
    #: (rid, value, chance) of the ready records that have a quote
    quotes: list[tuple[Any, ...]] = field(default_factory=list)


def ranges(lo: int, hi: int) -> list[tuple[int, int]]:
    """Record-number ranges of about ``CHUNK_ROWS`` each, covering ``lo``..``hi``."""
    if hi < lo or hi <= 0:
        return []
    return [(a, min(hi, a + CHUNK_ROWS - 1)) for a in range(lo, hi + 1, CHUNK_ROWS)]


def _chunks_in_child(path: str, spans: list[tuple[int, int]]) -> list[tuple[Any, Any]]:
    """Read ``spans`` in a child process (see the module docstring)."""
    if not spans:
        return []
    out = subprocess.run([sys.executable, "-m", "nextcall.storage.prefetch", path,
                          *[f"{a}:{b}" for a, b in spans]], capture_output=True, check=False,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    if out.returncode != 0:
        raise sqlite3.OperationalError(f"start-up read failed: {out.stderr.decode()[-500:]}")
    data = memoryview(out.stdout)
    got: list[Any] = []
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack_from("<q", data, pos)
        pos += 8
        got.append(None if n < 0 else data[pos:pos + n])
        pos += max(n, 0)
    # (packed bytes, the others' numbers as text)
    return [(packed, bytes(phones).decode() if phones is not None else None)
            for packed, phones in zip(got[0::2], got[1::2], strict=True)]


def _child(path: str, spans: list[str]) -> None:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    out = sys.stdout.buffer
    for span in spans:
        a, b = span.split(":")
        packed, phones = con.execute(CHUNK, (int(a), int(b))).fetchone()
        for data in (bytes.fromhex(packed) if packed else b"",
                     phones.encode() if phones is not None else None):
            if data is None:
                out.write(struct.pack("<q", -1))
            else:
                out.write(struct.pack("<q", len(data)))
                out.write(data)
    out.flush()


def _pair_rids(path: str, pairs: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    con = sqlite3.connect(path, timeout=10)
    try:
        return [(c, z, con.execute(PAIR_RIDS, (c, z)).fetchone()[0] or "") for c, z in pairs]
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
        self._workers = workers or min(4, os.cpu_count() or 1)
        # threads that wait for the child processes
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="nextcall-rebuild")
        # the small queries on threads of their own, beside the children
        self._side = ThreadPoolExecutor(2, thread_name_prefix="nextcall-rebuild-main")
        self._main: Future[RawSnapshot] = self._side.submit(self._read)

    def _read(self) -> RawSnapshot:
        con = sqlite3.connect(self.path, timeout=10)
        try:
            lo, hi = con.execute(RID_SPAN).fetchone()
            spans = ranges(lo, hi)
            k = self._workers
            futures = [self._pool.submit(_chunks_in_child, self.path, spans[i::k])
                       for i in range(k)]
            pairs = self._side.submit(_pair_rids, self.path, con.execute(PAIRS).fetchall())
            others = con.execute(OTHERS).fetchall()
            closed = con.execute(CLOSED).fetchall()
            leases = con.execute(LEASES).fetchall()
            agents = con.execute(AGENTS).fetchall()
            listed = con.execute(LISTED).fetchall()
            quotes = con.execute(QUOTES).fetchall()
            max_rid = con.execute(MAX_RID).fetchone()[0]
            max_lid = con.execute(MAX_LID).fetchone()[0]
        finally:
            con.close()
        # child k read spans k, k+workers, ...: put them back in rid order
        parts = [f.result() for f in futures]
        chunks = [parts[i % k][i // k] for i in range(len(spans))]
        return RawSnapshot(chunks, pairs.result(), others, closed, leases, agents, listed,
                           int(max_rid), int(max_lid), quotes)

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


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2:])

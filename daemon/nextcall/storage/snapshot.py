"""The start-up read: every open record, fast enough for ten million.

Reading a million rows as Python tuples costs about two seconds, almost all of it making
Python objects for each column of each row. So ready records (the bulk) are not read as
rows: the database packs each one into 72 hex digits of fixed width and concatenates
them per (campaign, timezone) in C (``group_concat`` / ``string_agg``); Python decodes the
result with one ``bytes.fromhex`` and a numpy view, without an object per record. The
work is split into chunks by record number and run on several connections at once
(SQLite works without the GIL while it steps through rows; PostgreSQL works in its own
processes). Nothing writes while the daemon rebuilds, so the chunks see one state.

Packed layout (big-endian): rid (64 bits), whole seconds of due_at (64), the fraction as
1/2**32 s (32: exact for a float timestamp), (priority + 32768) << 48 | attempts << 16 |
(best_cp + 128) << 8 | phone_idx (64), and the number to dial as an integer (64), or 0
when the record's numbers are not exactly one active number (they are read as JSON).

Callback and appointment records (few) are read as rows into ``Record`` values.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ..core.engine import ReadyGroup
from ..core.records import CallbackIntent, Record

#: ready records per chunk (a chunk is one query on one connection)
CHUNK_ROWS = 200_000
_PACKED = np.dtype([("rid", ">i8"), ("sec", ">i8"), ("frac", ">u4"), ("packed", ">u8"),
                    ("phone", ">i8")])
HEX_WIDTH = 2 * _PACKED.itemsize

_SQLITE_DUE = "max(due_at, 0.0)"
_SQLITE_PHONE = ("CAST(substr(phones, 5, length(phones) - 16) AS INTEGER)")
_SQLITE_SIMPLE = (f"(length(phones) < 40 AND printf('[[\"+%d\",\"active\"]]', {_SQLITE_PHONE})"
                  " = phones)")
_SQLITE_HEX = (
    f"printf('%016x%016x%08x%016x%016x', rid, CAST({_SQLITE_DUE} AS INTEGER), "
    f"CAST(({_SQLITE_DUE} - CAST({_SQLITE_DUE} AS INTEGER)) * 4294967296 AS INTEGER), "
    "((priority + 32768) << 48) | (attempts << 16) | ((best_cp + 128) << 8) | phone_idx, "
    f"CASE WHEN {_SQLITE_SIMPLE} THEN {_SQLITE_PHONE} ELSE 0 END)")
_SQLITE_CHUNK = (
    f"SELECT group_concat({_SQLITE_HEX}, ''), group_concat(CASE WHEN {_SQLITE_SIMPLE} THEN "
    "NULL ELSE rid || char(9) || phones END, char(30)) FROM records WHERE state = 'ready' "
    "AND campaign = ? AND timezone = ? AND rid BETWEEN ? AND ?")

_PG_DUE = "greatest(due_at, 0)"
_PG_SIMPLE = "(phones ~ '^\\[\\[\"\\+[1-9][0-9]{0,17}\",\"active\"\\]\\]$')"
_PG_HEX = (
    "lpad(to_hex(rid), 16, '0') || "
    f"lpad(to_hex(floor({_PG_DUE})::bigint), 16, '0') || "
    f"lpad(to_hex(floor(({_PG_DUE} - floor({_PG_DUE})) * 4294967296)::bigint), 8, '0') || "
    "lpad(to_hex(((priority + 32768)::bigint << 48) | (attempts::bigint << 16) | "
    "((best_cp + 128)::bigint << 8) | phone_idx::bigint), 16, '0') || "
    f"lpad(to_hex(CASE WHEN {_PG_SIMPLE} THEN substr(phones, 5, length(phones) - 16)::bigint "
    "ELSE 0 END), 16, '0')")
_PG_CHUNK = (
    f"SELECT string_agg({_PG_HEX}, ''), string_agg(CASE WHEN {_PG_SIMPLE} THEN NULL ELSE "
    "rid || chr(9) || phones END, chr(30)) FROM records WHERE state = 'ready' "
    "AND campaign = $1 AND timezone = $2 AND rid BETWEEN $3 AND $4")

_PAIRS = ("SELECT campaign, timezone, count(*), min(rid), max(rid) FROM records "
          "WHERE state = 'ready' GROUP BY campaign, timezone")
OTHER_COLUMNS = ("rid", "id", "campaign", "list", "phones", "timezone", "priority", "data",
                 "state", "reason", "due_at", "attempts", "owner", "team", "best_cp",
                 "phone_idx", "callback")
_OTHERS = (f"SELECT {', '.join(OTHER_COLUMNS)} FROM records "
           "WHERE state IN ('callback', 'held') ORDER BY rid")
_CLOSED = ("SELECT campaign, COALESCE(reason, 'final'), count(*) FROM records "
           "WHERE state = 'closed' GROUP BY 1, 2")
_AGENTS = "SELECT agent, campaigns, teams, logged_in FROM agents"
_LISTED = "SELECT number, list FROM phone_lists"
_MAX_RID = "SELECT COALESCE(max(rid), 0) FROM records"
_MAX_LID = "SELECT COALESCE(max(lid), 0) FROM leases"


@dataclass
class Snapshot:
    """Everything a rebuild needs."""

    groups: list[ReadyGroup]
    #: JSON numbers of ready records whose ``phone`` is 0
    phones: dict[int, str]
    #: callback and appointment records
    others: list[Record]
    closed_counts: list[tuple[str, str, int]]
    #: (lid, secret, rid, agent, uid, issued_at, expires_at, phone, phone_idx, reason)
    leases: list[tuple[Any, ...]]
    #: (agent, campaigns JSON, teams JSON, logged_in)
    agents: list[tuple[Any, ...]]
    max_rid: int
    max_lid: int
    listed: list[tuple[str, str]] = field(default_factory=list)


def _chunks(pairs: list[tuple[Any, ...]]) -> list[tuple[str, str, int, int]]:
    """(campaign, timezone, first rid, last rid) ranges of about ``CHUNK_ROWS`` records."""
    out = []
    for campaign, tz, count, lo, hi in pairs:
        parts = max(1, -(-int(count) // CHUNK_ROWS))
        step = -(-(int(hi) - int(lo) + 1) // parts)
        for k in range(parts):
            a = int(lo) + k * step
            out.append((campaign, tz, a, min(int(hi), a + step - 1)))
    return out


def decode_group(campaign: str, timezone: str, hexes: list[str]) -> ReadyGroup:
    """One (campaign, timezone)'s packed chunks as columns."""
    raw = bytes.fromhex("".join(hexes))
    a = np.frombuffer(raw, dtype=_PACKED)
    packed = a["packed"].astype(np.uint64)
    return ReadyGroup(
        campaign, timezone,
        rid=a["rid"].astype(np.int64),
        due=a["sec"].astype(np.float64) + a["frac"].astype(np.float64) / 4294967296.0,
        priority=(packed >> np.uint64(48)).astype(np.int64) - 32768,
        attempts=((packed >> np.uint64(16)) & np.uint64(0xFFFFFFFF)).astype(np.int64),
        best_cp=((packed >> np.uint64(8)) & np.uint64(0xFF)).astype(np.int64) - 128,
        phone_idx=(packed & np.uint64(0xFF)).astype(np.int64),
        phone=a["phone"].astype(np.int64))


def _phones_of(text: str | None, into: dict[int, str]) -> None:
    if text:
        for item in text.split("\x1e"):
            rid, _, phones = item.partition("\t")
            into[int(rid)] = phones


def record_from_row(row: tuple[Any, ...]) -> Record:
    """A ``Record`` value from a row of ``OTHER_COLUMNS``."""
    (rid, rec_id, campaign, lst, phones, tz, prio, data, state, reason, due, attempts, owner,
     team, best_cp, phone_idx, callback) = row
    return Record(int(rid), rec_id, campaign, lst, phones, tz, int(prio), data, state, reason,
                  float(due), int(attempts), owner, team, int(best_cp), int(phone_idx),
                  CallbackIntent.from_json(orjson.loads(callback)) if callback else None)


def _assemble(chunks: list[tuple[str, str, int, int]], results: list[tuple[Any, Any]],
              others: list[Record], closed: list[tuple[Any, ...]], leases: list[Any],
              agents: list[Any], listed: list[Any], max_rid: int, max_lid: int) -> Snapshot:
    by_pair: dict[tuple[str, str], list[str]] = {}
    phones: dict[int, str] = {}
    for (campaign, tz, _, _), (hexes, complex_phones) in zip(chunks, results, strict=True):
        if hexes:
            by_pair.setdefault((campaign, tz), []).append(hexes)
        _phones_of(complex_phones, phones)
    groups = [decode_group(c, z, h) for (c, z), h in by_pair.items()]
    return Snapshot(groups, phones, others, [(c, r or "final", int(n)) for c, r, n in closed],
                    [tuple(x) for x in leases], [tuple(x) for x in agents], int(max_rid),
                    int(max_lid), [(str(n), str(x)) for n, x in listed])


def _sqlite_chunk(path: str, chunk: tuple[str, str, int, int]) -> tuple[Any, Any]:
    con = sqlite3.connect(path, timeout=10)
    try:
        row = con.execute(_SQLITE_CHUNK, chunk).fetchone()
        return row[0], row[1]
    finally:
        con.close()


def read_sqlite(path: str, now: float, workers: int | None = None) -> Snapshot:
    """The snapshot of a SQLite database (blocking; run it off the event loop)."""
    workers = workers or min(4, os.cpu_count() or 1)
    main = sqlite3.connect(path, timeout=10)
    try:
        pairs = main.execute(_PAIRS).fetchall()
        chunks = _chunks(pairs)
        with ThreadPoolExecutor(workers, thread_name_prefix="nextcall-rebuild") as pool:
            futures = [pool.submit(_sqlite_chunk, path, c) for c in chunks]
            others = [record_from_row(r) for r in main.execute(_OTHERS)]
            closed = main.execute(_CLOSED).fetchall()
            leases = main.execute(
                "SELECT lid, secret, rid, agent, uid, issued_at, expires_at, phone, phone_idx, "
                "reason FROM leases WHERE ended_at IS NULL AND expires_at > ?",
                (now,)).fetchall()
            agents = main.execute(_AGENTS).fetchall()
            listed = main.execute(_LISTED).fetchall()
            max_rid = main.execute(_MAX_RID).fetchone()[0]
            max_lid = main.execute(_MAX_LID).fetchone()[0]
            results = [f.result() for f in futures]
    finally:
        main.close()
    return _assemble(chunks, results, others, closed, leases, agents, listed, max_rid,
                     max_lid)


async def read_postgres(dsn: str, now: float, workers: int = 4) -> Snapshot:
    """The snapshot of a PostgreSQL database, on ``workers`` connections at once."""
    import asyncpg
    conns = [await asyncpg.connect(dsn) for _ in range(workers)]
    try:
        main = conns[0]
        pairs = [tuple(r) for r in await main.fetch(_PAIRS)]
        chunks = _chunks(pairs)
        results: list[tuple[Any, Any]] = [(None, None)] * len(chunks)

        async def run(k: int, conn: Any) -> None:
            for i in range(k, len(chunks), workers):
                row = await conn.fetchrow(_PG_CHUNK, *chunks[i])
                results[i] = (row[0], row[1])
        await asyncio.gather(*(run(k, c) for k, c in enumerate(conns)))
        others = [record_from_row(tuple(r)) for r in await main.fetch(_OTHERS)]
        closed = [tuple(r) for r in await main.fetch(_CLOSED)]
        leases = [tuple(r) for r in await main.fetch(
            "SELECT lid, secret, rid, agent, uid, issued_at, expires_at, phone, phone_idx, "
            "reason FROM leases WHERE ended_at IS NULL AND expires_at > $1", now)]
        agents = [tuple(r) for r in await main.fetch(_AGENTS)]
        listed = [tuple(r) for r in await main.fetch(_LISTED)]
        max_rid = await main.fetchval(_MAX_RID)
        max_lid = await main.fetchval(_MAX_LID)
    finally:
        for c in conns:
            await c.close()
    return _assemble(chunks, results, others, closed, leases, agents, listed, max_rid,
                     max_lid)

"""The start-up read: every open record, fast enough for ten million.

Reading a million rows as Python tuples costs about two seconds, almost all of it making
Python objects for each column of each row. So ready records (the bulk) are not read as
rows: the database packs each one into 72 hex digits of fixed width and concatenates
them per (campaign, timezone) in C (``group_concat`` / ``string_agg``); Python decodes the
result with one ``bytes.fromhex`` and a numpy view, without an object per record. The
work is split into chunks by record number and run on several connections at once
(SQLite works without the GIL while it steps through rows; PostgreSQL works in its own
processes). Nothing writes while the daemon rebuilds, so the chunks see one state. The
SQLite read itself is ``storage/prefetch.py``, which ``nextcall serve`` starts before
the daemon's heavy imports.

Packed layout (big-endian): rid (64 bits), whole seconds of due_at (64), the fraction as
1/2**32 s (32: exact for a float timestamp), (priority + 32768) << 48 | attempts << 16 |
(best_cp + 128) << 8 | phone_idx (64), and the number to dial as an integer (64), or 0
when the record's numbers are not exactly one active number (they are read as JSON).

Callback and appointment records (few) are read as rows into ``Record`` values.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ..core.engine import ReadyGroup
from ..core.records import CallbackIntent, Quote, Record
from . import prefetch as P

_PACKED = np.dtype([("rid", ">i8"), ("sec", ">i8"), ("frac", ">u4"), ("packed", ">u8"),
                    ("phone", ">i8")])

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
    f"SELECT string_agg({_PG_HEX}, '' ORDER BY rid), string_agg(CASE WHEN {_PG_SIMPLE} THEN "
    "NULL ELSE rid || chr(9) || phones END, chr(30)) FROM records WHERE state = 'ready' "
    "AND rid BETWEEN $1 AND $2")
_PG_PAIR_RIDS = ("SELECT campaign, timezone, string_agg(rid::text, ',') FROM records "
                 "WHERE state = 'ready' GROUP BY campaign, timezone")
OTHER_COLUMNS = P.OTHER_COLUMNS


@dataclass
class Snapshot:
    """Everything a rebuild needs."""

    groups: list[ReadyGroup]
    #: JSON numbers of ready records whose ``phone`` is 0
    phones: dict[int, str]
    #: callback and appointment records
    others: list[Record]
    closed_counts: list[tuple[str, str, int]]
    #: (lid, secret, rid, agent, uid, issued_at, expires_at, phone, phone_idx, reason) of
    #: every lease not ended (expired ones included)
    leases: list[tuple[Any, ...]]
    #: (agent, campaigns JSON, teams JSON, logged_in)
    agents: list[tuple[Any, ...]]
    max_rid: int
    max_lid: int
    listed: list[tuple[str, str]] = field(default_factory=list)
    #: the quotes of ready records that have one (callback and appointment records carry
    #: theirs)
    quotes: dict[int, Quote] = field(default_factory=dict)


def decode(packed: list[bytes | memoryview]) -> ReadyGroup:
    """Packed records (the children's bytes, in rid order) as columns."""
    parts = [np.frombuffer(p, dtype=_PACKED) for p in packed if len(p)]
    a = np.concatenate(parts) if parts else np.zeros(0, dtype=_PACKED)
    packed_int = a["packed"].astype(np.uint64)
    return ReadyGroup(
        "", "",
        rid=a["rid"].astype(np.int64),
        due=a["sec"].astype(np.float64) + a["frac"].astype(np.float64) / 4294967296.0,
        priority=(packed_int >> np.uint64(48)).astype(np.int64) - 32768,
        attempts=((packed_int >> np.uint64(16)) & np.uint64(0xFFFFFFFF)).astype(np.int64),
        best_cp=((packed_int >> np.uint64(8)) & np.uint64(0xFF)).astype(np.int64) - 128,
        phone_idx=(packed_int & np.uint64(0xFF)).astype(np.int64),
        phone=a["phone"].astype(np.int64))


def split(every: ReadyGroup, pairs: list[tuple[str, str, str]]) -> list[ReadyGroup]:
    """The ready records by (campaign, timezone): each pair's record numbers (from the
    index) mark a code per rid; one stable sort by code groups the columns."""
    if not len(every.rid):
        return []
    code = np.full(int(every.rid.max()) + 1, -1, dtype=np.int32)
    for k, (_, _, rids) in enumerate(pairs):
        if rids:
            want = np.fromstring(rids, dtype=np.int64, sep=",")
            code[want[want < len(code)]] = k
    codes = code[every.rid]
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(pairs) + 1))
    out = []
    for k, (campaign, tz, _) in enumerate(pairs):
        at = order[bounds[k]:bounds[k + 1]]
        if len(at):
            out.append(ReadyGroup(campaign, tz, every.rid[at], every.due[at],
                                  every.priority[at], every.attempts[at], every.best_cp[at],
                                  every.phone_idx[at], every.phone[at]))
    return out


def record_from_row(row: tuple[Any, ...]) -> Record:
    """A ``Record`` value from a row of ``OTHER_COLUMNS``."""
    (rid, rec_id, campaign, lst, phones, tz, prio, data, state, reason, due, attempts, owner,
     team, best_cp, phone_idx, callback, quote_value, quote_chance) = row
    return Record(int(rid), rec_id, campaign, lst, phones, tz, int(prio), data, state, reason,
                  float(due), int(attempts), owner, team, int(best_cp), int(phone_idx),
                  CallbackIntent.from_json(orjson.loads(callback)) if callback else None,
                  quote_of(quote_value, quote_chance))


def quote_of(value: Any, chance: Any) -> Quote | None:
    """A stored quote (NULL value: none; NULL chance: 100 %)."""
    if value is None:
        return None
    return Quote(float(value), 100.0 if chance is None else float(chance))


def record_of(row: dict[str, Any]) -> Record:
    """A ``Record`` value from a stored row read as a mapping (``Store`` reads; rows from
    before the quote columns have no quote)."""
    return record_from_row(tuple(row.get(c) for c in OTHER_COLUMNS))


def assemble(raw: P.RawSnapshot) -> Snapshot:
    """Decode a read into columns and values."""
    phones: dict[int, str] = {}
    for _, complex_phones in raw.chunks:
        if complex_phones:
            for item in complex_phones.split("\x1e"):
                rid, _, text = item.partition("\t")
                phones[int(rid)] = text
    groups = split(decode([p for p, _ in raw.chunks if p is not None]), raw.pairs)
    return Snapshot(groups, phones, [record_from_row(tuple(r)) for r in raw.others],
                    [(c, r or "final", int(n)) for c, r, n in raw.closed],
                    [tuple(x) for x in raw.leases], [tuple(x) for x in raw.agents],
                    raw.max_rid, raw.max_lid, [(str(n), str(x)) for n, x in raw.listed],
                    {int(r): Quote(float(v), 100.0 if c is None else float(c))
                     for r, v, c in raw.quotes})


def read_sqlite(path: str) -> Snapshot:
    """The snapshot of a SQLite database (blocking; run it off the event loop)."""
    return assemble(P.SqliteRead(path).result())


async def read_postgres(dsn: str, workers: int = 4) -> Snapshot:
    """The snapshot of a PostgreSQL database, on ``workers`` connections at once."""
    import asyncpg
    conns = [await asyncpg.connect(dsn) for _ in range(workers)]
    try:
        main = conns[0]
        lo, hi = tuple(await main.fetchrow(P.RID_SPAN))
        spans = P.ranges(int(lo), int(hi))
        results: list[tuple[Any, Any]] = [(None, None)] * len(spans)

        async def run(k: int, conn: Any) -> None:
            for i in range(k, len(spans), workers):
                row = await conn.fetchrow(_PG_CHUNK, *spans[i])
                results[i] = (bytes.fromhex(row[0]) if row[0] else b"", row[1])
        await asyncio.gather(*(run(k, c) for k, c in enumerate(conns)))
        pairs = [(str(c), str(z), str(r or "")) for c, z, r in await main.fetch(_PG_PAIR_RIDS)]
        raw = P.RawSnapshot(
            results, pairs, [tuple(r) for r in await main.fetch(P.OTHERS)],
            [tuple(r) for r in await main.fetch(P.CLOSED)],
            [tuple(r) for r in await main.fetch(P.LEASES)],
            [tuple(r) for r in await main.fetch(P.AGENTS)],
            [tuple(r) for r in await main.fetch(P.LISTED)],
            int(await main.fetchval(P.MAX_RID)), int(await main.fetchval(P.MAX_LID)),
            [tuple(r) for r in await main.fetch(P.QUOTES)])
    finally:
        for c in conns:
            await c.close()
    return assemble(raw)

"""Load driver: N concurrent clients doing durable next+dispose cycles for S seconds.

Targets, measured by the same asyncio client process:
- ``nextcall``: the daemon over its Unix socket (lease and result committed before each
  answer);
- ``pg``: what a user would otherwise build on PostgreSQL: claim with
  ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)``, then
  insert a history row and update the record, each a committed transaction (fsync on);
- ``redis``: a sorted set, ``ZPOPMAX`` to claim and ``ZADD`` + ``HSET`` to dispose
  (no persistence: an upper bound, not a durable queue).

Prints one JSON object: cycles/s and cycle latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from typing import Any

import orjson


async def _nextcall_client(sock: str, k: int, stop: float, lat: list[float]) -> int:
    r, w = await asyncio.open_unix_connection(sock, limit=1 << 22)
    n = 0
    rid = 0

    async def call(obj: dict[str, Any]) -> dict[str, Any]:
        nonlocal rid
        rid += 1
        obj["id"] = rid
        w.write(orjson.dumps(obj) + b"\n")
        msg: dict[str, Any] = orjson.loads(await r.readline())
        if not msg.get("ok"):
            raise RuntimeError(msg)
        return msg

    agent = f"bench{k}"
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        leases = (await call({"op": "next", "agent": agent, "campaigns": ["t"]}))["leases"]
        if not leases:
            continue
        await call({"op": "dispose", "lease": leases[0]["token"], "code": "NA0"})
        lat.append(time.perf_counter() - t0)
        n += 1
    w.close()
    return n


PG_SETUP = """
DROP TABLE IF EXISTS bench_queue, bench_history;
CREATE TABLE bench_queue (id bigint PRIMARY KEY, score int NOT NULL, due double precision
  NOT NULL, leased_by text, attempts int NOT NULL DEFAULT 0, data text NOT NULL);
CREATE INDEX bench_queue_pick ON bench_queue (score DESC, due) WHERE leased_by IS NULL;
CREATE TABLE bench_history (hid bigserial PRIMARY KEY, id bigint NOT NULL, at double
  precision NOT NULL, agent text NOT NULL, code text NOT NULL);
"""
PG_CLAIM = """
UPDATE bench_queue SET leased_by = $1 WHERE id = (
  SELECT id FROM bench_queue WHERE leased_by IS NULL AND due <= $2
  ORDER BY score DESC, due FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id, data
"""


async def pg_setup(dsn: str, n_records: int) -> None:
    import asyncpg
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(PG_SETUP)
        await conn.copy_records_to_table("bench_queue", records=[
            (i, random.randint(0, 3), 0.0, None, 0, '{"name":"x"}') for i in range(n_records)],
            columns=["id", "score", "due", "leased_by", "attempts", "data"])
        await conn.execute("ANALYZE bench_queue")
    finally:
        await conn.close()


async def _pg_client(dsn: str, k: int, stop: float, lat: list[float]) -> int:
    import asyncpg
    conn = await asyncpg.connect(dsn)
    n = 0
    agent = f"bench{k}"
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        row = await conn.fetchrow(PG_CLAIM, agent, time.time())
        if row is None:
            continue
        async with conn.transaction():
            await conn.execute("INSERT INTO bench_history (id, at, agent, code) VALUES "
                               "($1, $2, $3, 'NA0')", row["id"], time.time(), agent)
            await conn.execute("UPDATE bench_queue SET leased_by = NULL, attempts = attempts"
                               " + 1, due = $2 WHERE id = $1", row["id"], time.time())
        lat.append(time.perf_counter() - t0)
        n += 1
    await conn.close()
    return n


async def redis_setup(url: str, n_records: int) -> None:
    import redis.asyncio as aioredis
    r = aioredis.from_url(url)
    await r.delete("bench:q", "bench:h")
    pipe = r.pipeline()
    for i in range(n_records):
        pipe.zadd("bench:q", {str(i): random.randint(0, 3)})
        if i % 10_000 == 9_999:
            await pipe.execute()
            pipe = r.pipeline()
    await pipe.execute()
    await r.aclose()


async def _redis_client(url: str, k: int, stop: float, lat: list[float]) -> int:
    import redis.asyncio as aioredis
    r = aioredis.from_url(url)
    n = 0
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        got = await r.zpopmax("bench:q")
        if not got:
            continue
        member, score = got[0]
        await r.hset("bench:h", member, "NA0")
        await r.zadd("bench:q", {member: score})
        lat.append(time.perf_counter() - t0)
        n += 1
    await r.aclose()
    return n


async def run(target: str, address: str, clients: int, seconds: float) -> dict[str, Any]:
    stop = time.perf_counter() + seconds
    lat: list[float] = []
    fn = {"nextcall": _nextcall_client, "pg": _pg_client, "redis": _redis_client}[target]
    t0 = time.perf_counter()
    counts = await asyncio.gather(*(fn(address, k, stop, lat) for k in range(clients)))
    elapsed = time.perf_counter() - t0
    lat.sort()

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else 0.0
    return {"target": target, "clients": clients, "seconds": round(elapsed, 2),
            "cycles": sum(counts), "cycles_per_s": round(sum(counts) / elapsed),
            "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target", choices=["nextcall", "pg", "redis"], required=True)
    ap.add_argument("--address", required=True, help="socket path, DSN or redis URL")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--setup-records", type=int, default=0,
                    help="(pg, redis) create the queue with this many records first")
    a = ap.parse_args()
    if a.setup_records and a.target == "pg":
        asyncio.run(pg_setup(a.address, a.setup_records))
    if a.setup_records and a.target == "redis":
        asyncio.run(redis_setup(a.address, a.setup_records))
    print(json.dumps(asyncio.run(run(a.target, a.address, a.clients, a.seconds))))


if __name__ == "__main__":
    main()

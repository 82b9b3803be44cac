"""The client process: N connections doing claim+dispose cycles against one target.

    drivers.py {nextcall,pg,redis,wake} --address ADDR [--clients N] [--seconds S]

It shares the 2 cores with the server it measures, so it is kept lean: uvloop, orjson,
one connection per client, a FIFO of futures per connection instead of stream readers,
prepared statements on PostgreSQL, and a hand-written RESP client for Redis (redis-py's
client-side cost would hide the server's speed, PEERS.md). The same code path times every
target: a cycle is claim plus dispose as seen from the client.

The orchestrator talks to it over stdin/stdout, one JSON object per line: the driver sets
up and connects, prints ``{"ready": true}``, waits for a line on stdin, runs the window,
prints ``{"end": true}`` the moment the load stops (so CPU is counted around the load only),
then the result.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import asyncpg
import orjson
import uvloop

RECORDS = 100_000
#: PEERS.md loads 600,000 for 10 s; this client pops up to 60,000 a second, so 100,000 a
#: second of window keeps the set from running dry
REDIS_MEMBERS_PER_S = 100_000
#: one zone per hour of offset, so about half the records are inside the calling window
#: (08:00-21:00 local) at any time of day
ZONES = ("Pacific/Honolulu", "America/Anchorage", "America/Los_Angeles", "America/Denver",
         "America/Chicago", "America/New_York", "America/Halifax", "America/Sao_Paulo",
         "Atlantic/South_Georgia", "Atlantic/Azores", "Europe/London", "Europe/Amsterdam",
         "Europe/Helsinki", "Europe/Moscow", "Asia/Dubai", "Asia/Karachi", "Asia/Dhaka",
         "Asia/Bangkok", "Asia/Shanghai", "Asia/Tokyo", "Australia/Brisbane", "Pacific/Noumea",
         "Pacific/Auckland", "Pacific/Tongatapu")
PRIORITIES = 4

# PEERS.md, verbatim: the schema, the one-statement claim and the one-statement dispose.
PG_SCHEMA = """
DROP TABLE IF EXISTS records, history;
CREATE TABLE records (id bigint PRIMARY KEY, campaign text, score int, due timestamptz,
  timezone text, owner text, state text DEFAULT 'ready', leased_by text,
  leased_at timestamptz, result text);
CREATE TABLE history (id bigserial PRIMARY KEY, record_id bigint, agent text, result text,
  ts timestamptz DEFAULT now());
"""
PG_INDEX = "CREATE INDEX records_ready ON records (score DESC, due) WHERE state = 'ready'"
PG_CLAIM = """
UPDATE records SET state = 'leased', leased_by = $1, leased_at = now()
WHERE id = (SELECT id FROM records WHERE state = 'ready' AND due <= now()
            ORDER BY score DESC, due LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, campaign, score, due, timezone, owner
"""
PG_DISPOSE = """
WITH d AS (UPDATE records SET state = 'done', result = $2 WHERE id = $1 RETURNING id)
INSERT INTO history (record_id, agent, result) SELECT id, $3, $2 FROM d
"""


class ServerError(Exception):
    """The server answered a request with an error."""


class _Pipe(asyncio.Protocol):
    """One connection whose answers come back in request order: each request gets a
    future, and ``data_received`` resolves them as complete answers arrive. Cheaper than
    a StreamReader's awaits per line, and it allows pipelining for bulk loads."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._transport: asyncio.Transport | None = None
        self._lost: Exception | None = None

    def _parse(self, buf: bytearray, pos: int) -> tuple[Any, int] | None:
        """(answer, position after it), or None while the answer is incomplete."""
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence the cast
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        pos = 0
        while (got := self._parse(self._buf, pos)) is not None:
            value, pos = got
            fut = self._waiting.popleft()
            if isinstance(value, ServerError):
                fut.set_exception(value)
            else:
                fut.set_result(value)
        del self._buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or ConnectionError("the server closed the connection")
        while self._waiting:
            self._waiting.popleft().set_exception(self._lost)

    def request(self, data: bytes) -> asyncio.Future[Any]:
        """Send one request (or several, pipelined, with one future per answer expected)."""
        if self._lost is not None or self._transport is None:
            raise self._lost or ConnectionError("not connected")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self._transport.write(data)
        return fut

    def expect(self) -> asyncio.Future[Any]:
        """A future for one more answer to data already sent (pipelined bulk loads)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        return fut

    def send(self, data: bytes) -> None:
        """Write without expecting an answer yet (pair with ``expect``)."""
        assert self._transport is not None
        self._transport.write(data)

    def close(self) -> None:
        """Close the connection."""
        if self._transport is not None:
            self._transport.close()


class LinePipe(_Pipe):
    """nextcall's framing: one JSON object per line; answers are the raw line."""

    def _parse(self, buf: bytearray, pos: int) -> tuple[Any, int] | None:
        end = buf.find(b"\n", pos)
        return None if end < 0 else (bytes(buf[pos:end]), end + 1)


class RespPipe(_Pipe):
    """Redis's framing (RESP2): simple strings, errors, integers, bulk strings, arrays."""

    def _parse(self, buf: bytearray, pos: int) -> tuple[Any, int] | None:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None
        kind, body, nxt = buf[pos], buf[pos + 1:end], end + 2
        if kind == 0x2B:  # +
            return bytes(body), nxt
        if kind == 0x2D:  # -
            return ServerError(body.decode()), nxt
        if kind == 0x3A:  # :
            return int(body), nxt
        n = int(body)
        if kind == 0x24:  # $
            if n < 0:
                return None, nxt
            return (bytes(buf[nxt:nxt + n]), nxt + n + 2) if len(buf) >= nxt + n + 2 else None
        items = []  # *
        for _ in range(max(n, 0)):
            got = self._parse(buf, nxt)
            if got is None:
                return None
            item, nxt = got
            items.append(item)
        return items, nxt


P = TypeVar("P", bound=_Pipe)


def resp(*args: bytes) -> bytes:
    """One Redis command in RESP."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


async def connect(kind: type[P], path: str) -> P:
    """Open a Unix-socket connection with the given framing."""
    _, pipe = await asyncio.get_running_loop().create_unix_connection(kind, path)
    return pipe


@dataclass
class Tally:
    """What one window's clients saw, merged over all clients."""

    cycle_s: list[float] = field(default_factory=list)
    claim_s: list[float] = field(default_factory=list)
    empty: int = 0
    errors: int = 0
    first_error: str = ""

    def error(self, what: object) -> None:
        """Count an error and keep the first one's text for the report."""
        self.errors += 1
        if not self.first_error:
            self.first_error = str(what)[:300]


Cycle = Callable[[float, Tally], Awaitable[None]]


async def nextcall_cycles(pipe: LinePipe, k: int) -> Cycle:
    """``next`` then ``dispose`` NA0 (a retry with no delay: the record goes straight back)."""
    ask = orjson.dumps({"id": k, "op": "next", "agent": f"bench{k}", "campaigns": ["t"]}) + b"\n"

    async def run(stop: float, tally: Tally) -> None:
        clock = time.perf_counter
        while clock() < stop:
            t0 = clock()
            got = orjson.loads(await pipe.request(ask))
            t1 = clock()
            if not got["ok"]:
                tally.error(got["error"])
                continue
            if not got["leases"]:
                tally.empty += 1
                continue
            done = orjson.loads(await pipe.request(orjson.dumps(
                {"id": k, "op": "dispose", "lease": got["leases"][0]["token"], "code": "NA0"},
                option=orjson.OPT_APPEND_NEWLINE)))
            t2 = clock()
            if not done["ok"]:
                tally.error(done["error"])
                continue
            tally.claim_s.append(t1 - t0)
            tally.cycle_s.append(t2 - t0)
    return run


async def pg_cycles(conn: asyncpg.Connection, k: int) -> Cycle:
    """PEERS.md's claim then dispose, each one prepared statement, one round trip."""
    claim = await conn.prepare(PG_CLAIM)
    dispose = await conn.prepare(PG_DISPOSE)
    agent = f"bench{k}"

    async def run(stop: float, tally: Tally) -> None:
        clock = time.perf_counter
        while clock() < stop:
            t0 = clock()
            try:
                row = await claim.fetchrow(agent)
                t1 = clock()
                if row is None:
                    tally.empty += 1
                    continue
                await dispose.fetch(row[0], "NA0", agent)
            except asyncpg.PostgresError as exc:
                tally.error(exc)
                continue
            t2 = clock()
            tally.claim_s.append(t1 - t0)
            tally.cycle_s.append(t2 - t0)
    return run


ZPOPMAX = resp(b"ZPOPMAX", b"q")


async def redis_cycles(pipe: RespPipe, k: int) -> Cycle:
    """``ZPOPMAX`` then ``HSET res:<id> agent <a> result NA0 ts <t>`` (PEERS.md).

    The HSET is one %-format over a template: the client is the bottleneck at 20 clients
    and more, so every microsecond it saves is a microsecond Redis is measured by."""
    agent = b"bench%d" % k
    hset = (b"*8\r\n$4\r\nHSET\r\n$%d\r\nres:%s\r\n$5\r\nagent\r\n"
            + b"$%d\r\n%s\r\n" % (len(agent), agent)
            # the timestamp is 17 bytes (10 digits before the point) until the year 2286
            + b"$6\r\nresult\r\n$3\r\nNA0\r\n$2\r\nts\r\n$17\r\n%.6f\r\n")

    async def run(stop: float, tally: Tally) -> None:
        clock = time.perf_counter
        while clock() < stop:
            t0 = clock()
            try:
                got = await pipe.request(ZPOPMAX)
                t1 = clock()
                if not got:
                    tally.empty += 1
                    continue
                member = got[0]
                await pipe.request(hset % (len(member) + 4, member, time.time()))
            except ServerError as exc:
                tally.error(exc)
                continue
            t2 = clock()
            tally.claim_s.append(t1 - t0)
            tally.cycle_s.append(t2 - t0)
    return run


async def pg_setup(dsn: str, rows: int) -> None:
    """A fresh table of ``rows`` ready records, all due, loaded with COPY; the index is
    built after the load and the table analysed and checkpointed, so the window measures
    the queue and not the leftovers of its setup."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(PG_SCHEMA)
        now = datetime.now(UTC)
        await conn.copy_records_to_table(
            "records", columns=["id", "campaign", "score", "due", "timezone"],
            records=[(i, "t", i % PRIORITIES, now - timedelta(seconds=rows - i),
                      ZONES[i % len(ZONES)]) for i in range(rows)])
        await conn.execute(PG_INDEX)
        await conn.execute("ANALYZE records")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def redis_setup(path: str, members: int) -> None:
    """Empty the server (earlier windows' result hashes too) and load ``members`` into the
    sorted set, pipelined. The score orders by priority, then by due (a lower index was due
    earlier), as the PostgreSQL peer's index does."""
    pipe = await connect(RespPipe, path)
    try:
        await pipe.request(resp(b"FLUSHALL"))
        batch = 1000
        for lo in range(0, members, batch):
            args = [b"ZADD", b"q"]
            for i in range(lo, min(lo + batch, members)):
                args += [b"%d" % ((i % PRIORITIES) * 10_000_000 + members - i), b"%d" % i]
            pipe.send(resp(*args))
        await asyncio.gather(*(pipe.expect() for _ in range(0, members, batch)))
        count = await pipe.request(resp(b"ZCARD", b"q"))
        if count != members:
            raise RuntimeError(f"loaded {count} members, wanted {members}")
    finally:
        pipe.close()


def nearest_rank(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted values (None when there are none)."""
    return values[min(len(values) - 1, int(p * len(values)))] if values else None


def percentile_us(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of sorted seconds, in microseconds."""
    got = nearest_rank(values, p)
    return None if got is None else round(got * 1e6, 1)


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE))
    sys.stdout.flush()


async def _go() -> None:
    """Tell the orchestrator we are ready, then wait for its go (it waits for a quiet
    machine and samples CPU first)."""
    _say({"ready": True})
    await asyncio.to_thread(sys.stdin.readline)


async def throughput(target: str, address: str, clients: int, seconds: float,
                     rows: int) -> dict[str, Any]:
    """Set up, connect every client, then run all clients for ``seconds``."""
    closers: list[Callable[[], Any]] = []
    cycles: list[Cycle] = []
    if target == "pg":
        await pg_setup(address, rows)
        for k in range(clients):
            conn = await asyncpg.connect(address)
            closers.append(conn.close)
            cycles.append(await pg_cycles(conn, k))
    else:
        if target == "redis":
            await redis_setup(address, rows)
        for k in range(clients):
            if target == "redis":
                rpipe = await connect(RespPipe, address)
                closers.append(rpipe.close)
                cycles.append(await redis_cycles(rpipe, k))
            else:
                lpipe = await connect(LinePipe, address)
                closers.append(lpipe.close)
                cycles.append(await nextcall_cycles(lpipe, k))
    await _go()
    tally = Tally()
    t0 = time.perf_counter()
    outcomes = await asyncio.gather(*(c(t0 + seconds, tally) for c in cycles),
                                    return_exceptions=True)
    elapsed = time.perf_counter() - t0
    _say({"end": True})
    for out in outcomes:
        if isinstance(out, BaseException):
            tally.error(f"client stopped: {out!r}")
    for close in closers:
        res = close()
        if asyncio.iscoroutine(res):
            await res
    tally.cycle_s.sort()
    tally.claim_s.sort()
    return {"seconds": round(elapsed, 3), "cycles": len(tally.cycle_s),
            "cycles_per_s": round(len(tally.cycle_s) / elapsed, 1),
            "cycle_p50_us": percentile_us(tally.cycle_s, 0.50),
            "cycle_p99_us": percentile_us(tally.cycle_s, 0.99),
            "claim_p50_us": percentile_us(tally.claim_s, 0.50),
            "claim_p99_us": percentile_us(tally.claim_s, 0.99),
            "empty": tally.empty, "errors": tally.errors, "first_error": tally.first_error}


async def wake(address: str, baseline: int, samples: int) -> dict[str, Any]:
    """How late a long-polling ``next`` gets a callback that falls due, against the round
    trip of an idle ``next`` that finds a record at once.

    Campaign ``w`` holds one record. Baseline: ``next`` (timed) then ``release``. Wake:
    dispose the record as a callback due at an exact instant T, long-poll ``next`` at once
    (by turns from the same agent and another one); the latency is the lease's arrival
    minus T.
    """
    pipe = await connect(LinePipe, address)

    async def call(**req: Any) -> dict[str, Any]:
        got: dict[str, Any] = orjson.loads(await pipe.request(
            orjson.dumps(req, option=orjson.OPT_APPEND_NEWLINE)))
        if not got["ok"]:
            raise ServerError(f"{req['op']}: {got['error']}")
        return got

    async def lease(agent: str, wait_s: float = 0) -> str | None:
        leases = (await call(op="next", agent=agent, campaigns=["w"], wait=wait_s))["leases"]
        return str(leases[0]["token"]) if leases else None

    await _go()
    base: list[float] = []
    for _ in range(baseline):
        t0 = time.perf_counter()
        token = await lease("wake-a")
        base.append(time.perf_counter() - t0)
        if token is None:
            raise RuntimeError("baseline: campaign w had no record to hand out")
        await call(op="release", lease=token)
    late: list[float] = []
    missed = 0
    token = await lease("wake-a")
    for k in range(samples):
        if token is None:
            raise RuntimeError("wake: campaign w had no record to hand out")
        due = datetime.fromtimestamp(time.time() + random.uniform(0.3, 0.7), UTC)
        await call(op="dispose", lease=token, code="CB", callback={
            "at": due.isoformat(timespec="microseconds"), "scope": "anyone",
            "override_window": True})
        token = await lease(f"wake-{'b' if k % 2 else 'a'}", wait_s=5)
        arrived = time.time()
        if token is None:
            missed += 1
            token = await lease("wake-a")
        else:
            late.append(arrived - due.timestamp())
    if token is not None:
        await call(op="release", lease=token)
    _say({"end": True})
    pipe.close()
    return {"baseline_us": [round(x * 1e6, 1) for x in base],
            "wake_us": [round(x * 1e6, 1) for x in late], "missed": missed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", choices=["nextcall", "pg", "redis", "wake"])
    ap.add_argument("--address", required=True, help="socket path, or a PostgreSQL DSN")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rows", type=int, default=0,
                    help="pg: table rows (default 100,000), redis: sorted-set members "
                         "(default 100,000 per second of window)")
    ap.add_argument("--baseline", type=int, default=200, help="wake: idle next round trips")
    ap.add_argument("--samples", type=int, default=50, help="wake: callbacks to wait for")
    a = ap.parse_args()
    if a.target == "wake":
        result = uvloop.run(wake(a.address, a.baseline, a.samples))
    else:
        rows = a.rows or (math.ceil(REDIS_MEMBERS_PER_S * a.seconds) if a.target == "redis"
                          else RECORDS)
        result = uvloop.run(throughput(a.target, a.address, a.clients, a.seconds, rows))
    _say(result)


if __name__ == "__main__":
    main()

"""Fuzz a real daemon over its socket: random, valid and mutated frames of every op on
several pipelined connections, with invariants checked after every round.

    python -m tests.fuzz.fuzz_daemon --frames 1000000 --seed 1 --connections 4

A round sends a batch of frames on each connection at once (without waiting for
answers) and reads every answer; then it checks:

- every line was answered exactly once (matched by the id it echoes), and the lines
  answered on dispatch (codec errors, unknown ops, ``ping``/``stats``/...) in order;
- no answer is ``internal``, every error carries a known code and a field path;
- the database (read directly, read-only) holds every acknowledged lease, disposition
  and release; no record has two live leases or overlapping ones; attempts equal the
  dispositions in the history; ``stats`` counts as many live leases as the database;
- ``record.get`` of a few records touched agrees with itself (attempts, leases);
- the daemon is alive, and its log gained no traceback.

Frames that may trigger a defect already reported (``known.py``), and lines over the
line limit, are sent alone on a connection of their own and counted apart. Exit status:
0 when nothing new was found, 1 otherwise (``--strict``: known defects count too).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.fuzz.checks import Db, answer_problem, lid_of
from tests.fuzz.frames import Expect, Frame, id_key
from tests.fuzz.hazards import (
    ANSWER_TIMEOUT_S,
    Tally,
    hazard,
    parse,
    replay_examples,
    show,
)
from tests.fuzz.mutate import Generator
from tests.fuzz.proc import Daemon
from tests.fuzz.world import RESETS, World, fuzz_config, import_rows

#: the daemon's limits in the fuzz config: long polls and counts stay short
DAEMON = "max_wait_s = 0.1\nmax_count = 20\n"
#: the daemon's default line limit (the fuzz config keeps it)
MAX_LINE_BYTES = 65_536
#: the bytes a connection pipelines per round stay under the line limit: more than that
#: pending while ``max_inflight`` requests run is taken for one oversize line (a daemon
#: defect, docs/testing.md); ``--batch-bytes`` raises it to check a fix
BATCH_BYTES = 48 * 1024
HAZARDS_AT_ONCE = 16
#: a frame this long goes alone too, so a round stays under ``BATCH_BYTES`` + this
BIG_BYTES = 8 * 1024
#: leases lost to mutated frames run out soon, and expiry paths get their share
LEASE_S = 10
#: a connection's round goes out in this many writes
PARTS = 3


@dataclass
class Acks:
    """What the daemon acknowledged, for the database checks."""

    leased: list[tuple[int, str]] = field(default_factory=list)
    disposed: list[tuple[int, str, str]] = field(default_factory=list)
    released: list[tuple[int, str]] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)

    def note(self, exp: Expect, msg: dict[str, Any]) -> None:
        """Remember an ``ok`` answer that changed leases."""
        obj = exp.obj or {}
        if exp.op == "next":
            for lz in msg.get("leases") or ():
                lid = lid_of(lz["token"])
                if lid is not None:
                    self.leased.append((lid, lz["record"]["id"]))
                    self.touched.add(lz["record"]["id"])
        elif exp.op == "dispose" and not msg.get("duplicate"):
            lid = lid_of(obj.get("lease"))
            if lid is not None:
                self.disposed.append((lid, msg["record"], msg["code"]))
                self.touched.add(msg["record"])
        elif exp.op == "release":
            lid = lid_of(obj.get("lease"))
            if lid is not None:
                self.released.append((lid, msg["record"]))
                self.touched.add(msg["record"])

    def take(self) -> Acks:
        """The acknowledgements so far; this one starts empty again."""
        out = Acks(self.leased, self.disposed, self.released, self.touched)
        self.leased, self.disposed, self.released, self.touched = [], [], [], set()
        return out


class Conn:
    """One pipelined connection: a round writes a batch and reads all its answers."""

    def __init__(self, n: int, path: str, tally: Tally, acks: Acks, world: World) -> None:
        self.n, self.path = n, path
        self.tally, self.acks, self.world = tally, acks, world
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        #: the connection failed (closed, timed out): reopen it before the next round
        self.broken = False
        #: where every line sent and received goes (``--trace``), or None
        self.trace: Any = None

    def _trace(self, way: str, data: bytes) -> None:
        if self.trace is not None:
            t = f"{time.time():.6f}"
            for line in data.splitlines():
                self.trace.write(f"{t} {self.n} {way} ".encode() + line + b"\n")

    async def open(self) -> None:
        """(Re)connect."""
        if self.writer is not None:
            self.writer.close()
        self.reader, self.writer = await asyncio.open_unix_connection(self.path,
                                                                      limit=1 << 24)
        self.broken = False

    async def round(self, make: Callable[[], list[Frame]], parts: int) -> None:
        """Send ``parts`` batches from ``make`` without waiting (the daemon works on one
        while the next is made), then match every answer to its line."""
        assert self.reader is not None and self.writer is not None
        frames: list[Frame] = []
        for _ in range(parts):
            batch = make()
            data = b"".join(f.data for f in batch)
            self._trace(">", data)
            self.writer.write(data)
            frames += batch
            await asyncio.sleep(0)
        owed: dict[bytes, list[Expect]] = {}
        for f in frames:
            for e in f.expects:
                owed.setdefault(e.key, []).append(e)
        # lines answered on dispatch, with ids unique in the round: their rank
        rank = {e.key: i for i, e in enumerate(e for f in frames for e in f.expects
                                                if e.sync and len(owed[e.key]) == 1)}
        last = (-1, b"")
        unique = {k for k, v in owed.items() if len(v) == 1}
        left = sum(len(v) for v in owed.values())
        self.tally.lines += left
        try:
            while left:
                line = await asyncio.wait_for(self.reader.readline(), ANSWER_TIMEOUT_S)
                if not line:
                    raise ConnectionError("the daemon closed the connection")
                self._trace("<", line)
                msg = parse(line)
                if msg is None:
                    self.tally.violation(f"conn {self.n}: not an answer: {show(line)}")
                    continue
                if "ok" not in msg and "event" in msg:
                    self.tally.events += 1
                    continue
                key = id_key(msg.get("id"))
                waiting = owed.get(key)
                if not waiting:
                    self.tally.violation(f"conn {self.n}: an answer nobody is owed: "
                                         f"{show(line)}")
                    continue
                exp = waiting.pop(0)
                left -= 1
                r = rank.get(key)
                if r is not None:
                    if r < last[0]:
                        self.tally.violation(f"conn {self.n}: answers out of order: "
                                             f"{show(last[1])} before {show(exp.line)}")
                    last = max(last, (r, exp.line))
                # an id several lines share (null, mostly) cannot tell which one this
                # answers: its shape is checked, nothing is learnt from it
                self._answered(exp if key in unique else None, msg, line)
            await self.writer.drain()
        except (TimeoutError, ConnectionError, OSError) as exc:
            lost = [e for v in owed.values() for e in v]
            self.tally.violation(f"conn {self.n}: {len(lost)} lines unanswered ({exc!r}), "
                                 f"first: {show(lost[0].line) if lost else '-'}")
            self.broken = True

    def _answered(self, exp: Expect | None, msg: dict[str, Any], line: bytes) -> None:
        tally = self.tally
        ok = msg.get("ok") is True
        code = "ok" if ok else str((msg.get("error") or {}).get("code"))
        tally.answers[code] += 1
        problem = answer_problem(msg)
        if problem is not None:
            request = show(exp.line) if exp else "(one of the lines with this id)"
            tally.violation(f"{problem}: request {request} answer {show(line)}")
            return
        if ok and exp is not None:
            tally.ok_by_op[exp.op or "?"] += 1
            self.world.learn(exp.op, msg)
            try:
                self.acks.note(exp, msg)
            except (KeyError, TypeError) as exc:
                tally.violation(f"an answer without {exc}: request {show(exp.line)} answer "
                                f"{show(line)}")


class Checker:
    """The invariants after each round (see the module docstring)."""

    def __init__(self, daemon: Daemon, tally: Tally, rng: random.Random) -> None:
        self.daemon, self.tally, self.rng = daemon, tally, rng
        self.db = Db(daemon.db)
        self.ids = itertools.count(1)
        self.all = Acks()
        #: records the checker added (``_replenish``)
        self.added = 0

    async def call(self, conn: Conn, op: str, **fields: Any) -> dict[str, Any]:
        """One request on the checker's own connection, waiting for its answer."""
        assert conn.reader is not None and conn.writer is not None
        rid = f"check-{next(self.ids)}"
        conn.writer.write(orjson.dumps({"id": rid, "op": op, **fields}) + b"\n")
        while True:
            line = await asyncio.wait_for(conn.reader.readline(), ANSWER_TIMEOUT_S)
            if not line:
                raise ConnectionError("the daemon closed the checker's connection")
            msg = parse(line)
            if msg is not None and msg.get("id") == rid:
                return msg

    def _count(self, found: list[str]) -> None:
        self.tally.checks += 1
        for v in found:
            self.tally.violation(v)

    async def round(self, conn: Conn, acks: Acks) -> None:
        """Check what this round changed, against the database and the daemon."""
        self.all.leased += acks.leased
        self.all.disposed += acks.disposed
        self.all.released += acks.released
        t0 = time.time()
        st = await self.call(conn, "stats")
        t1 = time.time()
        await self._replenish(conn, st)
        past_t1, past_t0 = self.db.live_counts(t0, t1)
        self._count([] if past_t1 <= st.get("leases", -1) <= past_t0 else
                    [f"stats counts {st.get('leases')} live leases, the database "
                     f"{past_t1}..{past_t0}"])
        self._count(self.db.lease_order(acks.touched))
        self._count(self.db.attempts(acks.touched))
        self._count(self.db.acknowledged(acks.leased, acks.disposed, acks.released))
        for rec in self.rng.sample(sorted(acks.touched), min(3, len(acks.touched))):
            self._count(_record_problems(rec, await self.call(conn, "record.get",
                                                                record=rec)))

    async def _replenish(self, conn: Conn, stats: dict[str, Any]) -> None:
        """New records when few are left to hand out (closing codes drain the pool)."""
        due = ((stats.get("campaigns") or {}).get("t") or {}).get("due", 0)
        if due >= 50:
            return
        first = self.added
        ids = [f"p{i}" for i in range(first, first + 100)]
        ans = await self.call(conn, "records.import", campaign="t", list="l1",
                              records=import_rows(ids, first))
        if ans.get("ok"):
            self.added += 100
            conn.world.record_ids += ids

    def final(self) -> None:
        """Everything, over the whole database and every acknowledgement of the run."""
        self._count(self.db.lease_order())
        self._count(self.db.attempts())
        self._count(self.db.history_unique())
        a = self.all
        self._count(self.db.acknowledged(a.leased, a.disposed, a.released))


def _record_problems(rec: str, ans: dict[str, Any]) -> list[str]:
    """``record.get`` agrees with itself: attempts = dispositions in its history since a
    reset (each in its latest version), and it is leased exactly when one of its leases
    is active."""
    if not ans.get("ok"):
        return [f"record.get {rec} failed: {ans}"]
    view = ans["record"]
    n = 0
    for h in view["history"]:
        if h.get("replaced_by") is not None:
            continue  # an amendment replaced it: the amendment counts instead
        if h["code"] in RESETS:
            n = 0
        elif not h["code"].startswith("@"):
            n += 1
    out = []
    if view["attempts"] != n:
        out.append(f"record {rec}: attempts {view['attempts']}, {n} dispositions")
    active = sum(1 for x in view["leases"] if x["end"] == "active")
    if active != (view["state"] == "leased"):
        out.append(f"record {rec}: state {view['state']} with {active} active leases")
    return out


async def _setup(daemon: Daemon, records: int, conn: Conn, checker: Checker) -> None:
    """Records to call, and a few agents logged in."""
    for first in range(0, records, 100):
        ids = [f"r{i}" for i in range(first, min(first + 100, records))]
        ans = await checker.call(conn, "records.import", campaign="t", list="l1",
                                 records=import_rows(ids, first))
        if not ans.get("ok"):
            raise RuntimeError(f"the setup import failed: {ans}")
    for agent in conn.world.agents[::2]:
        await checker.call(conn, "agent.login", agent=agent, campaigns=["t", "u"],
                           teams=["red"])


class Run:
    """One fuzzing run: the connections, their generators, the checker."""

    def __init__(self, args: argparse.Namespace, daemon: Daemon, tally: Tally) -> None:
        self.args, self.daemon, self.tally = args, daemon, tally
        self.world = World(now=time.time)
        self.world.record_ids = [f"r{i}" for i in range(args.records)] + \
            [f"f{n}" for n in range(self.world.id_space)] + ["nope"]
        self.acks = Acks()
        rng = random.Random(args.seed)
        self.checker = Checker(daemon, tally, random.Random(args.seed + 1))
        self.probe = Conn(-1, daemon.sock, tally, Acks(), self.world)
        self.conns = [Conn(i, daemon.sock, tally, self.acks, self.world)
                      for i in range(args.connections)]
        self.gens = [Generator(random.Random(rng.random()), self.world, MAX_LINE_BYTES)
                     for _ in self.conns]
        self.fid = itertools.count(1)

    async def start(self) -> None:
        """Connect, import the records, log some agents in."""
        await self.probe.open()
        await _setup(self.daemon, self.args.records, self.probe, self.checker)
        if self.args.trace:
            trace = open(self.args.trace, "ab")  # noqa: SIM115 - open for the whole run
            for c in self.conns:
                c.trace = trace
        for c in self.conns:
            await c.open()

    def maker(self, gen: Generator, hazards: list[Frame], parts: int
              ) -> Callable[[], list[Frame]]:
        """Makes a connection's batches: ``1/parts`` of its round each; hazards drawn
        meanwhile go to ``hazards``."""
        most, most_bytes = self.args.batch // parts, self.args.batch_bytes // parts

        def make() -> list[Frame]:
            batch: list[Frame] = []
            size = 0
            while len(batch) < most and size < most_bytes:
                f = gen.frame(_fid(next(self.fid)))
                self.tally.frames += 1
                if f.hazard or len(f.data) > BIG_BYTES:
                    hazards.append(f)
                else:
                    batch.append(f)
                    size += len(f.data)
            return batch
        return make

    async def recover(self, mark: int) -> None:
        """Reconnect, restarting the daemon if it died (``_recover``)."""
        await _recover(self.daemon, [self.probe, *self.conns], self.tally, mark)

    async def round(self) -> None:
        """One round: the batches at once, then the hazards one by one, then the checks."""
        daemon, tally = self.daemon, self.tally
        hazards: list[Frame] = []
        mark = daemon.mark()
        t0 = time.monotonic()
        await asyncio.gather(*(c.round(self.maker(g, hazards, PARTS), PARTS)
                               for c, g in zip(self.conns, self.gens, strict=True)))
        t1 = time.monotonic()
        tally.spent["rounds"] += t1 - t0
        traces = daemon.tracebacks(mark)
        if traces:
            tally.violation("the daemon logged tracebacks this round:\n" + "\n".join(traces))
        await self.recover(mark)
        mark = daemon.mark()
        for i in range(0, len(hazards), HAZARDS_AT_ONCE):
            # each on a connection of its own; a few at once (they are slow alone)
            group = hazards[i:i + HAZARDS_AT_ONCE]
            got = await asyncio.gather(*(hazard(h, daemon, tally) for h in group),
                                       return_exceptions=True)
            for h, exc in zip(group, got, strict=True):
                if isinstance(exc, BaseException):
                    tally.violation(f"a hazard frame could not be sent ({exc!r}): "
                                    f"{show(h.data)}")
            await self.recover(mark)
        t2 = time.monotonic()
        tally.spent["hazards"] += t2 - t1
        mark = daemon.mark()
        try:
            await self.checker.round(self.probe, self.acks.take())
        except (OSError, ConnectionError, TimeoutError) as exc:
            tally.violation(f"the checks could not run: {exc!r}")
            self.probe.broken = True
            await self.recover(mark)
        tally.spent["checks"] += time.monotonic() - t2


async def fuzz(args: argparse.Namespace, daemon: Daemon, tally: Tally) -> None:
    """Rounds of frames until ``args.frames`` are sent, then the final checks."""
    run = Run(args, daemon, tally)
    await run.start()
    started = last_report = time.monotonic()
    while tally.frames < args.frames:
        await run.round()
        if time.monotonic() - last_report > 10:
            last_report = time.monotonic()
            rate = tally.frames / (last_report - started)
            print(f"... {tally.frames:,} frames, {rate:,.0f}/s, {tally.checks:,} checks, "
                  f"{len(tally.violations)} violations", file=sys.stderr, flush=True)
    await run.recover(daemon.mark())
    run.checker.final()
    await replay_examples(daemon, tally)
    await run.recover(daemon.mark())
    tally.answers["(seconds)"] = round(time.monotonic() - started)


async def _answers_ping(path: str) -> bool:
    """Whether the daemon accepts a connection and answers ``ping`` on it."""
    try:
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            writer.write(b'{"id":"alive","op":"ping"}\n')
            line = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT_S)
        finally:
            writer.close()
    except (OSError, TimeoutError):
        return False
    return (parse(line) or {}).get("ok") is True


async def _recover(daemon: Daemon, conns: list[Conn], tally: Tally, mark: int) -> None:
    """Reopen broken connections. A daemon that died (or is on its way out: it no
    longer answers) is a finding: report why (its log's errors since ``mark``), start it
    again on the same database, and reconnect everything."""
    if daemon.alive() and await _answers_ping(daemon.sock):
        try:
            for c in conns:
                if c.broken:
                    await c.open()
            return
        except OSError:
            pass
    status = daemon.wait(60)
    with daemon.log.open("rb") as f:
        f.seek(mark)
        errors = [x for x in f.read().decode(errors="replace").splitlines()
                  if " ERROR " in x or " CRITICAL " in x]
    tally.violation(f"the daemon died (exit status {status}):\n" + "\n".join(errors[:8]))
    tally.restarts += 1
    daemon.start()
    for c in conns:
        await c.open()


def _fid(n: int) -> int | str:
    """Ids alternate between numbers and strings: both must come back as sent."""
    return n if n % 2 else f"f-{n}"


def report(tally: Tally, status: int | None) -> None:
    """The counts, the findings, and the known defects seen."""
    secs = tally.answers.pop("(seconds)", 0) or 1
    print(f"frames sent        {tally.frames:,} ({tally.frames / secs:,.0f}/s over {secs} s)")
    print(f"lines answered     {tally.lines:,} (+ events {tally.events:,})")
    print("answers by code    " + ", ".join(f"{k} {v:,}" for k, v in
                                            tally.answers.most_common()))
    print("ok answers by op   " + ", ".join(f"{k} {v:,}" for k, v in
                                            tally.ok_by_op.most_common()))
    print(f"invariant checks   {tally.checks:,}")
    print("time spent         " + ", ".join(f"{k} {v:.1f} s" for k, v in tally.spent.items()))
    print(f"daemon restarts    {tally.restarts} (after it died)")
    print(f"daemon exit status {status}")
    for name in sorted(set(tally.known) | set(tally.known_quiet)):
        print(f"known defect       {name}: {tally.known[name]} hit, "
              f"{tally.known_quiet[name]} sent without trouble")
        if name in tally.known_examples:
            print(f"  e.g. {tally.known_examples[name]}")
    print(f"violations         {len(tally.violations)}")
    for kind, items in _kinds(tally.violations):
        print(f"  {len(items)} x {kind}")
        for v in items[:2]:
            print("    - " + v.replace("\n", "\n      "))


def _kinds(violations: list[str]) -> list[tuple[str, list[str]]]:
    """Violations grouped by their first words, numbers aside; most frequent first."""
    groups: dict[str, list[str]] = {}
    for v in violations:
        head = re.sub(r"[0-9][0-9.]*", "N", v.split("\n", 1)[0])
        groups.setdefault(" ".join(head.split()[:8]), []).append(v)
    return sorted(groups.items(), key=lambda kv: -len(kv[1]))


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run, report; the exit status says whether it found
    anything."""
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz.fuzz_daemon",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1000,
                    help="frames per connection per round, at most")
    ap.add_argument("--batch-bytes", type=int, default=BATCH_BYTES,
                    help="bytes per connection per round, at most")
    ap.add_argument("--records", type=int, default=300)
    ap.add_argument("--dir", help="where the daemon's files go (default: a new temp dir)")
    ap.add_argument("--strict", action="store_true", help="known defects fail the run too")
    ap.add_argument("--trace", help="append every line sent and received to this file")
    args = ap.parse_args(argv)
    tmp = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="nextcall-fuzz-"))
    tmp.mkdir(parents=True, exist_ok=True)
    daemon = Daemon(fuzz_config(tmp, extra_daemon=DAEMON, lease_s=LEASE_S))
    daemon.start()
    print(f"fuzzing the daemon in {tmp} (seed {args.seed})", file=sys.stderr, flush=True)
    tally = Tally()
    status: int | None = None
    try:
        asyncio.run(fuzz(args, daemon, tally))
    finally:
        status = daemon.stop()
        if status != 0:
            tally.violation(f"the daemon exited with status {status}:\n{daemon.tail()}")
        report(tally, status)
    failed = bool(tally.violations) or (args.strict and bool(tally.known))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

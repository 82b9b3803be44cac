"""Kill the daemon with SIGKILL under load, again and again, and check after each
restart that nothing acknowledged was lost and no record was ever held twice.

    python -m tests.fuzz.crashloop --cycles 20 --agents 8

Agents (threads, one connection each) run the call cycle: ``next``, then mostly
``dispose`` (retries, callbacks a few seconds ahead, sales), sometimes ``release``,
``extend`` then ``dispose``, or nothing at all (the lease runs out); a supervisor thread
imports new records. At a random moment the daemon gets ``kill -9``; the agents wait,
the database is checked (read-only), the daemon restarts on it, and every agent first
retries the request it had in flight (a dispose retried is answered as a duplicate if it
had committed). Checked after each kill:

- every acknowledged lease, disposition, release and import is in the database;
- a record's leases follow one another (none handed out before the last one ended or ran
  out); an agent is never handed a record another agent holds by a lease that was
  acknowledged and has neither ended nor run out;
- attempts equal the dispositions in each record's history; no lease has two;
- after the restart, ``stats`` accounts for every record in the database.

Exit status 0 when nothing was found, 1 otherwise.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nextcall.client import Client, ClientError
from tests.fuzz.checks import Db, lid_of
from tests.fuzz.proc import Daemon
from tests.fuzz.world import fuzz_config, import_rows

#: leases run out quickly, so abandoned ones come back within a cycle
LEASE_S = 5
#: a lease acknowledged to expire this long after another agent got its record: a clock
#: read on either side of the answer cannot explain it
SLACK_S = 0.5


def _instant(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class Book:
    """What the daemon acknowledged, shared by the threads (under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    leased: dict[int, str] = field(default_factory=dict)
    disposed: dict[int, tuple[str, str]] = field(default_factory=dict)
    released: dict[int, str] = field(default_factory=dict)
    imported: set[str] = field(default_factory=set)
    #: record -> (lid, agent, expires_at) of the acknowledged lease no end was sent for
    held: dict[str, tuple[int, str, float]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def violation(self, text: str) -> None:
        self.violations.append(text)
        print(f"VIOLATION {text}", file=sys.stderr, flush=True)

    def got_lease(self, agent: str, lz: dict[str, Any]) -> None:
        """``next`` answered: the record must not be held by someone else's live lease."""
        rec, lid = lz["record"]["id"], lid_of(lz["token"])
        assert lid is not None
        now = time.time()
        with self.lock:
            old = self.held.get(rec)
            if old is not None and old[2] > now + SLACK_S:
                self.violation(f"record {rec} leased to {agent} (lease {lid}) while lease "
                               f"{old[0]} of {old[1]} runs until {old[2]:.3f} "
                               f"(now {now:.3f})")
            self.held[rec] = (lid, agent, _instant(lz["expires_at"]))
            self.leased[lid] = rec
            self.counts["leases"] += 1


def _enter(running: threading.Event, busy: threading.Event) -> bool:
    """Mark a worker busy if the load is on (``Loop.pause`` waits for busy workers):
    busy first, then the check, so a pause never misses a worker about to start."""
    busy.set()
    if running.is_set():
        return True
    busy.clear()
    running.wait(0.1)
    return False


class Agent(threading.Thread):
    """One agent's call cycle on its own connection; survives the daemon's deaths."""

    def __init__(self, k: int, sock: str, book: Book, running: threading.Event,
                 stop: threading.Event, seed: int) -> None:
        super().__init__(name=f"agent{k}", daemon=True)
        self.sock, self.book, self.running, self.stop_ = sock, book, running, stop
        self.rng = random.Random(seed * 1000 + k)
        self.agent = f"agent{k}"
        #: the request in flight when the daemon died: (op, fields, record)
        self.pending: tuple[str, dict[str, Any], str] | None = None
        self.busy = threading.Event()

    def run(self) -> None:
        while not self.stop_.is_set():
            if not _enter(self.running, self.busy):
                continue
            try:
                with Client(self.sock, timeout=30) as c:
                    if self.pending is not None:
                        self._retry(c)
                    while self.running.is_set() and not self.stop_.is_set():
                        self._cycle(c)
            except (OSError, ConnectionError, ValueError):
                time.sleep(0.02)  # the daemon died under us
            except ClientError as exc:
                if exc.code != "unavailable":
                    self.book.violation(f"{self.agent}: unexpected {exc}")
            finally:
                self.busy.clear()

    def _cycle(self, c: Client) -> None:
        leases = c.call("next", agent=self.agent, campaigns=["t"])["leases"]
        if not leases:
            time.sleep(0.01)
            return
        lz = leases[0]
        self.book.got_lease(self.agent, lz)
        rec, token = lz["record"]["id"], lz["token"]
        r = self.rng.random()
        if r < 0.03:
            self.book.counts["abandoned"] += 1
            return  # never answered: it runs out
        if r < 0.13:
            self._end(c, "release", {"lease": token}, rec)
            return
        if r < 0.23:
            try:
                ans = c.call("extend", lease=token, seconds=self.rng.choice((5, 10, 30)))
            except ClientError as exc:
                if exc.code != "lease_expired":
                    raise
                self.book.counts["ran out before the answer"] += 1
                return
            with self.book.lock:
                self.book.held[rec] = (lid_of(token) or 0, self.agent,
                                       _instant(ans["expires_at"]))
                self.book.counts["extends"] += 1
        self._end(c, "dispose", {"lease": token, **self._result()}, rec)

    def _result(self) -> dict[str, Any]:
        code = self.rng.choice(["NA0"] * 20 + ["NA", "CB", "CB", "SALE", "NAD"])
        out: dict[str, Any] = {"code": code}
        if code == "SALE":
            out["revenue"] = 10.0
        elif code == "CB":
            at = datetime.fromtimestamp(time.time() + self.rng.uniform(2, 6), UTC)
            out["callback"] = {"at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                               "override_window": True}
        return out

    def _end(self, c: Client, op: str, fields: dict[str, Any], rec: str) -> None:
        """Dispose or release: the record is no longer ours from the moment it is sent."""
        with self.book.lock:
            self.book.held.pop(rec, None)
        self.pending = (op, fields, rec)
        try:
            ans = c.call(op, **fields)
        except ClientError as exc:
            if exc.code != "lease_expired":
                raise
            self.pending = None
            self.book.counts["ran out before the answer"] += 1  # a stalled thread
            return
        self.pending = None
        self._acked(op, fields, rec, ans)

    def _acked(self, op: str, fields: dict[str, Any], rec: str, ans: dict[str, Any]) -> None:
        lid = lid_of(fields["lease"])
        assert lid is not None
        book = self.book
        with book.lock:
            if ans.get("record") != rec:
                book.violation(f"{op} of lease {lid} answered for {ans.get('record')}, "
                               f"not {rec}: {ans}")
            if op == "release":
                book.released[lid] = rec
                book.counts["releases"] += 1
            else:
                book.disposed[lid] = (rec, fields["code"])
                book.counts["duplicates" if ans.get("duplicate") else "dispositions"] += 1

    def _retry(self, c: Client) -> None:
        """The request in flight at the kill, again: applied now, answered as a duplicate,
        or refused because the lease ran out meanwhile (then it was not applied)."""
        assert self.pending is not None
        op, fields, rec = self.pending
        self.pending = None
        try:
            ans = c.call(op, **fields)
        except ClientError as exc:
            if exc.code == "lease_expired":  # not applied, and now too late
                self.book.counts["retry lease_expired"] += 1
                return
            if op == "release" and exc.code == "lease_ended":  # it had been applied
                with self.book.lock:
                    self.book.released[lid_of(fields["lease"]) or 0] = rec
                    self.book.counts["retry release applied before"] += 1
                return
            raise
        self.book.counts[f"retry {op}"] += 1
        self._acked(op, fields, rec, ans)


class Importer(threading.Thread):
    """A supervisor adding records now and then (acknowledged imports must survive)."""

    def __init__(self, sock: str, book: Book, running: threading.Event,
                 stop: threading.Event) -> None:
        super().__init__(name="importer", daemon=True)
        self.sock, self.book, self.running, self.stop_ = sock, book, running, stop
        self.busy = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop_.is_set():
            if not _enter(self.running, self.busy):
                continue
            ids = [f"new{n + i}" for i in range(5)]
            try:
                with Client(self.sock, timeout=30) as c:
                    c.call("records.import", campaign="t", list="l2",
                           records=import_rows(ids, 5000 + n))
                with self.book.lock:
                    self.book.imported.update(ids)
                    self.book.counts["imports"] += 1
                n += 5
            except (OSError, ConnectionError, ValueError, ClientError):
                pass
            finally:
                self.busy.clear()
            time.sleep(0.2)


def _lost_imports(db: Db, ids: set[str]) -> list[str]:
    con = sqlite3.connect(f"file:{db.path}?mode=ro", uri=True)
    try:
        have = {r[0] for r in con.execute("SELECT id FROM records")}
    finally:
        con.close()
    return [f"acknowledged import of {i} lost" for i in sorted(ids - have)]


@dataclass
class Loop:
    """The daemon, its agents and the bookkeeping of one run."""

    daemon: Daemon
    book: Book
    running: threading.Event
    stop: threading.Event
    workers: list[Agent | Importer]
    checks: int = 0

    def pause(self) -> None:
        """Stop the agents between requests (after the kill they fail out of theirs)."""
        self.running.clear()
        deadline = time.monotonic() + 60
        while any(w.busy.is_set() for w in self.workers) and time.monotonic() < deadline:
            time.sleep(0.01)

    def check_db(self) -> None:
        """With the daemon dead: everything acknowledged is in the database."""
        db, book = Db(self.daemon.db), self.book
        with book.lock:
            leased = list(book.leased.items())
            disposed = [(lid, rec, code) for lid, (rec, code) in book.disposed.items()]
            released = list(book.released.items())
            imported = set(book.imported)
        found = db.acknowledged(leased, disposed, released) + db.lease_order() + \
            db.attempts() + db.history_unique() + _lost_imports(db, imported)
        self.checks += 5
        for v in found:
            book.violation(v)

    def check_stats(self) -> None:
        """After the restart, before the agents resume: stats accounts for every
        record the database holds."""
        with Client(self.daemon.sock, timeout=30) as c:
            st = c.call("stats", campaign="t")["campaigns"]["t"]
        counts = ("due", "dormant", "callback_due", "callback_upcoming", "leased", "held",
                  "resolution", "no_number")
        total = sum(int(st.get(k, 0)) for k in counts) + sum(st["closed"].values())
        n = Db(self.daemon.db).record_count()
        self.checks += 1
        if total != n:
            self.book.violation(f"stats counts {total} records, the database {n}: {st}")


def run(args: argparse.Namespace, loop: Loop) -> None:
    """``args.cycles`` kill-and-restart cycles under load."""
    rng = random.Random(args.seed)
    with Client(loop.daemon.sock, timeout=30) as c:
        for first in range(0, args.records, 100):
            ids = [f"r{i}" for i in range(first, min(first + 100, args.records))]
            c.call("records.import", campaign="t", list="l1", records=import_rows(ids, first))
    for w in loop.workers:
        w.start()
    for cycle in range(args.cycles):
        loop.running.set()
        time.sleep(rng.uniform(0.3, 2.5))
        loop.daemon.kill9()
        loop.pause()
        loop.check_db()
        loop.daemon.start()
        loop.check_stats()
        with loop.book.lock:
            loop.book.counts["cycles"] += 1
        print(f"... cycle {cycle + 1}: {dict(loop.book.counts)}", file=sys.stderr,
              flush=True)
    loop.running.set()
    time.sleep(0.5)
    loop.pause()
    loop.stop.set()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the cycles, report; non-zero on any violation."""
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz.crashloop",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--records", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", help="where the daemon's files go (default: a new temp dir)")
    args = ap.parse_args(argv)
    tmp = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="nextcall-crash-"))
    tmp.mkdir(parents=True, exist_ok=True)
    daemon = Daemon(fuzz_config(tmp, lease_s=LEASE_S))
    daemon.start()
    print(f"crash loop on the daemon in {tmp} (seed {args.seed})", file=sys.stderr,
          flush=True)
    book, running, stop = Book(), threading.Event(), threading.Event()
    workers: list[Agent | Importer] = [Agent(k, daemon.sock, book, running, stop, args.seed)
                                       for k in range(args.agents)]
    workers.append(Importer(daemon.sock, book, running, stop))
    loop = Loop(daemon, book, running, stop, workers)
    status: int | None = None
    try:
        run(args, loop)
    finally:
        stop.set()
        status = daemon.stop()
        if status != 0:
            book.violation(f"the daemon exited with status {status}:\n{daemon.tail()}")
        loop.check_db()
    print("counts             " + ", ".join(f"{k} {v:,}" for k, v in sorted(book.counts.items())))
    print(f"invariant checks   {loop.checks:,}")
    print(f"daemon exit status {status}")
    print(f"violations         {len(book.violations)}")
    for v in book.violations[:50]:
        print(f"  - {v}")
    return 1 if book.violations else 0


if __name__ == "__main__":
    sys.exit(main())

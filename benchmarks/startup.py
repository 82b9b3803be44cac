"""Start-up, memory and ``next`` latency against the number of records.

    .venv/bin/python benchmarks/startup.py [--records 10000,1000000,10000000] [--seconds 5]

For each size N: a SQLite database with N records is made once (cached under
``$TMPDIR/nextcall-startup-N-vK.sqlite``; made with plain ``sqlite3``, not measured),
then the real daemon (``nextcall serve``, metrics on, default settings) is started on it
and measured:

- READY: from spawning the process to its first answered ``ping`` (imports, migration
  check, the rebuild, binding the socket: what an operator waits for);
- RSS after READY, and the bytes per record above an empty daemon's RSS;
- ``next`` latency (p50/p99) at 1 and 20 clients, each ``next`` followed by a
  ``dispose`` (retry, no delay) so the pool keeps its size.

Records: 24 timezones one hour apart, windows and the legal window on (about half the
zones are open at any hour), 93 % ready (a third of them not yet due), 2 % callbacks,
5 % closed; 10 % have two numbers; data is a small JSON object. The cached database is
migrated to the newest schema (not timed) before the daemon starts on it, as after any
upgrade.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent / "nextcall"
#: bump when the generated data changes, so cached databases are remade
DATA_VERSION = 4
ZONES = ["Pacific/Honolulu", "America/Anchorage", "America/Los_Angeles", "America/Denver",
         "America/Chicago", "America/New_York", "America/Halifax", "America/Sao_Paulo",
         "Atlantic/South_Georgia", "Atlantic/Azores", "Europe/London", "Europe/Amsterdam",
         "Europe/Helsinki", "Europe/Moscow", "Asia/Dubai", "Asia/Karachi", "Asia/Dhaka",
         "Asia/Bangkok", "Asia/Shanghai", "Asia/Tokyo", "Australia/Brisbane",
         "Pacific/Noumea", "Pacific/Auckland", "Pacific/Tongatapu"]


def config(tmp: Path, db: Path) -> Path:
    week = "\n".join(f'{d} = ["08:00-21:00"]' for d in
                     ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
    cfg = tmp / "startup.toml"
    cfg.write_text(textwrap.dedent(f"""
        [daemon]
        socket = "{tmp}/startup.sock"
        database = "sqlite+aiosqlite:///{db}"
        log_level = "info"
        [metrics]
        address = "127.0.0.1:0"
        [resultsets.s]
        [[resultsets.s.codes]]
        code = "NA0"
        action = "retry"
        delay_s = 0
        [[resultsets.s.codes]]
        code = "CB"
        action = "callback"
        [campaigns.t]
        resultset = "s"
        max_attempts = 1000
        [campaigns.t.window]
    """) + week + "\n")
    return cfg


def make_db(path: Path, n: int) -> None:
    """N records in a fresh database (the daemon's own migrations make the schema)."""
    tmp = Path(tempfile.mkdtemp())
    cfg = config(tmp, path)
    subprocess.run([str(BIN), "--config", str(cfg), "migrate"], check=True,
                   capture_output=True)
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA journal_mode=WAL")
    rng = random.Random(n)
    now = time.time()
    cols = ("rid", "id", "campaign", "list", "phones", "timezone", "priority", "data",
            "state", "reason", "due_at", "attempts", "owner", "team", "best_cp",
            "phone_idx", "callback", "imported_at", "updated_at")
    sql = f"INSERT INTO records ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

    def rows(lo: int, hi: int) -> Any:
        for i in range(lo, hi):
            number = f"+3161{i % 10 ** 7:07d}"
            phones = f'[["{number}","active"]]' if i % 10 else \
                f'[["{number}","active"],["+3120{i % 10 ** 7:07d}","active"]]'
            kind = i % 100
            state, reason, owner, cb = "ready", None, None, None
            due = now - rng.random() * 86400 if i % 3 else now + rng.random() * 86400
            if kind in (0, 50):
                state, due, owner = "callback", now + rng.random() * 86400 * 3, f"a{i % 50}"
                cb = (f'{{"at":{due},"timezone":"UTC","local":"","scope":"personal_then_team",'
                      f'"owner":"{owner}","team":"red","contact_priority":4,"reason":"",'
                      f'"override_window":false,"code":"CB","reminder_min":15}}')
            elif kind % 20 == 1:
                state, reason, due = "closed", "final", 0.0
            yield (i, f"rec-{i:08d}", "t", "list-1", phones, ZONES[i % len(ZONES)],
                   rng.randint(0, 3), f'{{"name":"Ann de Vries","n":{i}}}', state, reason,
                   due, rng.randint(0, 5), owner, "red", rng.choice((0, 1, 3, 4)), 0, cb,
                   now, now)
    step = 200_000
    for lo in range(1, n + 1, step):
        con.executemany(sql, rows(lo, min(lo + step, n + 1)))
        con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    # as the daemon leaves a database it stops cleanly (``SqlStore.close``)
    con.execute("PRAGMA analysis_limit=1000")
    con.execute("ANALYZE")
    con.close()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def ping(sock: str) -> bool:
    import socket
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(sock)
        s.sendall(b'{"id":1,"op":"ping"}\n')
        data = s.recv(65536)
        s.close()
        return b'"ok":true' in data
    except OSError:
        return False


async def latency(sock: str, clients: int, seconds: float) -> dict[str, float]:
    """p50/p99 of ``next`` (each followed by a dispose) over ``seconds``."""
    import orjson
    lat: list[float] = []
    stop = time.perf_counter() + seconds

    async def one(k: int) -> None:
        r, w = await asyncio.open_unix_connection(sock, limit=1 << 22)
        i = 0
        while time.perf_counter() < stop:
            i += 1
            t0 = time.perf_counter()
            w.write(b'{"id":%d,"op":"next","agent":"s%d","campaigns":["t"]}\n' % (i, k))
            msg = orjson.loads(await r.readline())
            lat.append(time.perf_counter() - t0)
            for lz in msg.get("leases", []):
                w.write(b'{"id":0,"op":"dispose","lease":"%s","code":"NA0"}\n'
                        % lz["token"].encode())
                await r.readline()
        w.close()
    await asyncio.gather(*(one(k) for k in range(clients)))
    lat.sort()
    return {"n": len(lat), "p50_us": round(lat[len(lat) // 2] * 1e6),
            "p99_us": round(lat[int(len(lat) * 0.99)] * 1e6)}


def measure(n: int, seconds: float) -> dict[str, Any]:
    db = Path(tempfile.gettempdir()) / f"nextcall-startup-{n}-v{DATA_VERSION}.sqlite"
    if not db.exists():
        t = time.perf_counter()
        make_db(db, n)
        print(f"  (made {db} in {time.perf_counter() - t:.0f} s)", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp())
    work = tmp / "db.sqlite"
    # a copy, so runs do not change the cached database; migrated to the newest schema
    subprocess.run(["cp", str(db), str(work)], check=True)
    cfg = config(tmp, work)
    subprocess.run([str(BIN), "--config", str(cfg), "migrate"], check=True,
                   capture_output=True)
    sock = str(tmp / "startup.sock")
    log = (tmp / "daemon.log").open("wb")
    subprocess.run(["sync"], check=False)
    t0 = time.perf_counter()
    p = subprocess.Popen([str(BIN), "--config", str(cfg), "serve"], stdout=log, stderr=log)
    try:
        while not ping(sock):
            if p.poll() is not None:
                raise RuntimeError((tmp / "daemon.log").read_text()[-2000:])
            time.sleep(0.002)
        ready_s = time.perf_counter() - t0
        time.sleep(0.5)
        rss = rss_kib(p.pid)
        out: dict[str, Any] = {"records": n, "ready_s": round(ready_s, 3), "rss_mib":
                               round(rss / 1024, 1)}
        text = (tmp / "daemon.log").read_text()
        for line in text.splitlines():
            if "heap_rebuilt" in line:
                out["rebuild"] = line.split("heap_rebuilt ", 1)[1]
        if seconds:
            try:
                import uvloop
                run = uvloop.run
            except ImportError:
                run = asyncio.run
            out["next_1"] = run(latency(sock, 1, seconds))
            out["next_20"] = run(latency(sock, 20, seconds))
        return out
    finally:
        p.terminate()
        p.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", default="10000,1000000,10000000")
    ap.add_argument("--seconds", type=float, default=5.0,
                    help="latency measurement per client count (0: skip)")
    a = ap.parse_args()
    sizes = [int(x) for x in a.records.split(",")]
    empty = measure(0, 0)
    print(json.dumps({"empty": empty}))
    rows = []
    for n in sizes:
        got = measure(n, a.seconds)
        got["bytes_per_record"] = round((got["rss_mib"] - empty["rss_mib"]) * 1048576 / n)
        print(json.dumps(got))
        rows.append(got)
    print()
    print("| records | READY s | RSS MiB | bytes/record above empty | next p50/p99 µs, 1 client "
          "| 20 clients |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        one, twenty = r.get("next_1", {}), r.get("next_20", {})
        print(f"| {r['records']:,} | {r['ready_s']} | {r['rss_mib']} | {r['bytes_per_record']} "
              f"| {one.get('p50_us')}/{one.get('p99_us')} "
              f"| {twenty.get('p50_us')}/{twenty.get('p99_us')} |")
    print(f"\nempty daemon: READY {empty['ready_s']} s, RSS {empty['rss_mib']} MiB; "
          f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

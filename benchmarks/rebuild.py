"""Heap rebuild at daemon start: N records in SQLite (or PostgreSQL) -> engine.

``python benchmarks/rebuild.py --records 1000000`` creates the database once (fast bulk
insert, not measured) and then, in a fresh process, measures what the daemon does at
start: read every open record and lease in one snapshot, build the heaps, restore leases.
Prints JSON with the phases' seconds and the process RSS before and after.
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
import time
from pathlib import Path

ZONES = ["Europe/Amsterdam", "Europe/London", "America/New_York", "America/Chicago",
         "America/Los_Angeles", "Asia/Kolkata", "Australia/Sydney", "Asia/Tokyo"]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def make_db(path: Path, n: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))
    from nextcall.storage.sql import SqlStore

    async def migrate() -> None:
        s = SqlStore(f"sqlite+aiosqlite:///{path}")
        await s.open()
        await s.migrate()
        await s.close()
    asyncio.run(migrate())
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous=OFF")
    rng = random.Random(1)
    now = time.time()
    rows = ((i, f"rec-{i:08d}", "t", "list-1", f'[["+3161{i % 10**7:07d}","active"]]',
             ZONES[i % len(ZONES)], rng.randint(0, 3), f'{{"name":"Ann de Vries","n":{i}}}',
             "ready" if i % 10 else "callback", None,
             now - 10 if i % 3 else now + rng.randint(60, 86400 * 7), rng.randint(0, 5),
             f"agent{i % 50}" if i % 10 == 0 else None, "red", rng.choice((0, 1, 3, 4)), 0,
             f'{{"at":{now + 3600:f},"timezone":"UTC","local":"","scope":"personal_then_team",'
             f'"owner":"agent{i % 50}","team":"red","contact_priority":4}}'
             if i % 10 == 0 else None, now, now) for i in range(1, n + 1))
    from nextcall.storage.statements import RECORD_COLS
    con.executemany(f"INSERT INTO records ({', '.join(RECORD_COLS)}) "
                    f"VALUES ({', '.join('?' * len(RECORD_COLS))})", rows)
    con.commit()
    con.close()


def measure(path: Path) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))
    import textwrap

    from nextcall.config import load
    from nextcall.service import Service
    from nextcall.storage.sql import SqlStore
    cfg = path.parent / "bench.toml"
    cfg.write_text(textwrap.dedent(f"""
        [daemon]
        database = "sqlite+aiosqlite:///{path}"
        [resultsets.s]
        [[resultsets.s.codes]]
        code = "NA"
        action = "retry"
        [campaigns.t]
        resultset = "s"
    """))
    settings = load(cfg)
    before = rss_mib()

    async def go() -> dict[str, float]:
        store = SqlStore(settings.daemon.database)
        await store.open()
        t0 = time.perf_counter()
        svc = Service(settings, store)
        stats = await svc.rebuild()
        total = time.perf_counter() - t0
        await store.close()
        return {**stats, "wall_s": total}
    out = asyncio.run(go())
    out["rss_before_mib"] = round(before, 1)
    out["rss_after_mib"] = round(rss_mib(), 1)
    out["bytes_per_record"] = round((out["rss_after_mib"] - before) * 1024 * 1024
                                    / max(out["records"], 1))
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--db", default=None)
    ap.add_argument("--measure-only", action="store_true")
    a = ap.parse_args()
    db = Path(a.db or f"/tmp/nextcall-bench-{a.records}.sqlite")
    if a.measure_only:
        print(json.dumps(measure(db)))
        return
    if not db.exists():
        make_db(db, a.records)
    # a fresh process, so RSS is the rebuild's and nothing is warm
    out = subprocess.run([sys.executable, __file__, "--db", str(db), "--records",
                          str(a.records), "--measure-only"], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": ""})
    print(out.stdout.strip())


if __name__ == "__main__":
    main()

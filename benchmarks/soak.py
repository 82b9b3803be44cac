"""Soak: N clients doing next + dispose for a long time; RSS and p99 per minute.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--clients 20] [--records 100000]

The daemon (SQLite, synchronous=normal, metrics on, windows on) runs on a fresh database
with ``--records`` records over 24 timezones; the retry code puts each disposed record
straight back, so the pool keeps its size and every structure (heaps, lease expiry,
ended leases, metrics, the WAL) is exercised for the whole run. Every minute prints the
cycles, the cycle p50/p99 and the daemon's RSS. At the end: RSS growth after the warm-up
(the first ``--warmup`` minutes) and the p99 trend (last minutes against the first ones
after the warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import ZONES, config, ping, rss_kib  # noqa: E402

BIN = Path(sys.executable).parent / "nextcall"


async def load(sock: str, clients: int, seconds: float, minute: list[list[float]]) -> None:
    stop = time.perf_counter() + seconds

    async def one(k: int) -> None:
        r, w = await asyncio.open_unix_connection(sock, limit=1 << 22)
        i = 0
        while time.perf_counter() < stop:
            i += 1
            t0 = time.perf_counter()
            w.write(b'{"id":%d,"op":"next","agent":"s%d","campaigns":["t"]}\n' % (i, k))
            msg = orjson.loads(await r.readline())
            leases = msg.get("leases", [])
            for lz in leases:
                w.write(b'{"id":0,"op":"dispose","lease":"%s","code":"NA0"}\n'
                        % lz["token"].encode())
                await r.readline()
            if leases:
                minute[-1].append(time.perf_counter() - t0)
        w.close()
    await asyncio.gather(*(one(k) for k in range(clients)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--warmup", type=float, default=5)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    cfg = config(tmp, tmp / "soak.sqlite")
    sock = str(tmp / "startup.sock")
    log = (tmp / "daemon.log").open("wb")
    p = subprocess.Popen([str(BIN), "--config", str(cfg), "serve"], stdout=log, stderr=log)
    try:
        while not ping(sock):
            time.sleep(0.05)
        from nextcall.client import Client
        with Client(sock, timeout=120) as c:
            for k in range(0, a.records, 500):
                c.call("records.import", campaign="t", list="l", records=[
                    {"id": f"s{i}", "phones": [f"+3161{i % 10 ** 7:07d}"],
                     "timezone": ZONES[i % len(ZONES)], "priority": i % 4,
                     "data": {"name": "x"}} for i in range(k, min(k + 500, a.records))])
        minutes: list[list[float]] = []
        rows = []

        async def run() -> None:
            for m in range(int(a.minutes)):
                minutes.append([])
                t0 = time.perf_counter()
                await load(sock, a.clients, 60.0, minutes)
                lat = sorted(minutes[-1])
                row = {"minute": m + 1, "cycles_per_s": round(len(lat) /
                                                              (time.perf_counter() - t0)),
                       "p50_ms": round(lat[len(lat) // 2] * 1000, 2) if lat else None,
                       "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2) if lat else None,
                       "rss_mib": round(rss_kib(p.pid) / 1024, 1),
                       "load": round(os.getloadavg()[0], 2)}
                minutes[-1] = []  # keep only counts in memory
                rows.append(row)
                print(json.dumps(row), flush=True)
        try:
            import uvloop
            uvloop.run(run())
        except ImportError:
            asyncio.run(run())
        warm = int(a.warmup)
        after = [r for r in rows if r["minute"] > warm]
        if len(after) >= 2:
            first, last = after[0], after[-1]
            k = max(1, len(after) // 5)
            p99_first = sorted(r["p99_ms"] for r in after[:k])[k // 2]
            p99_last = sorted(r["p99_ms"] for r in after[-k:])[k // 2]
            print(f"\nRSS after warm-up: {first['rss_mib']} MiB at minute {first['minute']}, "
                  f"{last['rss_mib']} MiB at minute {last['minute']} "
                  f"({last['rss_mib'] - first['rss_mib']:+.1f} MiB); p99 {p99_first} ms "
                  f"-> {p99_last} ms (median of the first and last {k} minutes)")
    finally:
        p.terminate()
        p.wait(60)


if __name__ == "__main__":
    main()

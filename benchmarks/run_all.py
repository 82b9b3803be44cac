"""Run every benchmark in one go and print a markdown table (docs/performance.md).

    .venv/bin/python benchmarks/run_all.py [--seconds 5] [--records 100000] [--rebuild 1000000]

Starts the daemon (SQLite, default settings) on a temporary directory with ``--records``
records, drives it with 1 and 20 clients, then the PostgreSQL SKIP LOCKED queue and the
Redis sorted set with the same driver, then the 1M-record rebuild. PostgreSQL and Redis
are skipped (with a note) when not reachable.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
BIN = Path(PY).parent / "nextcall"
PG_DSN = os.environ.get("NEXTCALL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("NEXTCALL_BENCH_REDIS", "redis://127.0.0.1:6379/15")


def daemon_config(tmp: Path, synchronous: str) -> Path:
    cfg = tmp / "bench.toml"
    cfg.write_text(textwrap.dedent(f"""
        [daemon]
        socket = "{tmp}/bench.sock"
        database = "sqlite+aiosqlite:///{tmp}/bench.sqlite"
        sqlite_synchronous = "{synchronous}"
        log_level = "warning"
        [resultsets.s]
        [[resultsets.s.codes]]
        code = "NA0"
        action = "retry"
        delay_s = 0
        [campaigns.t]
        resultset = "s"
        max_attempts = 1000
        legal_window = "00:00-24:00"
        [campaigns.t.window]
        mon = ["00:00-24:00"]
        tue = ["00:00-24:00"]
        wed = ["00:00-24:00"]
        thu = ["00:00-24:00"]
        fri = ["00:00-24:00"]
        sat = ["00:00-24:00"]
        sun = ["00:00-24:00"]
    """))
    return cfg


def load(target: str, address: str, clients: int, seconds: float,
         setup: int = 0) -> dict[str, object]:
    cmd = [PY, str(HERE / "load.py"), "--target", target, "--address", address,
           "--clients", str(clients), "--seconds", str(seconds)]
    if setup:
        cmd += ["--setup-records", str(setup)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"target": target, "clients": clients, "error": out.stderr.strip()[-300:]}
    return json.loads(out.stdout)


def bench_nextcall(records: int, seconds: float, synchronous: str) -> list[dict[str, object]]:
    sys.path.insert(0, str(HERE.parent / "daemon"))
    from nextcall.client import Client
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cfg = daemon_config(tmp, synchronous)
        p = subprocess.Popen([str(BIN), "--config", str(cfg), "serve"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            sock = str(tmp / "bench.sock")
            for _ in range(200):
                try:
                    with Client(sock, timeout=5) as c:
                        c.call("ping")
                    break
                except OSError:
                    time.sleep(0.05)
            with Client(sock, timeout=120) as c:
                for k in range(0, records, 500):
                    c.call("records.import", campaign="t", list="l", records=[
                        {"id": f"b{i}", "phones": [f"+3161{i % 10**7:07d}"],
                         "timezone": "UTC", "priority": i % 4, "data": {"name": "x"}}
                        for i in range(k, min(k + 500, records))])
            for clients in (1, 20):
                r = load("nextcall", sock, clients, seconds)
                r["target"] = f"nextcall (SQLite, synchronous={synchronous})"
                results.append(r)
        finally:
            p.terminate()
            p.wait(30)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--rebuild", type=int, default=1_000_000)
    a = ap.parse_args()
    rows: list[dict[str, object]] = []
    for sync in ("normal", "full"):
        rows += bench_nextcall(a.records, a.seconds, sync)
    for clients in (1, 20):
        r = load("pg", PG_DSN, clients, a.seconds, setup=a.records if clients == 1 else 0)
        r["target"] = "PostgreSQL SKIP LOCKED queue (fsync)"
        rows.append(r)
    for clients in (1, 20):
        r = load("redis", REDIS_URL, clients, a.seconds, setup=a.records if clients == 1 else 0)
        r["target"] = "Redis sorted set (no persistence)"
        rows.append(r)
    print("| target | clients | cycles/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['target']} | {r['clients']} | skipped: {r['error'][:80]} | | |")
        else:
            print(f"| {r['target']} | {r['clients']} | {r['cycles_per_s']} | {r['p50_ms']} "
                  f"| {r['p99_ms']} |")
    if a.rebuild:
        out = subprocess.run([PY, str(HERE / "rebuild.py"), "--records", str(a.rebuild)],
                             capture_output=True, text=True)
        print()
        print(f"rebuild of {a.rebuild} records: {out.stdout.strip() or out.stderr[-300:]}")
    (HERE / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

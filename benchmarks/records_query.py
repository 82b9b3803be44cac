"""The ``records`` op on a large campaign: one filtered page, and CSV exports.

    .venv/bin/python benchmarks/records_query.py [--records 1000000] [--runs 5]

A SQLite database with N records in one campaign is made once (plain ``sqlite3`` after
the daemon's own migrations; not measured; cached as ``$TMPDIR/nextcall-records-N-vK``),
then the real daemon (``python -m nextcall.cli serve``) is started on it and a client on
the socket measures, as the median of ``--runs``:

- one page of 100 for each main filter (last code, state + reason, list, owner, a time
  range alone), on the first page and on a page deep into the campaign (a cursor near the
  last record);
- ``nextcall records --csv`` of one code's records and of the whole campaign (every page
  of 1000, written to a file), once each.

Records: 10 % callbacks (50 owners), 20 % closed (four reasons), the rest ready; 70 %
disposed before, their last code one of 8, the instant within the last 30 days; 4 lists.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "daemon"))
DATA_VERSION = 1
CODES = [f"C{k}" for k in range(8)]
REASONS = ["final", "until_reload", "dnc", "exhausted"]


def config(tmp: Path, db: Path) -> Path:
    codes = "".join(f'[[resultsets.s.codes]]\ncode = "{c}"\naction = "retry"\n'
                    for c in CODES)
    cfg = tmp / "records.toml"
    cfg.write_text(textwrap.dedent(f"""
        [daemon]
        socket = "{tmp}/records.sock"
        database = "sqlite+aiosqlite:///{db}"
        log_level = "warning"
        [metrics]
        enabled = false
        [campaigns.t]
        resultset = "s"
        [campaigns.t.window]
        mon = ["00:00-24:00"]
        [resultsets.s]
    """) + codes)
    return cfg


def _row(i: int, now: float) -> tuple[Any, ...]:
    state, reason, owner = "ready", None, None
    if i % 10 == 0:
        state, owner = "callback", f"agent{i % 50}"
    elif i % 5 == 1:
        state, reason = "closed", REASONS[i % 4]
    disposed = i % 10 < 7
    return (i, f"rec-{i:08d}", "t", f"list-{i % 4}", f'[["+3161{i % 10**7:07d}","active"]]',
            "Europe/Amsterdam", 0, f'{{"name":"Ann de Vries","n":{i}}}', state, reason,
            now - 10, 1 if disposed else 0, owner, None, 0, 0, None, now, now,
            CODES[(i * 7 // 10) % 8] if disposed else None,
            now - (i * 37) % (30 * 86400) if disposed else None,
            f"agent{i % 50}" if disposed else None)


def make_db(path: Path, n: int) -> None:
    import asyncio

    from nextcall.storage.sql import SqlStore
    from nextcall.storage.statements import RECORD_COLS

    async def migrate() -> None:
        s = SqlStore(f"sqlite+aiosqlite:///{path}")
        await s.open()
        await s.migrate()
        await s.close()
    asyncio.run(migrate())
    cols = (*RECORD_COLS, "last_code", "last_at", "last_agent")
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous=OFF")
    now = time.time()
    con.executemany(f"INSERT INTO records ({', '.join(cols)}) "
                    f"VALUES ({', '.join('?' * len(cols))})",
                    (_row(i, now) for i in range(1, n + 1)))
    con.commit()
    con.execute("ANALYZE")
    con.close()


def _median_s(fn: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 4)


def measure(sock: str, n: int, runs: int, tmp: Path) -> dict[str, Any]:
    from nextcall.cli.listing import export_pages
    from nextcall.client import Client
    from nextcall.ops.listing import RecordsReq, fingerprint, make_cursor
    now = time.time()
    filters: dict[str, dict[str, Any]] = {
        "code": {"code": "C3"}, "state+reason": {"state": "closed", "reason": "dnc"},
        "list": {"list": "list-2"}, "owner": {"owner": "agent10"},
        "since+until": {"since": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                               time.gmtime(now - 86400)),
                        "until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))},
    }
    out: dict[str, Any] = {"records": n, "page_s": {}, "deep_page_s": {}}
    with Client(sock).connect() as c:
        for name, f in filters.items():
            found = c.call("records", campaign="t", limit=100, **f)
            out["page_s"][name] = _median_s(
                lambda f=f: c.call("records", campaign="t", limit=100, **f), runs)
            out.setdefault("page_rows", {})[name] = found["count"]
            deep = make_cursor(n - n // 20, fingerprint(RecordsReq.model_validate(
                {"campaign": "t", **f})))
            out["deep_page_s"][name] = _median_s(
                lambda f=f, deep=deep: c.call("records", campaign="t", limit=100,
                                              cursor=deep, **f), runs)
        for name, f in (("csv_one_code_s", {"code": "C3"}), ("csv_all_s", {})):
            t0 = time.perf_counter()
            with open(tmp / "export.csv", "w", newline="", encoding="utf-8") as file:
                rows = export_pages(c, file, {"campaign": "t", **f})
            out[name] = round(time.perf_counter() - t0, 2)
            out[name.replace("_s", "_rows")] = rows
            out[name.replace("_s", "_mib")] = round(
                (tmp / "export.csv").stat().st_size / 2**20, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    db = Path(tempfile.gettempdir()) / f"nextcall-records-{args.records}-v{DATA_VERSION}"
    if not db.exists():
        make_db(db.with_suffix(".tmp"), args.records)
        db.with_suffix(".tmp").rename(db)
    cfg = config(tmp, db)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "daemon")}
    proc = subprocess.Popen([sys.executable, "-m", "nextcall.cli", "--config", str(cfg),
                             "serve"], env=env)
    try:
        sock = str(tmp / "records.sock")
        from nextcall.client import Client
        for _ in range(600):
            try:
                with Client(sock).connect() as c:
                    c.call("ping")
                break
            except OSError:
                time.sleep(0.1)
        print(json.dumps(measure(sock, args.records, args.runs, tmp), indent=2))
    finally:
        proc.terminate()
        proc.wait(60)


if __name__ == "__main__":
    main()

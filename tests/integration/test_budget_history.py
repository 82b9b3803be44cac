"""The lease history attempt budgets are rebuilt from (``Store.attempts_since``), on
SQLite and PostgreSQL: exactly the leases issued since the instant asked for, oldest
first, found by bisecting lease numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from nextcall.storage import sql as S
from nextcall.storage import statements as ST


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/store.sqlite"
    url: str = request.getfixturevalue("pg_url")
    return url


async def test_attempts_since_reads_the_leases_of_the_window(db_url: str) -> None:
    store = S.SqlStore(db_url)
    await store.open()
    await store.migrate()
    try:
        assert await store.attempts_since(0.0) == []
        # 200 leases an hour apart, lid k issued at 3600 k (one stepped back a little)
        issued = {k: 3600.0 * k for k in range(1, 201)}
        issued[150] = 3600.0 * 149 - 10
        await store.write_ops([(ST.INS_LEASE, (k, "s", k % 7 + 1, "a", 0, at, at + 60,
                                                f"+3161234{k % 3:04d}", 0, "pool",
                                                *(None,) * 8))
                               for k, at in issued.items()])
        since = 3600.0 * 140
        got = await store.attempts_since(since)
        want = sorted(((k % 7 + 1, f"+3161234{k % 3:04d}", at) for k, at in issued.items()
                       if at >= since), key=lambda t: t[2])
        assert got == want
        assert len(await store.attempts_since(0.0)) == 200
        assert await store.attempts_since(3600.0 * 201) == []
    finally:
        await store.close()

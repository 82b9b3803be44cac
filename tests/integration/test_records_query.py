"""The ``records`` op's reads on SQLite and PostgreSQL: a disposition keeps the record's
last result, the filters agree with the memory store's, pages come from an index in rid
order, and migration 0006 fills the last result of records disposed before it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from nextcall.core.changes import HistoryAppended, RecordSaved
from nextcall.storage import listing
from nextcall.storage import sql as S
from nextcall.storage import statements as ST
from nextcall.storage.memory import MemoryStore
from nextcall.storage.prefetch import HEAD_REVISION
from nextcall.storage.query import RecordQuery


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/store.sqlite"
    url: str = request.getfixturevalue("pg_url")
    return url


def _row(rid: int, **kw: Any) -> tuple[Any, ...]:
    row = {"rid": rid, "id": f"x{rid}", "campaign": "t" if rid % 5 else "u",
           "list": "a" if rid % 2 else "b", "phones": '[["+31612340000","active"]]',
           "timezone": "UTC", "priority": 0, "data": "{}", "state": "ready",
           "reason": None, "due_at": 0.0, "attempts": 0, "owner": None, "team": None,
           "best_cp": 0, "phone_idx": 0, "callback": None, "imported_at": 1.0,
           "updated_at": 1.0}
    row.update(kw)
    return tuple(row[c] for c in ST.RECORD_COLS)


def _disposed(rid: int, code: str, at: float, agent: str, state: str = "closed",
              reason: str | None = "final", owner: str | None = None,
              lid: int | None = 1) -> list[Any]:
    hist = HistoryAppended(rid, lid, at, agent, "t", code, None, None, None, None, None,
                           state, reason, at, 1)
    return [hist, RecordSaved(rid, state, reason, at, 1, owner, None, 0, 0, None, at)]


#: rids 1..40; dispositions on a few, one of them only reopened (no lease: no result)
CHANGES = (_disposed(3, "SALE", 100.0, "ann") + _disposed(4, "NA", 200.0, "bob", "ready",
                                                           None)
           + _disposed(7, "SALE", 300.0, "bob") + _disposed(8, "CB", 400.0, "ann",
                                                            "callback", None, "ann")
           + _disposed(9, "@reopen", 500.0, "admin:0", "ready", None, lid=None))

QUERIES = [
    RecordQuery("t"), RecordQuery("t", codes=("SALE",)), RecordQuery("t", state="closed"),
    RecordQuery("t", state="ready", list="a"), RecordQuery("t", owner="ann"),
    RecordQuery("t", agent="bob"), RecordQuery("t", since=150.0, until=350.0),
    RecordQuery("t", codes=("SALE",), reason="final", since=200.0),
    RecordQuery("t", after=20, limit=5), RecordQuery("t", only=(3, 4, 5), without=(4,)),
    RecordQuery("u", state="ready"), RecordQuery("t", state="callback", due_from=300.0),
    RecordQuery("t", codes=("SALE", "CB", "NA")), RecordQuery("t", codes=("SALE", "CB"),
                                                               limit=2),
    RecordQuery("t", codes=("CB", "SALE"), after=3), RecordQuery("t", only=()),
]


async def _memory() -> MemoryStore:
    mem = MemoryStore()
    for rid in range(1, 41):
        mem._record_imported(mem_import(rid))
    await mem.write(CHANGES)
    return mem


def mem_import(rid: int) -> Any:
    from nextcall.core.changes import RecordImported
    v = dict(zip(ST.RECORD_COLS, _row(rid), strict=True))
    return RecordImported(v["rid"], v["id"], v["campaign"], v["list"],
                          [["+31612340000", "active"]], v["timezone"], v["priority"],
                          v["data"], v["state"], v["reason"], v["due_at"], v["attempts"],
                          v["owner"], v["team"], v["best_cp"], v["phone_idx"], None, 1.0)


async def test_the_sql_stores_find_what_the_memory_store_finds(db_url: str) -> None:
    mem = await _memory()
    store = S.SqlStore(db_url)
    await store.open()
    await store.migrate()
    try:
        await store.write_ops([(ST.INS_RECORD, _row(rid)) for rid in range(1, 41)])
        await store.write(CHANGES)
        (sale,) = [r for r in await store.records_page(RecordQuery("t", codes=("NA",)))]
        assert (sale["rid"], sale["last_at"], sale["last_agent"]) == (4, 200.0, "bob")
        reopened = (await store.get_record("x9"))["record"]  # type: ignore[index]
        assert reopened["last_code"] is None, "a reopen is not a result"
        for q in QUERIES:
            got = await store.records_page(q)
            assert [r["rid"] for r in got] == [r["rid"] for r in await mem.records_page(q)], q
            assert got == sorted(got, key=lambda r: r["rid"]) and len(got) <= q.limit
        assert [r["rid"] for r in await store.records_page(RecordQuery("t", codes=("SALE",)))] \
            == [3, 7]
    finally:
        await store.close()


def _plan(conn: sa.Connection, q: RecordQuery) -> str:
    stmt = listing.page_query(q).compile(dialect=conn.dialect,
                                         compile_kwargs={"literal_binds": True})
    return " | ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {stmt}"))


async def test_sqlite_pages_come_from_an_index_in_rid_order(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/plan.sqlite"
    store = S.SqlStore(url)
    await store.open()
    await store.migrate()
    await store.close()
    eng = sa.create_engine(f"sqlite:///{tmp_path}/plan.sqlite")
    with eng.connect() as conn:
        expected = {
            "ix_records_last_code": RecordQuery("t", codes=("SALE",), after=10),
            "ix_records_campaign_state": RecordQuery("t", state="closed", reason="final"),
            "ix_records_list": RecordQuery("t", list="a"),
            "ix_records_owner": RecordQuery("t", owner="ann"),
            "ix_records_campaign": RecordQuery("t", since=1.0, until=2.0),
        }
        for index, q in expected.items():
            plan = _plan(conn, q)
            assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" \
                in plan, (index, plan)
            assert "TEMP B-TREE" not in plan, plan  # no sort: the index gives rid order
    eng.dispose()


@pytest.mark.postgres
async def test_postgresql_pages_need_no_sort(pg_url: str) -> None:
    import asyncpg
    from sqlalchemy.dialects import postgresql
    store = S.SqlStore(pg_url)
    await store.open()
    await store.migrate()
    await store.close()
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("SET enable_seqscan = off")  # an empty table: force the choice
        for q in (RecordQuery("t", codes=("SALE",)), RecordQuery("t", state="closed"),
                  RecordQuery("t", list="a"), RecordQuery("t", owner="ann")):
            stmt = listing.page_query(q).compile(
                dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
            plan = " ".join(r[0] for r in await conn.fetch(f"EXPLAIN {stmt}"))
            assert "Index" in plan and "Sort" not in plan, plan
    finally:
        await conn.close()


async def test_migration_0006_fills_the_last_result_from_the_history(
        tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config
    path = tmp_path / "old.sqlite"
    eng = sa.create_engine(f"sqlite:///{path}")
    with eng.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(S.MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
        cols = list(ST.RECORD_COLS)
        conn.exec_driver_sql(
            f"INSERT INTO records ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            _row(1, attempts=2))
        for hid, (lid, code, at) in enumerate([(1, "NA", 10.0), (2, "SALE", 20.0),
                                               (None, "@reopen", 30.0)], 1):
            conn.exec_driver_sql(
                "INSERT INTO history (hid, rid, lid, at, agent, campaign, code, state, "
                "attempts) VALUES (?, 1, ?, ?, 'ann', 't', ?, 'ready', 1)",
                (hid, lid, at, code))
    eng.dispose()
    store = S.SqlStore(f"sqlite+aiosqlite:///{path}")
    await store.open()
    try:
        assert await store.migrate() == [f"0005 -> {HEAD_REVISION}"]
        (row,) = await store.records_page(RecordQuery("t", codes=("SALE",)))
        assert (row["last_at"], row["last_agent"]) == (20.0, "ann")
    finally:
        await store.close()

"""The storage contract on SQLite and PostgreSQL: migrations, group commit, the rebuild
snapshot, and a daemon restart that restores records, leases and logins."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from nextcall.app import Daemon
from nextcall.config import load
from nextcall.core.changes import HistoryAppended, LeaseEnded
from nextcall.core.errors import StorageError
from nextcall.storage import sql as S
from nextcall.storage import statements as ST
from nextcall.storage.prefetch import HEAD_REVISION
from nextcall.storage.writer import SqliteWriter, _one_statement
from tests.conftest import AsyncClient, make_records, write_config


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/store.sqlite"
    url: str = request.getfixturevalue("pg_url")
    return url


def _record_row(rid: int, **kw: Any) -> dict[str, Any]:
    row = {"rid": rid, "id": f"x{rid}", "campaign": "t", "list": "l",
           "phones": '[["+31612340000","active"]]', "timezone": "UTC", "priority": 0,
           "data": "{}", "state": "ready", "reason": None, "due_at": 0.0, "attempts": 0,
           "owner": None, "team": None, "best_cp": 0, "phone_idx": 0, "callback": None,
           "imported_at": 1.0, "updated_at": 1.0}
    row.update(kw)
    return row


def _insert(rid: int, **kw: Any) -> ST.Op:
    row = _record_row(rid, **kw)
    return (ST.INS_RECORD, tuple(row[c] for c in ST.RECORD_COLS))


def test_the_fast_start_knows_the_newest_migration() -> None:
    """``nextcall serve`` reads early (and skips Alembic) only at this revision."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    cfg = Config()
    cfg.set_main_option("script_location", str(S.MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


async def test_migrate_is_idempotent(db_url: str) -> None:
    store = S.SqlStore(db_url)
    await store.open()
    try:
        first = await store.migrate()
        second = await store.migrate()
    finally:
        await store.close()
    assert first == ["empty -> 0010"]
    assert second == []


async def test_group_commit_and_snapshot(db_url: str) -> None:
    store = S.SqlStore(db_url)
    await store.open()
    await store.migrate()
    try:
        # many concurrent writers: all land, in one or more batches
        batches: list[int] = []
        store.commit_observer = lambda dt, n: batches.append(n)
        await asyncio.gather(*(store.write_ops([_insert(i)]) for i in range(1, 201)))
        assert sum(batches) == 200
        assert len(batches) < 200, "concurrent writes must share commits"
        await store.write_ops([
            (ST.UPD_RECORD, ("closed", "final", 0.0, 1, None, None, 4, 0, None, 2.0, 5)),
            (ST.INS_LEASE, (1, "s", 7, "a", 0, 1.0, time.time() + 60, "+31612340000", 0,
                            "pool", *(None,) * 8)),
            (ST.INS_LEASE, (2, "s", 8, "a", 0, 1.0, 2.0, "+31612340000", 0, "pool",
                            *(None,) * 8)),
        ])
        snap = await store.snapshot()
        ready = sorted(int(r) for g in snap.groups for r in g.rid)
        assert ready == [i for i in range(1, 201) if i != 5]
        assert snap.others == [] and snap.phones == {}
        assert {int(p) for g in snap.groups for p in g.phone} == {31612340000}
        assert snap.closed_counts == [("t", "final", 1)]
        # every lease not ended; the rebuild drops those expired by its own clock
        assert sorted(lz[0] for lz in snap.leases) == [1, 2]
        assert snap.max_rid == 200 and snap.max_lid == 2
        assert await store.existing_ids(["x5", "x6", "nope"]) == {
            "x5": (5, "closed", "t"), "x6": (6, "ready", "t")}
        row = await store.get_record("x7")
        assert row is not None and row["leases"][0]["lid"] == 1
        assert (await store.get_lease(2))["expires_at"] == 2.0
        assert await store.get_lease(99) is None
    finally:
        await store.close()


async def test_failed_commit_fails_callers_and_breaks_store(db_url: str) -> None:
    failures: list[BaseException] = []
    store = S.SqlStore(db_url, on_failure=failures.append)
    await store.open()
    await store.migrate()
    try:
        await store.write_ops([_insert(1)])
        with pytest.raises(StorageError):
            # duplicate primary key: the whole batch fails and nothing of it lands
            await store.write_ops([_insert(2), _insert(1)])
        assert failures, "the daemon must be told to stop"
        with pytest.raises(StorageError):
            await store.write_ops([_insert(3)])
    finally:
        await store.close()
    store = S.SqlStore(db_url)
    await store.open()
    try:
        assert await store.existing_ids(["x1", "x2", "x3"]) == {"x1": (1, "ready", "t")}
    finally:
        await store.close()


async def test_open_reports_bad_database(tmp_path: Path) -> None:
    store = S.SqlStore("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    with pytest.raises(StorageError) as exc:
        await store.open()
    assert "cannot open database" in exc.value.message


async def test_daemon_restart_restores_state(db_url: str, tmp_path: Path) -> None:
    path = write_config(tmp_path)
    text = path.read_text().replace(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite", db_url)
    path.write_text(text)
    settings = load(path)
    d = Daemon(settings)
    await d.start()
    c = await AsyncClient.connect(settings.daemon.socket)
    try:
        assert (await c.call("records.import", campaign="t", list="l",
                             records=make_records(5)))["inserted"] == 5
        assert (await c.call("agent.login", agent="a", campaigns=["t"], teams=["x"]))["ok"]
        leases = (await c.call("next", agent="a", count=3))["leases"]
        done = await c.call("dispose", lease=leases[0]["token"], code="SALE", revenue=12.5)
        assert done["state"] == "closed"
        held = leases[1]["token"]
    finally:
        await c.close()
        await d.stop()
    d = Daemon(settings)
    await d.start()
    c = await AsyncClient.connect(settings.daemon.socket)
    try:
        st = await c.call("stats", campaign="t")
        assert st["campaigns"]["t"]["leased"] == 2
        assert st["campaigns"]["t"]["closed"] == {"final": 1}
        assert st["agents_logged_in"] == 1
        # the lease taken before the restart is still the holder's to dispose
        again = await c.call("dispose", lease=held, code="NA")
        assert again["ok"] and again["attempts"] == 1, again
        # an identical retry of the pre-restart disposition is answered from the database
        dup = await c.call("dispose", lease=leases[0]["token"], code="SALE", revenue=12.5)
        assert dup["ok"] and dup["duplicate"] is True and dup["state"] == "closed"
        got = await c.call("record.get", record=leases[0]["record"]["id"])
        assert [h["code"] for h in got["record"]["history"]] == ["SALE"]
        assert got["record"]["history"][0]["revenue"] == 12.5
        rest = (await c.call("next", agent="a", count=10))["leases"]
        ids = {lz["record"]["id"] for lz in rest}
        assert leases[2]["record"]["id"] not in ids, "a restored lease must not be re-issued"
        assert len(ids) == 2
    finally:
        await c.close()
        await d.stop()


def _entry(rid: int, at: float, list_name: str | None) -> HistoryAppended:
    return HistoryAppended(rid, rid, at, "ann", "t", "NA", None, None, None, None, None,
                           "ready", None, 0.0, 1, list=list_name)


async def test_history_rows_keep_their_day_and_their_records_list(db_url: str) -> None:
    """A history row keeps the UTC day of its instant and the list its record has when
    the row is written, or the list its change names (a roll's new list). A record and
    its history in one batch: PostgreSQL's one statement would read the record as it was
    before, so that batch takes the transaction path."""
    store = S.SqlStore(db_url)
    await store.open()
    await store.migrate()
    try:
        await store.write_ops([_insert(1), _insert(2)])
        await store.write([_entry(1, 3 * 86400 - 0.5, None), _entry(2, 3 * 86400, "rolled")])
        batch = [_insert(3, list="m"), *ST.ops_of([_entry(3, 5.0, None)])]
        assert _one_statement(batch, []) is None
        assert _one_statement(ST.ops_of([_entry(3, 5.0, None)]), []) is not None
        await store.write_ops(batch)
        assert store.reader is not None
        async with store.reader.connect() as conn:
            got = (await conn.execute(sa.text(
                'SELECT rid, day, "list" FROM history ORDER BY rid'))).all()
    finally:
        await store.close()
    assert [tuple(r) for r in got] == [(1, 2, "l"), (2, 3, "rolled"), (3, 0, "m")]


async def test_batches_land_whole_and_read_back_the_records(db_url: str) -> None:
    """A batch of leases, history and record updates lands in full and reads back the
    leased records' stored fields; a batch touching one row twice (the set-based form of
    one PostgreSQL statement cannot) takes the transaction path and lands too."""
    store = S.SqlStore(db_url)
    await store.open()
    await store.migrate()
    try:
        await store.write_ops([_insert(i, team="red" if i == 1 else None) for i in (1, 2, 3)])

        def lease(lid: int, rid: int) -> ST.Op:
            return (ST.INS_LEASE, (lid, "s", rid, "a", 0, 1.0, 2.0, "+31612340000", 0, "pool",
                                   *(None,) * 8))

        upd3 = (ST.UPD_RECORD, ("callback", None, 9.0, 1, "ann", "blue", 4, 0, None, 3.0, 3))
        hist3 = (ST.INS_HISTORY, (3, None, 3.0, "ann", "t", "CB", None, None, None, None, None,
                                  "callback", None, 9.0, 1, None, None, None, 0, None))
        first = [store.ops_future([lease(1, 1)], fetch=[1]),
                 store.ops_future([lease(2, 2)], fetch=[2]),
                 store.ops_future([hist3, upd3])]
        got = await asyncio.gather(*first)
        assert got[0][1] == ("x1", "l", "{}", "red") and got[1][2] == ("x2", "l", "{}", None)
        await store.write([LeaseEnded(1, 5.0, "released")])
        # the same record updated twice, and fetched, in one batch
        again = [store.ops_future([(ST.UPD_RECORD, ("ready", None, 1.0, 2, None, "green", 4, 0,
                                                None, 4.0, 1))]),
                 store.ops_future([(ST.UPD_RECORD, ("ready", None, 2.0, 3, None, "green", 4, 0,
                                                None, 5.0, 1)), lease(3, 1)], fetch=[1])]
        got = await asyncio.gather(*again)
        assert got[1][1] == ("x1", "l", "{}", "green")
        row = await store.get_record("x1")
        assert row is not None
        assert (row["record"]["attempts"], row["record"]["due_at"]) == (3, 2.0)
        assert [(x["lid"], x["end"]) for x in row["leases"]] == [(1, "released"), (3, None)]
        three = await store.get_record("x3")
        assert three is not None and three["record"]["team"] == "blue"
        assert [h["code"] for h in three["history"]] == ["CB"]
    finally:
        await store.close()


async def test_the_writer_rewinds_a_growing_log(tmp_path: Path) -> None:
    """Under continuous writes a passive checkpoint never lets SQLite rewind its log; the
    writer truncates it between two commits when the checkpointer asks."""
    store = S.SqlStore(f"sqlite+aiosqlite:///{tmp_path}/wal.sqlite")
    await store.open()
    await store.migrate()
    try:
        await store.write_ops([_insert(i) for i in range(1, 2001)])
        wal = Path(f"{tmp_path}/wal.sqlite-wal")
        assert wal.stat().st_size > 100_000
        writer = store.writer
        assert isinstance(writer, SqliteWriter)
        writer.reset_wal()
        # the next commit that goes through the writer thread rewinds the log after it
        store.commit_now_when = None
        await store.write_ops([_insert(5000)])
        for _ in range(200):
            if writer.resets:
                break
            await asyncio.sleep(0.01)
        # rewound: at most the frames of the one small commit after the reset remain (the
        # reset may run after the big commit's iteration, before the small one)
        assert writer.resets == 1 and wal.stat().st_size < 100_000
        assert await store.existing_ids(["x5000", "x1"]) == {"x5000": (5000, "ready", "t"),
                                                            "x1": (1, "ready", "t")}
    finally:
        await store.close()


async def test_quotes_are_stored_and_read_back_at_start(db_url: str) -> None:
    """A record's quote (expected-value scoring) is written by ``QuoteSaved`` and read by
    the start-up read: ready records' quotes through the partial index, callback records'
    with their rows; a record without one has none, and ``None`` clears it."""
    from nextcall.core.changes import QuoteSaved
    from nextcall.core.records import Quote
    store = S.SqlStore(db_url)
    await store.open()
    await store.migrate()
    try:
        cb = '{"at": 5.0, "timezone": "UTC", "scope": "anyone"}'
        await store.write_ops([_insert(1), _insert(2), _insert(3),
                               _insert(4, state="callback", callback=cb, due_at=5.0)])
        await store.write([QuoteSaved(1, 2500.0, 40.0), QuoteSaved(3, 10.0, None),
                           QuoteSaved(4, 99.5, 100.0)])
        await store.write([QuoteSaved(3, None, None)])
        snap = await store.snapshot()
        assert snap.quotes == {1: Quote(2500.0, 40.0)}
        assert [(r.rid, r.quote) for r in snap.others] == [(4, Quote(99.5, 100.0))]
        row = await store.get_record("x1")
        assert row is not None
        assert (row["record"]["quote_value"], row["record"]["quote_chance"]) == (2500.0, 40.0)
    finally:
        await store.close()

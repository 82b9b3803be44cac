"""Migration 0010 on a history written before it (SQLite and PostgreSQL): every row gets
its UTC day and its record's list, and the report over the migrated database is the
Python recomputation's and the one over the same rows written by today's statements."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from nextcall.core.reports import tally
from nextcall.storage import sql as S
from nextcall.storage import statements as ST
from tests.integration.test_report_sql import QUERIES, _history, _norm, _query, _store

#: the history's columns at revision 0009
OLD_COLS = ("hid", "rid", "lid", "at", "agent", "campaign", "code", "phone", "note",
            "revenue", "fields", "callback", "state", "reason", "due_at", "attempts",
            "prior", "amends", "amend_reason")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/old.sqlite"
    url: str = request.getfixturevalue("pg_url")
    return url


def _upgrade(conn: sa.Connection, revision: str) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(S.MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


async def _database_at_0009(url: str, rows: list[dict[str, Any]], lists: dict[int, str]
                            ) -> None:
    """The records and history rows as the daemon wrote them at revision 0009."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_upgrade, "0009")
            recs = [{"rid": rid, "id": f"r{rid}", "campaign": "sales", "list": lst,
                     "phones": "[]", "timezone": "UTC", "priority": 0, "data": "{}",
                     "state": "ready", "reason": None, "due_at": 0.0, "attempts": 0,
                     "owner": None, "team": None, "best_cp": 0, "phone_idx": 0,
                     "callback": None, "imported_at": 1.0, "updated_at": 1.0}
                    for rid, lst in lists.items()]
            await conn.execute(sa.text(
                f"INSERT INTO records ({', '.join(ST.RECORD_COLS)}) VALUES "
                f"({', '.join(':' + c for c in ST.RECORD_COLS)})"), recs)
            hist = [{**{c: None for c in OLD_COLS}, **h, "state": "ready", "due_at": 0.0,
                     "attempts": 1, "fields": json.dumps(h["fields"]) if h["fields"] else None}
                    for h in rows]
            await conn.execute(sa.text(
                f"INSERT INTO history ({', '.join(OLD_COLS)}) VALUES "
                f"({', '.join(':' + c for c in OLD_COLS)})"), hist)
            await conn.commit()
    finally:
        await engine.dispose()


async def test_the_migration_fills_day_and_list_and_reports_stay_the_same(
        db_url: str, tmp_path: Path) -> None:
    rows, lists = _history(900, seed=21)
    await _database_at_0009(db_url, rows, lists)
    store = S.SqlStore(db_url)
    await store.open()
    fresh = await _store(f"sqlite+aiosqlite:///{tmp_path}/fresh.sqlite", rows, lists)
    try:
        assert await store.migrate() == ["0009 -> 0010"]
        async with store.reader.connect() as conn:  # type: ignore[union-attr]
            got = (await conn.execute(sa.text(
                'SELECT hid, rid, at, day, "list" FROM history ORDER BY hid'))).all()
        assert len(got) == len(rows)
        assert all(day == ST.utc_day(at) and lst == lists[rid]
                   for _, rid, at, day, lst in got)
        for first, last, tz in ((date(2026, 3, 27), date(2026, 3, 31), "Europe/Amsterdam"),
                                (date(2026, 1, 1), date(2026, 12, 31), "America/New_York")):
            for group_by, filters in QUERIES:
                q = _query(first, last, tz, group_by, **filters)
                migrated = _norm(await store.report(q))
                assert migrated == _norm(tally(q, rows, lists)), group_by
                assert migrated == _norm(await fresh.report(q)), group_by
    finally:
        await store.close()
        await fresh.close()

"""Shared fixtures: configs written to tmp files, an in-process daemon on a real socket,
and the PostgreSQL URL (skipped with a reason, or required when NEXTCALL_REQUIRE_PG=1)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from nextcall.app import Daemon
from nextcall.config import Settings, load

PG_URL = os.environ.get("NEXTCALL_TEST_PG_URL",
                        "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("NEXTCALL_REQUIRE_PG") == "1"

CODES = textwrap.dedent("""
    [resultsets.std]
    [[resultsets.std.codes]]
    code = "NA"
    action = "retry"
    delay_s = 60
    note = "none"
    [[resultsets.std.codes]]
    code = "NA0"
    action = "retry"
    delay_s = 0
    [[resultsets.std.codes.fields]]
    name = "mood"
    type = "choice"
    choices = ["ok", "bad"]
    [[resultsets.std.codes]]
    code = "CB"
    action = "callback"
    contact_priority = 4
    scope = "personal_then_team"
    [[resultsets.std.codes]]
    code = "CBT"
    action = "callback"
    contact_priority = 6
    scope = "team"
    [[resultsets.std.codes]]
    code = "SALE"
    action = "close"
    revenue = "required"
    [[resultsets.std.codes]]
    code = "NI"
    action = "close"
    note = "required"
    [[resultsets.std.codes]]
    code = "OLD"
    action = "close"
    enabled = false
""")


def write_config(tmp: Path, extra_daemon: str = "", campaigns: str | None = None,
                 auth: str = "") -> Path:
    """A complete config in ``tmp`` with an always-open campaign ``t`` (UTC, 24 h)."""
    camp = campaigns if campaigns is not None else textwrap.dedent("""
        [campaigns.t]
        resultset = "std"
        max_attempts = 3
        grace_s = 60
        legal_window = "00:00-24:00"
        timezone = "UTC"
        [campaigns.t.window]
        mon = ["00:00-24:00"]
        tue = ["00:00-24:00"]
        wed = ["00:00-24:00"]
        thu = ["00:00-24:00"]
        fri = ["00:00-24:00"]
        sat = ["00:00-24:00"]
        sun = ["00:00-24:00"]
    """)
    (tmp / "codes.toml").write_text(CODES)
    (tmp / "camps.toml").write_text(camp)
    main = tmp / "nextcall.toml"
    main.write_text(textwrap.dedent(f"""
        include = ["codes.toml", "camps.toml"]
        [daemon]
        socket = "{tmp}/s.sock"
        database = "sqlite+aiosqlite:///{tmp}/db.sqlite"
        lease_s = 60
        drain_timeout_s = 5
        {extra_daemon}
        [auth]
        {auth}
    """))
    return main


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def settings(config_path: Path) -> Settings:
    return load(config_path)


class AsyncClient:
    """A minimal asyncio client for tests: raw lines in, parsed answers out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.ids = itertools.count(1)

    @classmethod
    async def connect(cls, path: str) -> AsyncClient:
        r, w = await asyncio.open_unix_connection(path, limit=1 << 22)
        return cls(r, w)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self, timeout: float = 10) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        assert line, "connection closed"
        return json.loads(line)

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        rid = next(self.ids)
        await self.send_raw(json.dumps({"id": rid, "op": op, **fields}).encode() + b"\n")
        msg = await self.read(timeout=fields.get("wait", 0) + 10)
        assert msg["id"] == rid, msg
        return msg

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


@pytest.fixture
async def daemon(settings: Settings) -> AsyncIterator[Daemon]:
    d = Daemon(settings)
    await d.start()
    yield d
    await d.stop()


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[AsyncClient]:
    c = await AsyncClient.connect(daemon.settings.daemon.socket)
    yield c
    await c.close()


def wait_until_serving(path: str, timeout_s: float = 30.0) -> None:
    """Block until a daemon answers ``ping`` on ``path`` (subprocess tests)."""
    from nextcall.client import Client, ClientError
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with Client(path, timeout=2) as c:
                c.call("ping")
            return
        except (OSError, ClientError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def make_records(n: int, prefix: str = "r", **extra: Any) -> list[dict[str, Any]]:
    """Import records with valid Dutch mobile numbers."""
    return [{"id": f"{prefix}{i}", "phones": [f"+3161234{i:04d}"], "timezone": "UTC",
             **extra} for i in range(n)]


@pytest.fixture
def records() -> Callable[..., list[dict[str, Any]]]:
    return make_records


async def _pg_reachable(url: str) -> str | None:
    import asyncpg
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    try:
        conn = await asyncio.wait_for(asyncpg.connect(dsn), 5)
    except Exception as exc:  # noqa: BLE001
        return repr(exc)
    await conn.close()
    return None


async def reset_pg(url: str) -> None:
    """Drop nextcall's tables so each test starts from an empty schema."""
    import asyncpg
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute("DROP TABLE IF EXISTS records, leases, history, agents, phone_lists, "
                           "reminders, list_versions, alembic_version, bench_queue CASCADE")
    finally:
        await conn.close()


@pytest.fixture
def pg_url() -> str:
    problem = asyncio.run(_pg_reachable(PG_URL))
    if problem is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (NEXTCALL_REQUIRE_PG=1) but {PG_URL} is not "
                        f"reachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL} ({problem}); set "
                    "NEXTCALL_TEST_PG_URL to run these tests")
    asyncio.run(reset_pg(PG_URL))
    return PG_URL

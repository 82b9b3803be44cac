"""An in-process daemon on the SHIPPED configuration (config/nextcall.toml and every file it
includes), with a tmp socket and database and a clock the test moves.

Used by the seed-scenario, restart and callback tests: they exercise the result-code sets
exactly as shipped, so a change to a file in ``config/`` that breaks a seed's behaviour
fails a test. Time never passes by sleeping: ``Clock`` is the service's clock, and a
restarted daemon gets the same one, so held appointments, retry delays and grace periods
pass in zero real time.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from nextcall.app import Daemon
from nextcall.config import AuthCfg, Settings, load
from tests.conftest import AsyncClient

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "nextcall.toml"


def instant(local: str, tz: str) -> float:
    """POSIX instant of wall time ``local`` (ISO, no offset; first occurrence) in ``tz``."""
    return datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp()


def utc_z(t: float) -> str:
    """``t`` as the daemon writes UTC instants (``2027-06-15T16:00:00Z``)."""
    return datetime.fromtimestamp(t, ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")


class Clock:
    """The service clock: a settable instant."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def set(self, local: str, tz: str) -> float:
        """Move to wall time ``local`` in ``tz``; returns the instant."""
        self.t = instant(local, tz)
        return self.t

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds``; returns the instant."""
        self.t += seconds
        return self.t


def shipped_settings(tmp: Path, config: Path = SHIPPED) -> Settings:
    """The shipped config with the socket and database in ``tmp`` and metrics off."""
    s = load(config)
    daemon = s.daemon.model_copy(update={
        "socket": str(tmp / "nextcall.sock"),
        "database": f"sqlite+aiosqlite:///{tmp}/nextcall.db",
        "drain_timeout_s": 5.0})
    return dataclasses.replace(s, daemon=daemon,
                               metrics=s.metrics.model_copy(update={"enabled": False}))


async def ok(c: AsyncClient, op: str, **fields: Any) -> dict[str, Any]:
    """Call ``op`` and insist on success."""
    ans = await c.call(op, **fields)
    assert ans["ok"] is True, ans
    return ans


def refused(ans: dict[str, Any], code: str, field: str | None = None) -> dict[str, Any]:
    """Assert ``ans`` is a failure with ``code`` naming ``field``; returns the error."""
    assert ans["ok"] is False, ans
    err = ans["error"]
    assert (err["code"], err.get("field")) == (code, field), ans
    assert isinstance(err["message"], str) and err["message"], ans
    return err


class Running:
    """One daemon generation on the shipped config, with an admin client ``c``."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.daemon: Daemon | None = None
        self.c: AsyncClient | None = None
        self._clients: list[AsyncClient] = []

    async def start(self) -> Running:
        """Start a daemon on the database (rebuilding from it) with the shared clock."""
        d = Daemon(self.settings)
        d.service.clock = self.clock
        await d.start()
        self.daemon = d
        self.c = await self.connect()
        return self

    async def connect(self) -> AsyncClient:
        """Another connection with this process's role (admin: the daemon's own uid)."""
        assert self.daemon is not None
        c = await AsyncClient.connect(self.settings.daemon.socket)
        self._clients.append(c)
        return c

    async def agent_connection(self) -> AsyncClient:
        """A connection whose peer has the plain agent role: the role is decided when a
        connection is accepted, so accept this one under an ``[auth]`` that does not trust
        the daemon's own uid."""
        assert self.daemon is not None
        server = self.daemon.server
        saved = server.settings
        server.settings = dataclasses.replace(saved, auth=AuthCfg(trust_own_uid=False))
        try:
            c = await self.connect()
            pong = await ok(c, "ping")
        finally:
            server.settings = saved
        assert pong["role"] == "agent", pong
        return c

    async def stop(self) -> None:
        """Close the clients and stop the daemon (graceful: everything is committed)."""
        for c in self._clients:
            await c.close()
        self._clients.clear()
        if self.daemon is not None:
            await self.daemon.stop()
            self.daemon = None

    async def restart(self) -> Running:
        """Stop, then start a new daemon generation on the same database."""
        await self.stop()
        return await self.start()

    # ---------------------------------------------------------------- helpers
    @property
    def admin(self) -> AsyncClient:
        """The admin connection."""
        assert self.c is not None
        return self.c

    async def import_records(self, campaign: str, list_name: str,
                             records: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        """``records.import`` that must insert or update every row."""
        ans = await ok(self.admin, "records.import", campaign=campaign, list=list_name,
                       records=records, **extra)
        assert ans["rejected"] == [], ans
        return ans

    async def login(self, agent: str, campaigns: list[str], teams: list[str] | None = None
                    ) -> None:
        """``agent.login``."""
        await ok(self.admin, "agent.login", agent=agent, campaigns=campaigns,
                 teams=teams or [])

    async def next(self, agent: str, campaigns: list[str] | None = None,
                   count: int = 1) -> list[dict[str, Any]]:
        """``next`` (no waiting); the leases."""
        fields: dict[str, Any] = {"agent": agent, "count": count}
        if campaigns:
            fields["campaigns"] = campaigns
        leases: list[dict[str, Any]] = (await ok(self.admin, "next", **fields))["leases"]
        return leases

    async def lease(self, agent: str, record: str, campaigns: list[str] | None = None
                    ) -> dict[str, Any]:
        """``next`` for ``agent``, which must hand out ``record``; the lease."""
        leases = await self.next(agent, campaigns)
        assert [lz["record"]["id"] for lz in leases] == [record], leases
        return leases[0]

    async def dispose(self, lease: dict[str, Any], code: str, **fields: Any
                      ) -> dict[str, Any]:
        """``dispose`` that must succeed; the answer."""
        return await ok(self.admin, "dispose", lease=lease["token"], code=code, **fields)

    async def get(self, record: str) -> dict[str, Any]:
        """``record.get``: the record view with its history."""
        rec: dict[str, Any] = (await ok(self.admin, "record.get", record=record))["record"]
        return rec

    async def stats(self, campaign: str) -> dict[str, Any]:
        """``stats`` of one campaign."""
        st: dict[str, Any] = (await ok(self.admin, "stats", campaign=campaign)
                              )["campaigns"][campaign]
        return st

"""The failover client and the CLI against real daemons on their Unix sockets: one path
works as it always did, a list skips a missing socket, and a client whose daemon stops
carries on with the next one, resending its request."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from nextcall.app import Daemon
from nextcall.cli import main as cli_main
from nextcall.client import Client
from nextcall.config import load
from tests.conftest import make_records, write_config


async def test_one_path_still_reaches_the_daemon(daemon: Daemon) -> None:
    sock = str(daemon.settings.daemon.socket)

    def run() -> tuple[str | None, dict[str, Any]]:
        with Client(sock) as c:
            return c.address, c.call("ping")
    address, ans = await asyncio.to_thread(run)
    assert address == sock and ans["role"] == "admin"


async def test_a_list_whose_first_socket_is_missing(daemon: Daemon, tmp_path: Path) -> None:
    sock = str(daemon.settings.daemon.socket)

    def run() -> tuple[str | None, dict[str, Any], int]:
        with Client([str(tmp_path / "missing.sock"), sock]) as c:
            return c.address, c.call("campaigns"), c.failovers
    address, ans, failovers = await asyncio.to_thread(run)
    assert address == sock and ans["campaigns"][0]["name"] == "t" and failovers == 0


async def test_the_cli_takes_a_list_whose_first_socket_is_missing(
        daemon: Daemon, tmp_path: Path) -> None:
    sock = str(daemon.settings.daemon.socket)
    result = await asyncio.to_thread(
        CliRunner().invoke, cli_main, ["--socket", f"{tmp_path / 'missing.sock'},{sock}",
                                       "ping"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "records, you are admin" in result.output
    assert f"at {sock}" in result.output


async def test_a_client_carries_on_with_the_next_daemon_when_its_daemon_stops(
        tmp_path: Path) -> None:
    daemons = []
    for name, n in (("a", 2), ("b", 5)):
        (tmp_path / name).mkdir()
        d = Daemon(load(write_config(tmp_path / name)))
        await d.start()
        daemons.append(d)
        await asyncio.to_thread(_import, str(d.settings.daemon.socket), n)
    a, b = daemons
    c = Client([str(a.settings.daemon.socket), str(b.settings.daemon.socket)])
    try:
        assert (await asyncio.to_thread(c.call, "ping"))["records"] == 2
        await a.stop()
        ans = await asyncio.to_thread(c.call, "agent.login", agent="alice", campaigns=["t"])
        assert ans["agent"] == "alice"
        assert c.address == str(b.settings.daemon.socket) and c.failovers == 1
        assert (await asyncio.to_thread(c.call, "ping"))["records"] == 5
    finally:
        c.close()
        await b.stop()


def _import(sock: str, n: int) -> None:
    with Client(sock) as c:
        c.call("records.import", campaign="t", list="l", records=make_records(n))

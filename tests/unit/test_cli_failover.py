"""The command line through the failover client, against fake daemons: a comma-separated
``--socket`` / ``--connect`` / ``NEXTCALL_SOCKET`` reaches the active daemon, the TLS
options reach a TLS daemon, ``ping`` shows the high-availability state, and no active
daemon is exit status 3 with the reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from nextcall.cli import main as cli_main
from tests.fakedaemon import FakeDaemon, Pki, active, running, standby


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[FakeDaemon, FakeDaemon]]:
    """A standby that does not know the active daemon, and the active one (epoch 7)."""
    s = FakeDaemon(standby(), unix=tmp_path / "s.sock")
    a = FakeDaemon(active(epoch=7), unix=tmp_path / "a.sock")
    with running(s, a):
        yield s, a


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli_main, list(args), env={"COLUMNS": "200", **(env or {})},
                              catch_exceptions=False)


def test_ping_through_a_list_shows_the_active_daemon(
        pair: tuple[FakeDaemon, FakeDaemon]) -> None:
    s, a = pair
    r = run("--socket", f"{s.address}, {a.address}", "ping")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == ["nextcall 0.1.0: 3 records, you are admin",
                                     f"active, epoch 7, at {a.address}"]
    assert a.ops() == ["ping", "ping"] and s.ops() == ["ping"]


def test_connect_is_an_alias_and_the_variable_takes_a_list(
        pair: tuple[FakeDaemon, FakeDaemon]) -> None:
    s, a = pair
    r = run("--json", "--connect", f"{s.address},{a.address}", "stats")
    assert json.loads(r.output)["served_by"] == a.address
    r = run("--json", "stats", env={"NEXTCALL_SOCKET": f"{s.address},{a.address}"})
    assert json.loads(r.output)["served_by"] == a.address


def test_ping_of_one_standby_shows_its_state(tmp_path: Path) -> None:
    s = FakeDaemon(standby("10.0.0.2:7443"), unix=tmp_path / "s.sock")
    with running(s):
        r = run("--socket", s.address, "ping")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[1] == f"standby, active daemon 10.0.0.2:7443, at {s.address}"


def test_no_active_daemon_is_exit_3_with_what_each_address_said(
        pair: tuple[FakeDaemon, FakeDaemon], tmp_path: Path) -> None:
    s, _ = pair
    missing = str(tmp_path / "missing.sock")
    r = run("--socket", f"{missing},{s.address}", "--failover-timeout", "0.1", "ping")
    assert r.exit_code == 3
    assert "no active nextcall daemon after 0.1 s" in r.output
    assert f"{s.address}: standby" in r.output and f"{missing}: No such file" in r.output


def test_tls_options_from_the_environment_reach_a_tls_daemon(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    d = FakeDaemon(active(epoch=2), tls=pki.server("127.0.0.1"))
    with running(d):
        r = run("--socket", d.address, "ping", env={
            "NEXTCALL_TLS_CA": pki.cafile, "NEXTCALL_TLS_CERT": pki.certfile,
            "NEXTCALL_TLS_KEY": pki.keyfile})
        assert r.exit_code == 0, r.output
        assert f"active, epoch 2, at {d.address}" in r.output
        r = run("--socket", d.address, "ping")  # the system's CAs do not know this one
        assert r.exit_code == 3 and "certificate verify failed" in r.output
    assert d.peer_names == ["agent-1"]


def test_plaintext_reaches_a_loopback_daemon_without_tls() -> None:
    d = FakeDaemon(active())
    with running(d):
        r = run("--plaintext", "--json", "--socket", d.address, "campaigns")
    assert json.loads(r.output)["served_by"] == d.address

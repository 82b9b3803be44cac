"""The client over TLS against a fake daemon using the standard library's ``ssl``, with
certificates from a trustme CA: the daemon's certificate is checked, the client's
certificate is presented, and a daemon that cannot be verified is no active daemon."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from nextcall.client import Client, NoActiveDaemon
from tests.fakedaemon import FakeDaemon, Pki, active, running, standby


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
def tls_daemon(pki: Pki) -> Iterator[FakeDaemon]:
    d = FakeDaemon(active(epoch=5), tls=pki.server("127.0.0.1", "daemon.example"))
    with running(d):
        yield d


def test_tls_checks_the_daemon_and_presents_the_client_certificate(
        pki: Pki, tls_daemon: FakeDaemon) -> None:
    with Client(tls_daemon.address, cafile=pki.cafile, certfile=pki.certfile,
                keyfile=pki.keyfile) as c:
        assert c.call("ping")["state"] == "active"
        assert c.call("stats")["served_by"] == tls_daemon.address
    assert tls_daemon.peer_names == ["agent-1"]


def test_a_standby_on_a_unix_socket_points_to_the_tls_active(
        pki: Pki, tls_daemon: FakeDaemon, tmp_path: Path) -> None:
    s = FakeDaemon(standby(tls_daemon.address), unix=tmp_path / "s.sock")
    with running(s), Client([s.address], cafile=pki.cafile, certfile=pki.certfile,
                            keyfile=pki.keyfile, failover_timeout=1) as c:
        assert c.address == tls_daemon.address
        assert c.call("next", agent="alice")["fields"] == {"agent": "alice"}


def test_server_hostname_names_the_certificate_to_expect(pki: Pki, tmp_path: Path) -> None:
    d = FakeDaemon(active(), tls=pki.server("daemon.example"))
    with running(d):
        with pytest.raises(ssl.SSLCertVerificationError):
            Client(d.address, cafile=pki.cafile, certfile=pki.certfile,
                   keyfile=pki.keyfile).connect()
        with Client(d.address, cafile=pki.cafile, certfile=pki.certfile,
                    keyfile=pki.keyfile, server_hostname="daemon.example") as c:
            assert c.call("ping")["ok"] is True


def test_a_daemon_signed_by_another_ca_is_not_an_active_daemon(
        pki: Pki, tls_daemon: FakeDaemon, tmp_path: Path) -> None:
    other = trustme.CA()
    other_file = str(tmp_path / "other-ca.pem")
    other.cert_pem.write_to_path(other_file)
    c = Client([tls_daemon.address, str(tmp_path / "missing.sock")], cafile=other_file,
               certfile=pki.certfile, keyfile=pki.keyfile, failover_timeout=0)
    with pytest.raises(NoActiveDaemon, match="certificate verify failed"):
        c.connect()
    assert tls_daemon.ops() == []


def test_a_missing_ca_file_fails_at_once_with_its_own_error(
        pki: Pki, tls_daemon: FakeDaemon, tmp_path: Path) -> None:
    c = Client([tls_daemon.address, str(tmp_path / "a.sock")],
               cafile=str(tmp_path / "nope.pem"))
    with pytest.raises(FileNotFoundError):
        c.connect()

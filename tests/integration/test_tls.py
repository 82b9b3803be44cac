"""The TCP listener over a real socket: TLS with client certificates mapped to roles and
agent names, plaintext on loopback, refused handshakes that hurt nobody else, and the
Unix socket's framing and limits, the same over TLS. The daemon runs in-process on its own
loop thread (``tests/integration/tls.py``), on asyncio and on uvloop."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509

from tests.conftest import make_records
from tests.integration.tls import (
    LOOPS,
    Client,
    DaemonThread,
    Pki,
    make_pki,
    refused_in_handshake,
    running,
    tls_config,
)

FAILURES = "nextcall_tls_handshake_failures_total"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture(params=LOOPS)
def tls_daemon(request: pytest.FixtureRequest, tmp_path: Path, pki: Pki
               ) -> Iterator[DaemonThread]:
    with running(tls_config(tmp_path, pki), request.param) as d:
        yield d


def refused(ans: dict[str, Any], code: str, field: str | None = None) -> dict[str, Any]:
    assert ans["ok"] is False, ans
    assert ans["error"]["code"] == code, ans
    if field is not None:
        assert ans["error"].get("field") == field, ans
    return ans["error"]  # type: ignore[no-any-return]


def unix_call(d: DaemonThread, line: bytes) -> dict[str, Any]:
    """One request over the daemon's Unix socket (this process: uid of the tests)."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(d.daemon.settings.daemon.socket)
    try:
        s.sendall(line)
        answer: dict[str, Any] = json.loads(s.makefile("rb").readline())
        return answer
    finally:
        s.close()


def load_records(d: DaemonThread, pki: Pki, n: int = 3) -> None:
    admin = Client(d.port, pki, pki.ops)
    try:
        admin.ok("records.import", campaign="t", list="l", records=make_records(n))
    finally:
        admin.close()


# ---------------------------------------------------------------------------- roles


def test_an_agent_certificate_leases_and_disposes_but_is_no_admin(
        tls_daemon: DaemonThread, pki: Pki) -> None:
    load_records(tls_daemon, pki)
    c = Client(tls_daemon.port, pki, pki.alice)
    try:
        pong = c.ok("ping")
        assert (pong["role"], pong["transport"], pong["uid"]) == ("agent", "tls", -1)
        assert pong["cert_names"] == ["alice", "alice@example.com"]
        lease = c.ok("next", agent="a", campaigns=["t"])["leases"][0]
        ans = c.ok("dispose", lease=lease["token"], code="NA")
        assert (ans["attempts"], ans["state"]) == (1, "ready"), ans
        refused(c.call("records.import", campaign="t", list="l", records=make_records(1)),
                "forbidden")
        refused(c.call("config.reload"), "forbidden")
    finally:
        c.close()


def test_admin_and_supervisor_certificates_by_cn_or_san(tls_daemon: DaemonThread,
                                                        pki: Pki) -> None:
    admin = Client(tls_daemon.port, pki, pki.ops)
    sup = Client(tls_daemon.port, pki, pki.sup)
    try:
        # cert_admins names the SAN DNS value, cert_supervisors the CN
        assert admin.ok("ping")["role"] == "admin"
        admin.ok("records.import", campaign="t", list="l", records=make_records(2))
        assert admin.ok("config.reload")["applied"] is True
        assert sup.ok("ping")["role"] == "supervisor"
        assert len(sup.ok("records", campaign="t")["records"]) == 2
        refused(sup.call("config.reload"), "forbidden")
    finally:
        admin.close()
        sup.close()


def test_the_unix_socket_says_its_transport_and_no_certificate(tls_daemon: DaemonThread
                                                               ) -> None:
    pong = unix_call(tls_daemon, b'{"id":1,"op":"ping"}\n')
    assert pong["transport"] == "unix" and "cert_names" not in pong, pong
    assert pong["role"] == "admin"  # trust_own_uid: the test's own uid


# ---------------------------------------------------------------------------- refusals


def test_a_client_without_a_certificate_is_refused_and_others_go_on(
        tls_daemon: DaemonThread, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    good = Client(tls_daemon.port, pki, pki.alice)
    try:
        assert good.ok("ping")["role"] == "agent"
        refused_in_handshake(tls_daemon.port, pki, None)
        # the connection already open is served as before, and new ones are accepted
        assert good.ok("ping")["role"] == "agent"
        again = Client(tls_daemon.port, pki, pki.bob)
        assert again.ok("ping")["cert_names"] == ["bob"]
        again.close()
    finally:
        good.close()
    assert tls_daemon.run(lambda: tls_daemon.metric(FAILURES)) == 1
    lines = [r for r in caplog.records if r.getMessage().startswith("tls_handshake_failed")]
    assert len(lines) == 1, caplog.text
    assert "reason=PEER_DID_NOT_RETURN_A_CERTIFICATE" in lines[0].getMessage()
    assert "failed=1" in lines[0].getMessage()
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)


def test_a_certificate_from_another_ca_is_refused_whatever_its_name(
        tls_daemon: DaemonThread, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # the forged certificate bears the admin's name, signed by a CA the daemon does not know
    refused_in_handshake(tls_daemon.port, pki, pki.forged)
    assert tls_daemon.run(lambda: tls_daemon.metric(FAILURES)) == 1
    line = next(r.getMessage() for r in caplog.records
                if r.getMessage().startswith("tls_handshake_failed"))
    assert "reason=CERTIFICATE_VERIFY_FAILED" in line, line
    ok = Client(tls_daemon.port, pki, pki.ops)
    assert ok.ok("ping")["role"] == "admin"
    ok.close()


def test_handshake_failures_are_all_counted_but_logged_once_in_a_burst(
        tls_daemon: DaemonThread, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    for cert in (None, pki.forged, None):
        refused_in_handshake(tls_daemon.port, pki, cert)
    # not TLS at all: an HTTP request on the TLS port
    with socket.create_connection(("127.0.0.1", tls_daemon.port), timeout=10) as raw:
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert raw.recv(100) == b""
    # the failure is reported as the handshake fails, on the daemon's loop: a ping
    # answered afterwards on a new connection orders the count after it
    Client(tls_daemon.port, pki, pki.ops).ok("ping")
    assert tls_daemon.run(lambda: tls_daemon.metric(FAILURES)) == 4
    lines = [r for r in caplog.records if r.getMessage().startswith("tls_handshake_failed")]
    assert len(lines) == 1, [r.getMessage() for r in lines]


# ---------------------------------------------------------------------------- framing, limits


def test_bad_json_and_an_oversize_line_get_the_usual_answers_over_tls(
        tls_daemon: DaemonThread, pki: Pki) -> None:
    c = Client(tls_daemon.port, pki, pki.alice)
    try:
        c.send_raw(b'{"id": 1, "op": \n')
        refused(c.read(), "bad_json")
        c.send_raw(b'[1, 2]\n')
        refused(c.read(), "bad_request")
        assert c.ok("ping")["role"] == "agent"  # the connection survived both
        limit = tls_daemon.daemon.settings.daemon.max_line_bytes
        c.send_raw(b'{"id": 2, "op": "ping", "x": "' + b"a" * limit + b'"}\n')
        refused(c.read(), "too_large")
        assert c.at_eof(), "an oversize line closes the connection"
    finally:
        c.close()
    after = Client(tls_daemon.port, pki, pki.alice)
    assert after.ok("ping")["transport"] == "tls"
    after.close()


def test_a_tls_client_that_closes_its_side_ends_its_long_poll(
        tls_daemon: DaemonThread, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    c = Client(tls_daemon.port, pki, pki.alice)
    c.ok("ping")
    # a long poll, and reads of the database still running when the close arrives
    c.send_raw(b'{"id":2,"op":"next","agent":"a","campaigns":["t"],"wait":60}\n' + b"".join(
        b'{"id":%d,"op":"record.get","record":"nobody"}\n' % i for i in range(3, 53)))
    # close_notify: TLS has no half-close, so the daemon ends the long poll (its empty
    # answer comes before the daemon's own close_notify, which unwrap does not expect)
    with contextlib.suppress(ssl.SSLError, OSError):
        c.sock.unwrap()  # type: ignore[attr-defined]
    c.close()
    load_records(tls_daemon, pki)  # records a long poll still waiting would lease
    admin = Client(tls_daemon.port, pki, pki.ops)
    assert admin.ok("records", campaign="t", state="leased")["records"] == []
    assert len(admin.ok("records", campaign="t", state="ready")["records"]) == 3
    admin.close()
    assert "eof_received" not in caplog.text  # the SSL protocol's warning on keep-open


def test_a_partial_line_over_tls_times_out_as_on_the_unix_socket(tmp_path: Path,
                                                                 pki: Pki) -> None:
    cfg = tls_config(tmp_path, pki, extra_daemon="partial_line_timeout_s = 0.5")
    with running(cfg) as d:
        c = Client(d.port, pki, pki.alice)
        try:
            c.send_raw(b'{"id": 1, "op": "pi')
            err = refused(c.read(), "bad_request")
            assert "not completed within 0.5 s" in err["message"], err
            assert c.at_eof()
        finally:
            c.close()


def test_max_connections_counts_tls_clients_and_refuses_over_tls(tmp_path: Path,
                                                                 pki: Pki) -> None:
    with running(tls_config(tmp_path, pki, extra_daemon="max_connections = 1")) as d:
        first = Client(d.port, pki, pki.alice)
        try:
            first.ok("ping")
            second = Client(d.port, pki, pki.bob)
            err = refused(second.read(), "unavailable")
            assert "max_connections = 1" in err["message"], err
            assert second.at_eof()
            second.close()
            assert first.ok("ping")["role"] == "agent"
        finally:
            first.close()


def test_a_tcp_port_in_use_fails_the_start_and_frees_the_unix_socket(tmp_path: Path,
                                                                    pki: Pki) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        cfg = tls_config(tmp_path, pki)
        cfg.write_text(cfg.read_text().replace('listen = "127.0.0.1:0"',
                                               f'listen = "127.0.0.1:{port}"'))
        with pytest.raises(OSError), running(cfg):
            pass
    finally:
        taken.close()
    assert not (tmp_path / "s.sock").exists(), "the Unix socket outlived a failed start"


# ---------------------------------------------------------------------------- plaintext


@pytest.mark.parametrize("loop", LOOPS)
def test_plaintext_on_loopback_serves_agents_only(tmp_path: Path, loop: str) -> None:
    # cert_admins lists names, but a plaintext peer has no certificate to bear them
    with running(tls_config(tmp_path, None), loop) as d:
        c = Client(d.port)
        try:
            pong = c.ok("ping")
            assert (pong["role"], pong["transport"], pong["uid"]) == ("agent", "tcp", -1)
            assert "cert_names" not in pong
            refused(c.call("records.import", campaign="t", list="l",
                           records=make_records(1)), "forbidden")
            assert c.ok("next", agent="a", campaigns=["t"])["leases"] == []
        finally:
            c.close()


def test_plaintext_requests_on_the_tls_port_are_never_answered(tls_daemon: DaemonThread
                                                                ) -> None:
    c = Client(tls_daemon.port)  # no pki: plaintext
    try:
        c.send_raw(b'{"id":1,"op":"ping"}\n')
        try:
            reply = c.file.read()  # a TLS alert at most, then the end
        except ConnectionError:
            reply = b""
    finally:
        c.close()
    assert not reply.startswith(b"{"), reply
    assert tls_daemon.run(lambda: tls_daemon.metric(FAILURES)) == 1


# ---------------------------------------------------------------------------- bindings


def test_cert_acts_for_binds_certificates_to_agent_names(tmp_path: Path, pki: Pki) -> None:
    auth = ('trust_own_uid = false\n[auth.cert_acts_for]\n'
            '"alice@example.com" = ["a1", "a2"]\n')
    with running(tls_config(tmp_path, pki, auth=auth)) as d:
        load_records(d, pki)
        alice = Client(d.port, pki, pki.alice)
        bob = Client(d.port, pki, pki.bob)
        try:
            # a bound certificate acts as its names only (its SAN is the bound name)
            lease = alice.ok("next", agent="a1", campaigns=["t"])["leases"][0]
            alice.ok("agent.login", agent="a2", campaigns=["t"])
            err = refused(alice.call("next", agent="free", campaigns=["t"]), "forbidden",
                          "agent")
            assert "certificate 'alice' is bound to other agent names" in err["message"]
            # a bound name serves its certificates only: bob's is not one
            err = refused(bob.call("agent.login", agent="a1", campaigns=["t"]),
                          "forbidden", "agent")
            assert "bound to other peers" in err["message"], err
            # the lease's agent is bound: bob cannot dispose it even with the token
            refused(bob.call("dispose", lease=lease["token"], code="NA"), "forbidden",
                    "lease")
            # unbound certificate, unbound name: the open rule
            assert bob.ok("next", agent="free", campaigns=["t"])["leases"]
            alice.ok("dispose", lease=lease["token"], code="NA")
        finally:
            alice.close()
            bob.close()
        # a name bound to certificates is closed to Unix peers too (none is bound to it)
        ans = unix_call(d, b'{"id":1,"op":"agent.login","agent":"a1","campaigns":["t"]}\n')
        assert ans["ok"] is False and ans["error"]["code"] == "forbidden", ans


def test_record_get_held_matches_tls_agents_by_their_bound_names(tmp_path: Path,
                                                                 pki: Pki) -> None:
    auth = ('record_get = "held"\n[auth.cert_acts_for]\nalice = ["a1"]\n')
    with running(tls_config(tmp_path, pki, auth=auth)) as d:
        load_records(d, pki, 3)
        alice = Client(d.port, pki, pki.alice)
        bob = Client(d.port, pki, pki.bob)
        try:
            held = alice.ok("next", agent="a1", campaigns=["t"])["leases"][0]["record"]["id"]
            assert alice.ok("record.get", record=held)["record"]["id"] == held
            other = bob.ok("next", agent="b", campaigns=["t"])["leases"][0]["record"]["id"]
            refused(alice.call("record.get", record=other), "forbidden", "record")
            # lease rows name no certificate: an unbound one reads none, not even its own
            err = refused(bob.call("record.get", record=other), "forbidden", "record")
            assert "[auth.cert_acts_for]" in err["message"], err
        finally:
            alice.close()
            bob.close()


# ---------------------------------------------------------------------------- reload


def test_reload_reads_the_certificate_again_and_reports_tcp_changes(tmp_path: Path,
                                                                   pki: Pki) -> None:
    cfg = tls_config(tmp_path, pki)
    with running(cfg) as d:
        before = Client(d.port, pki, pki.ops)
        old_serial = before.sock.getpeercert()["serialNumber"]  # type: ignore[attr-defined]
        renewed = pki.write_server_cert()
        ans = before.ok("config.reload")
        assert ans["restart_required"] == [], ans
        after = Client(d.port, pki, pki.ops)
        new_serial = after.sock.getpeercert()["serialNumber"]  # type: ignore[attr-defined]
        assert new_serial != old_serial
        assert int(new_serial, 16) == renewed_serial(renewed)
        # the listen address is read at start only
        cfg.write_text(cfg.read_text().replace('listen = "127.0.0.1:0"',
                                               'listen = "127.0.0.1:1"'))
        ans = after.ok("config.reload")
        assert ans["restart_required"] == ["tcp.listen"], ans
        assert d.daemon.server.tcp_address is not None
        before.close()
        after.close()


def renewed_serial(cert: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).serial_number

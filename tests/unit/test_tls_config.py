"""``[tcp]`` and the certificate side of ``[auth]``: each validation rule reported under its
own key, loopback addresses, who a TLS peer is (certificate names, roles, bindings,
``record_get``), and the TLS context and its certificate reload. Files are real PEM files
from a throwaway CA (trustme)."""

from __future__ import annotations

import ssl
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509

from nextcall.addresses import is_loopback
from nextcall.bindings import Bindings
from nextcall.config import AuthCfg, DaemonCfg, Settings, load
from nextcall.core.errors import ConfigError, Forbidden
from nextcall.listeners import HandshakeFailures, reload_certificate, server_context
from nextcall.roles import (
    ADMIN,
    AGENT,
    SUPERVISOR,
    TCP,
    TLS,
    UNIX,
    Peer,
    cert_names,
    may_act_as,
    may_read_record,
    role_for_cert,
)
from nextcall.tlscfg import TcpCfg


class Files:
    """A server certificate, its key, a client CA, and files that are none of these."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = trustme.CA()
        server = self.ca.issue_cert("localhost")
        self.cert, self.key, self.cafile = (root / "cert.pem", root / "key.pem",
                                            root / "ca.pem")
        server.cert_chain_pems[0].write_to_path(str(self.cert))
        server.private_key_pem.write_to_path(str(self.key))
        self.ca.cert_pem.write_to_path(str(self.cafile))
        self.other_key = root / "other.key"
        self.ca.issue_cert("x").private_key_pem.write_to_path(str(self.other_key))
        self.junk = root / "junk.pem"
        self.junk.write_text("not PEM at all\n")

    def tls(self, **over: Any) -> str:
        keys = {"listen": '"127.0.0.1:7443"', "certfile": f'"{self.cert}"',
                "keyfile": f'"{self.key}"', "client_cafile": f'"{self.cafile}"', **over}
        return "\n".join(f"{k} = {v}" for k, v in keys.items() if v is not None)


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def main(tmp: Path, tcp: str, auth: str = "") -> Path:
    p = tmp / "main.toml"
    p.write_text(f"[tcp]\n{tcp}\n[auth]\n{textwrap.dedent(auth)}\n")
    return p


def problems(path: Path) -> dict[str, str]:
    """Each problem's key path -> its message."""
    with pytest.raises(ConfigError) as exc:
        load(path)
    return {where.removeprefix(f"{path}: "): msg for where, msg in exc.value.problems}


# ---------------------------------------------------------------------------- [tcp]


def test_no_tcp_section_means_no_listener_and_nothing_required(tmp_path: Path) -> None:
    p = tmp_path / "main.toml"
    p.write_text("[daemon]\n")
    tcp = load(p).tcp
    assert not tcp.active and tcp == TcpCfg()


def test_a_complete_tls_section_loads(tmp_path: Path, files: Files) -> None:
    tcp = load(main(tmp_path, files.tls())).tcp
    assert tcp.active and tcp.tls and tcp.address() == ("127.0.0.1", 7443)
    assert tcp.certfile == str(files.cert)


@pytest.mark.parametrize("missing", ["certfile", "keyfile", "client_cafile"])
def test_tls_needs_each_of_its_three_files(tmp_path: Path, files: Files, missing: str
                                           ) -> None:
    got = problems(main(tmp_path, files.tls(**{missing: None})))
    assert list(got) == [f"tcp.{missing}"]
    assert "required with [tcp] listen" in got[f"tcp.{missing}"]


@pytest.mark.parametrize(("key", "value", "why"), [
    ("certfile", "missing.pem", "no such file or directory"),
    ("certfile", "junk.pem", "no certificate"),
    ("client_cafile", "junk.pem", "no certificate"),
    ("client_cafile", "missing.pem", "no such file or directory"),
    ("keyfile", "other.key", "not the private key of tcp.certfile"),
    ("keyfile", "missing.pem", "no such file or directory"),
])
def test_a_file_that_does_not_load_is_named_by_its_key(tmp_path: Path, files: Files,
                                                       key: str, value: str, why: str
                                                       ) -> None:
    got = problems(main(tmp_path, files.tls(**{key: f'"{tmp_path / value}"'})))
    assert list(got) == [f"tcp.{key}"], got
    assert why in got[f"tcp.{key}"], got


def test_an_encrypted_key_is_refused_without_a_prompt(tmp_path: Path, files: Files) -> None:
    enc = tmp_path / "enc.key"
    subprocess.run(["openssl", "pkey", "-in", str(files.key), "-aes256", "-passout",
                    "pass:secret", "-out", str(enc)], check=True, capture_output=True)
    got = problems(main(tmp_path, files.tls(keyfile=f'"{enc}"')))
    assert "the key is encrypted" in got["tcp.keyfile"], got


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "[::]", "example.com"])
def test_plaintext_off_loopback_is_a_config_error(tmp_path: Path, host: str) -> None:
    got = problems(main(tmp_path, f'listen = "{host}:7000"\nplaintext = true'))
    assert list(got) == ["tcp.plaintext"], got
    assert "only on a loopback address" in got["tcp.plaintext"]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.8.7", "[::1]", "localhost",
                                  "LOCALHOST"])
def test_plaintext_on_loopback_needs_no_files(tmp_path: Path, host: str) -> None:
    tcp = load(main(tmp_path, f'listen = "{host}:7000"\nplaintext = true')).tcp
    assert tcp.active and not tcp.tls


def test_plaintext_with_certificate_files_is_refused(tmp_path: Path, files: Files) -> None:
    got = problems(main(tmp_path, files.tls(plaintext="true")))
    assert set(got) == {"tcp.certfile", "tcp.keyfile", "tcp.client_cafile"}
    assert all("not used with plaintext" in m for m in got.values())


def test_a_bad_listen_address_and_unknown_keys(tmp_path: Path) -> None:
    got = problems(main(tmp_path, 'listen = "no-port"\nplaintext = true\nport = 1'))
    assert set(got) == {"tcp.listen", "tcp.port"}, got
    assert got["tcp.port"] == "unknown key"


def test_tcp_belongs_to_the_main_file(tmp_path: Path) -> None:
    (tmp_path / "more.toml").write_text('[tcp]\nlisten = "127.0.0.1:1"\nplaintext = true\n')
    p = tmp_path / "main.toml"
    p.write_text('include = ["more.toml"]\n')
    with pytest.raises(ConfigError) as exc:
        load(p)
    assert (f"{tmp_path / 'more.toml'}: tcp", "only the main file may set this") in \
        exc.value.problems


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.255.0.1", True), ("::1", True), ("localhost", True),
    ("128.0.0.1", False), ("0.0.0.0", False), ("::", False), ("localhost.example", False),
    ("10.0.0.1", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# ---------------------------------------------------------------------------- [auth]


def test_certificate_keys_of_auth_load(tmp_path: Path) -> None:
    s = load(main(tmp_path, "", """
        cert_admins = ["ops.example.com"]
        cert_supervisors = ["sup"]
        [auth.cert_acts_for]
        "alice@example.com" = ["a1", "a2"]
        dialer = ["a2"]
    """))
    assert s.auth.cert_admins == ["ops.example.com"]
    assert s.bindings is not None
    assert s.bindings.by_cert == {"alice@example.com": frozenset({"a1", "a2"}),
                                  "dialer": frozenset({"a2"})}
    assert s.bindings.by_name["a2"].certs == frozenset({"alice@example.com", "dialer"})
    assert s.bindings.by_name["a2"].uids == frozenset()


def test_bad_certificate_keys_of_auth_are_reported(tmp_path: Path) -> None:
    got = problems(main(tmp_path, "", """
        cert_admins = [""]
        cert_supervisors = "sup"
        [auth.cert_acts_for]
        alice = []
        bob = ["ok", ""]
    """))
    assert set(got) == {"auth.cert_admins[0]", "auth.cert_supervisors",
                        "auth.cert_acts_for.alice", "auth.cert_acts_for.bob[1]"}, got


# ---------------------------------------------------------------------------- who a peer is

PEERCERT: dict[str, Any] = {
    "subject": ((("organizationName", "Example"),), (("commonName", "alice"),)),
    "subjectAltName": (("email", "alice@example.com"), ("DNS", "alice.example.com"),
                       ("IP Address", "192.0.2.7"), ("URI", "spiffe://floor/alice"),
                       ("DNS", "alice")),
}


def test_certificate_names_are_the_cn_then_san_dns_email_and_uri_values() -> None:
    assert cert_names(PEERCERT) == ("alice", "alice@example.com", "alice.example.com",
                                    "spiffe://floor/alice")
    assert cert_names(None) == () and cert_names({}) == ()


def settings(**auth: Any) -> Settings:
    return Settings(path="x", daemon=DaemonCfg(), auth=AuthCfg(**auth), campaigns={})


def tls_peer(*names: str, role: str = AGENT) -> Peer:
    return Peer(1, 0, -1, -1, role=role, transport=TLS, names=names)


@pytest.mark.parametrize(("names", "role"), [
    (("ops", "ops.example.com"), ADMIN), (("sup",), SUPERVISOR), (("alice",), AGENT),
    ((), AGENT), (("sup", "ops.example.com"), ADMIN),
])
def test_a_certificate_role_is_its_highest_listed_name(names: tuple[str, ...], role: str
                                                       ) -> None:
    s = settings(cert_admins=["ops.example.com"], cert_supervisors=["sup"])
    assert role_for_cert(s, names) == role


def test_audit_names_say_which_certificate_or_uid_acted() -> None:
    assert (tls_peer("ops", "ops.example.com").who, tls_peer("ops").ident) == \
        ("cert:ops", "cert:ops")
    assert Peer(1, 5, 1000, 1000).who == "uid:1000"
    assert Peer(1, 5, 1000, 1000).ident == "1000"
    assert Peer(1, 0, -1, -1, transport=TCP).who == "tcp"
    assert Peer(1, 5, 1000, 1000).transport == UNIX


FLOOR = Bindings.of(AuthCfg(acts_for={4_000_001: ["d1"]},
                            cert_acts_for={"alice": ["a1"], "alice@example.com": ["a2"],
                                           "dialer": ["a1", "d9"]}), {})


@pytest.mark.parametrize(("peer", "agent", "allowed"), [
    (tls_peer("alice", "alice@example.com"), "a1", True),  # CN binding
    (tls_peer("alice", "alice@example.com"), "a2", True),  # SAN binding adds up
    (tls_peer("alice", "alice@example.com"), "free", False),  # bound: its names only
    (tls_peer("dialer"), "a1", True),  # a name bound to two certificates serves both
    (tls_peer("bob"), "a1", False),  # a bound name serves its certificates only
    (tls_peer("bob"), "free", True),  # unbound certificate, unbound name: open
    (tls_peer("bob"), "d1", False),  # bound to a uid
    (Peer(1, 0, -1, -1, transport=TCP), "a1", False),  # plaintext: no certificate
    (Peer(1, 0, -1, -1, transport=TCP), "free", True),
    (Peer(1, 5, 4_000_001, 4_100_001), "a1", False),  # a uid, for a certificate's name
    (Peer(1, 5, 4_000_002, 4_100_001), "a1", False),  # an unbound uid, too
    (tls_peer("bob", role=SUPERVISOR), "a1", True),  # supervisors step in
])
def test_cert_acts_for_binds_like_acts_for(peer: Peer, agent: str, allowed: bool) -> None:
    if allowed:
        may_act_as(peer, agent, FLOOR)
    else:
        with pytest.raises(Forbidden) as exc:
            may_act_as(peer, agent, FLOOR)
        assert exc.value.field == "agent"


def test_record_get_held_reads_what_was_leased_to_a_bound_name() -> None:
    held = AuthCfg(record_get="held")
    rows = [{"uid": -1, "agent": "a2"}, {"uid": 1000, "agent": "zed"}]
    may_read_record(tls_peer("alice", "alice@example.com"), rows, held, FLOOR)
    with pytest.raises(Forbidden):
        may_read_record(tls_peer("dialer"), rows, held, FLOOR)  # a1, d9: not a2
    with pytest.raises(Forbidden) as exc:  # unbound: lease rows name no certificate
        may_read_record(tls_peer("bob"), [{"uid": -1, "agent": "bob"}], held, FLOOR)
    assert "[auth.cert_acts_for]" in str(exc.value)
    with pytest.raises(Forbidden):  # nor does a uid of -1 match TCP peers to each other
        may_read_record(Peer(1, 0, -1, -1, transport=TCP), rows, held, FLOOR)
    may_read_record(tls_peer("bob", role=SUPERVISOR), [], held, FLOOR)
    may_read_record(tls_peer("bob"), [], AuthCfg(), FLOOR)


# ---------------------------------------------------------------------------- the context


class Counted:
    def __init__(self) -> None:
        self.failed = 0

    def tls_handshake_failed(self) -> None:
        self.failed += 1

    def connection_opened(self) -> None: ...
    def connection_closed(self) -> None: ...
    def connection_refused(self) -> None: ...
    def connection_dropped(self, reason: str) -> None: ...


def test_the_server_context_requires_a_verified_client_certificate(tmp_path: Path,
                                                                   files: Files) -> None:
    tcp = load(main(tmp_path, files.tls())).tcp
    ctx = server_context(tcp, HandshakeFailures(Counted()))
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.cert_store_stats()["x509_ca"] == 1


def test_handshake_failures_count_every_one_and_log_once_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    seen = Counted()
    report = HandshakeFailures(seen)
    for _ in range(3):
        report(ssl.SSLError(1, "[SSL] boom"))
    assert seen.failed == 3
    assert sum("tls_handshake_failed" in m for m in caplog.messages) == 1


def served_serial(ctx: ssl.SSLContext, files: Files) -> int:
    """Shake hands with ``ctx`` in memory, as a client with a certificate of the CA;
    the serial number of the certificate the server showed."""
    client_ctx = ssl.create_default_context()
    files.ca.configure_trust(client_ctx)
    files.ca.issue_cert(common_name="agent").configure_cert(client_ctx)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = ctx.wrap_bio(s_in, s_out, server_side=True)
    done: set[str] = set()
    for _ in range(10):
        for name, obj in (("client", client), ("server", server)):
            try:
                obj.do_handshake()
                done.add(name)
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if len(done) == 2:
            break
    peer = client.getpeercert()
    assert peer is not None
    return int(str(peer["serialNumber"]), 16)


def test_a_certificate_reload_keeps_the_old_pair_when_the_new_one_is_bad(
        tmp_path: Path, files: Files, caplog: pytest.LogCaptureFixture) -> None:
    tcp = load(main(tmp_path, files.tls())).tcp
    ctx = server_context(tcp, HandshakeFailures(Counted()))
    first = served_serial(ctx, files)
    files.other_key.replace(files.key)  # a renewal half done: the key of another cert
    assert reload_certificate(ctx, tcp) is False
    assert "tls_certificate_reload_failed" in caplog.text
    assert served_serial(ctx, files) == first, "a bad pair replaced the good one"
    renewed = files.ca.issue_cert("localhost")
    renewed.cert_chain_pems[0].write_to_path(str(files.cert))
    renewed.private_key_pem.write_to_path(str(files.key))
    assert reload_certificate(ctx, tcp) is True
    assert served_serial(ctx, files) == x509.load_pem_x509_certificate(
        renewed.cert_chain_pems[0].bytes()).serial_number

"""What the TLS listener's tests share: a throwaway CA and certificates (trustme), a config
with ``[tcp]``, a blocking NDJSON client over TLS (or plaintext TCP), and a daemon run on
its own thread, on the event loop a test names (asyncio or uvloop: the daemon's default).

The daemon runs on a thread so that the tests can be plain blocking code, like any client
of the protocol, and so that each test picks its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme

from nextcall.app import Daemon, loop_factory
from nextcall.config import load
from tests.conftest import write_config

T = TypeVar("T")
#: the event loops the daemon runs on (``[daemon] event_loop``)
LOOPS = ["asyncio", "uvloop"]


@dataclass
class Pki:
    """The daemon's CA and certificates, one CA nobody trusts, and their files."""

    ca: trustme.CA
    other_ca: trustme.CA
    dir: Path
    #: CN alice, SAN alice@example.com: an agent unless listed
    alice: trustme.LeafCert
    #: CN bob: an agent
    bob: trustme.LeafCert
    #: CN ops, SAN DNS ops.example.com (cert_admins lists the SAN)
    ops: trustme.LeafCert
    #: CN sup (cert_supervisors lists it)
    sup: trustme.LeafCert
    #: CN ops.example.com, signed by the CA the daemon does not trust
    forged: trustme.LeafCert

    @property
    def certfile(self) -> Path:
        return self.dir / "server.pem"

    @property
    def keyfile(self) -> Path:
        return self.dir / "server.key"

    @property
    def cafile(self) -> Path:
        return self.dir / "clients-ca.pem"

    def write_server_cert(self) -> trustme.LeafCert:
        """Issue a new server certificate and write it over the daemon's files."""
        server = self.ca.issue_cert("localhost", "127.0.0.1")
        server.cert_chain_pems[0].write_to_path(str(self.certfile))
        server.private_key_pem.write_to_path(str(self.keyfile))
        return server


def make_pki(root: Path) -> Pki:
    ca, other = trustme.CA(), trustme.CA()
    pki = Pki(ca, other, root,
              alice=ca.issue_cert("alice@example.com", common_name="alice"),
              bob=ca.issue_cert(common_name="bob"),
              ops=ca.issue_cert("ops.example.com", common_name="ops"),
              sup=ca.issue_cert(common_name="sup"),
              forged=other.issue_cert("ops.example.com", common_name="ops.example.com"))
    pki.write_server_cert()
    ca.cert_pem.write_to_path(str(pki.cafile))
    return pki


def tls_config(root: Path, pki: Pki | None, tcp: str = "", auth: str = "",
               extra_daemon: str = "") -> Path:
    """A config with ``[tcp]`` on a port the kernel picks: TLS with ``pki``'s files, or
    plaintext when ``pki`` is None; ``auth`` goes in ``[auth]`` (ops is admin, sup is
    supervisor, unless ``auth`` says otherwise); ``[metrics]`` binds no fixed port."""
    roles = 'cert_admins = ["ops.example.com"]\ncert_supervisors = ["sup"]\n'
    path = write_config(root, extra_daemon=extra_daemon, auth=roles + auth)
    if pki is None:
        section = 'listen = "127.0.0.1:0"\nplaintext = true\n'
    else:
        section = (f'listen = "127.0.0.1:0"\ncertfile = "{pki.certfile}"\n'
                   f'keyfile = "{pki.keyfile}"\nclient_cafile = "{pki.cafile}"\n')
    # [auth] is the main file's last table; sub-tables of [auth] in ``auth`` stay in it
    path.write_text(path.read_text() + "\n[tcp]\n" + section + tcp
                    + '\n[metrics]\naddress = "127.0.0.1:0"\n')
    return path


class Client:
    """A blocking NDJSON client over TLS (with the daemon's CA, and a client certificate
    when given) or plaintext TCP."""

    def __init__(self, port: int, pki: Pki | None = None,
                 cert: trustme.LeafCert | None = None, trust: trustme.CA | None = None,
                 timeout_s: float = 10) -> None:
        sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        if pki is not None:
            ctx = ssl.create_default_context()
            (trust or pki.ca).configure_trust(ctx)
            if cert is not None:
                cert.configure_cert(ctx)
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.file = sock.makefile("rb")
        self.ids = itertools.count(1)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> dict[str, Any]:
        line = self.file.readline()
        assert line, "connection closed"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def at_eof(self) -> bool:
        """Whether the daemon closed the connection (nothing more to read)."""
        return self.file.readline() == b""

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        rid = next(self.ids)
        self.send_raw(json.dumps({"id": rid, "op": op, **fields}).encode() + b"\n")
        msg = self.read()
        assert msg["id"] == rid, msg
        return msg

    def ok(self, op: str, **fields: Any) -> dict[str, Any]:
        ans = self.call(op, **fields)
        assert ans["ok"] is True, ans
        return ans

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()


def refused_in_handshake(port: int, pki: Pki, cert: trustme.LeafCert | None) -> str:
    """Connect with ``cert`` (or none) and send a ping; the daemon must refuse the
    handshake. Returns how it showed: under TLS 1.3 the client's side of the handshake
    ends before the server checks its certificate, so the refusal may come as an alert on
    the first read, or as the connection's end."""
    try:
        c = Client(port, pki, cert)
    except (ssl.SSLError, OSError) as exc:
        return f"handshake: {exc!r}"
    try:
        c.send_raw(b'{"id":1,"op":"ping"}\n')
        line = c.file.readline()
    except (ssl.SSLError, OSError) as exc:
        return f"read: {exc!r}"
    finally:
        c.close()
    assert line == b"", f"a refused client was answered: {line!r}"
    return "closed"


class DaemonThread:
    """A daemon started on its own event loop thread; ``call`` runs a coroutine there."""

    def __init__(self, config: Path, loop: str) -> None:
        if loop == "uvloop":
            pytest.importorskip("uvloop")
        self.loop = loop_factory(loop)()
        self.thread = threading.Thread(target=self.loop.run_forever, name="daemon-loop",
                                       daemon=True)
        self.thread.start()
        try:
            self.daemon: Daemon = self.call(self._make(config))
            self.call(self.daemon.start())  # a failed start undoes itself
        except BaseException:
            self._end_loop()
            raise

    @staticmethod
    async def _make(config: Path) -> Daemon:
        return Daemon(load(config))

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the daemon's loop (its state belongs to that thread)."""
        async def on_loop() -> T:
            return fn()
        return self.call(on_loop())

    @property
    def port(self) -> int:
        address = self.daemon.server.tcp_address
        assert address is not None, "no TCP listener"
        return address[1]

    def metric(self, name: str) -> float:
        exporter = self.daemon.exporter
        assert exporter is not None
        value = exporter.registry.get_sample_value(name)
        assert value is not None, name
        return value

    def stop(self) -> None:
        try:
            self.call(self.daemon.stop())
        finally:
            self._end_loop()

    def _end_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@contextlib.contextmanager
def running(config: Path, loop: str = "asyncio") -> Iterator[DaemonThread]:
    d = DaemonThread(config, loop)
    try:
        yield d
    finally:
        d.stop()

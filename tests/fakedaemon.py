"""Small fake nextcall daemons for client tests: a thread serving NDJSON on a Unix
socket or loopback TCP (plaintext or TLS, standard library ``ssl``), answering each
request through a behaviour function. They stand in for what a real daemon does not do
yet or cannot be made to do on cue: answer as a standby, point at the active daemon,
die in the middle of a request, never answer. ``Pki`` makes the certificates for the
TLS ones (trustme)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import trustme

#: a behaviour's answer that closes the connection unanswered and stops the daemon
DIE = {"__fake__": "die"}
#: a behaviour's answer that never answers (the connection stays open)
SILENT = {"__fake__": "silent"}

Behaviour = Callable[["FakeDaemon", dict[str, Any]], dict[str, Any]]


class FakeDaemon:
    """One fake daemon; ``requests`` holds every request it read, in order, and
    ``peer_names`` the subject CN of each TLS client certificate it accepted."""

    def __init__(self, behaviour: Behaviour, *, unix: Path | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.behaviour = behaviour
        self.tls = tls
        self.requests: list[dict[str, Any]] = []
        self.peer_names: list[str] = []
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._unix = unix
        if unix is not None:
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(str(unix))
            self.address = str(unix)
        else:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._listener.listen(16)
        self._thread = threading.Thread(target=self._accept, daemon=True,
                                        name=f"fake-{self.address}")
        self._thread.start()

    def ops(self) -> list[str]:
        """The ops of the requests read so far."""
        with self._lock:
            return [r.get("op", "") for r in self.requests]

    def of(self, op: str) -> list[dict[str, Any]]:
        """The requests of one op, in order."""
        with self._lock:
            return [r for r in self.requests if r.get("op") == op]

    def stop(self) -> None:
        """Stop listening and drop every connection (the clients see the end)."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        if self._unix is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._unix)
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                cert = conn.getpeercert() or {}
                for rdn in cert.get("subject", ()):
                    self.peer_names += [v for k, v in rdn if k == "commonName"]
            with self._lock:
                self._conns.append(conn)
            self._lines(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def _lines(self, conn: socket.socket) -> None:
        file = conn.makefile("rb")
        for line in file:
            req = json.loads(line)
            with self._lock:
                self.requests.append(req)
            answer = self.behaviour(self, req)
            if answer is DIE:
                self.stop()
                return
            if answer is SILENT:
                continue
            conn.sendall(json.dumps({"id": req.get("id"), **answer}).encode() + b"\n")


def ping(state: str | None, active: str | None = None, epoch: int | None = None,
         ) -> dict[str, Any]:
    """A ping answer; ``state`` None answers as a daemon without high availability."""
    ans: dict[str, Any] = {"ok": True, "version": "0.1.0", "role": "admin", "uid": 0,
                           "records": 3}
    if state is not None:
        ans.update(state=state, epoch=epoch, active=active)
    return ans


def unavailable(active: str | None = None) -> dict[str, Any]:
    """The refusal of a daemon that does not serve."""
    err: dict[str, Any] = {"code": "unavailable", "message": "not the active daemon"}
    if active is not None:
        err["active"] = active
    return {"ok": False, "error": err}


def active(epoch: int | None = 1, *, die_on: str | None = None,
           silent_on: str | None = None, legacy: bool = False) -> Behaviour:
    """A serving daemon: every op answers ok with ``served_by`` and the fields it got;
    ``die_on`` an op: it dies instead of answering; ``silent_on``: it never answers."""
    def answer(d: FakeDaemon, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == die_on:
            return DIE
        if op == silent_on:
            return SILENT
        if op == "ping":
            return ping(None if legacy else "active", d.address, epoch)
        fields = {k: v for k, v in req.items() if k not in ("id", "op")}
        return {"ok": True, "served_by": d.address, "fields": fields}
    return answer


def standby(points_to: str | None = None) -> Behaviour:
    """A standby: ping says so (naming the active daemon when known), other ops are
    refused with ``unavailable``."""
    def answer(d: FakeDaemon, req: dict[str, Any]) -> dict[str, Any]:
        if req.get("op") == "ping":
            return ping("standby", points_to, None)
        return unavailable(points_to)
    return answer


class Pki:
    """A CA, its file, and a client certificate (``agent-1``) as files."""

    def __init__(self, tmp: Path) -> None:
        self.ca = trustme.CA()
        self.cafile = str(tmp / "ca.pem")
        self.ca.cert_pem.write_to_path(self.cafile)
        client = self.ca.issue_cert("agent-1@example.org", common_name="agent-1")
        self.certfile, self.keyfile = str(tmp / "client.pem"), str(tmp / "client.key")
        for blob in client.cert_chain_pems:
            blob.write_to_path(self.certfile, append=True)
        client.private_key_pem.write_to_path(self.keyfile)

    def server(self, *names: str) -> ssl.SSLContext:
        """A daemon's TLS context: a certificate for ``names``, client certificates of
        this CA required."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*names).configure_cert(ctx)
        self.ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


@contextlib.contextmanager
def running(*daemons: FakeDaemon) -> Iterator[None]:
    """Stop the daemons however the test ends."""
    try:
        yield
    finally:
        for d in daemons:
            d.stop()

"""A small blocking client for nextcall daemons. Standard library only, so any
integration (an agent desktop, dialer glue) can vendor this one file.

    with Client("/run/nextcall.sock") as c:
        lease = c.call("next", agent="alice")["leases"][0]
        c.call("dispose", lease=lease["token"], code="NA")

Given several addresses (a high-availability deployment: one active daemon, standbys),
it connects to the active one and follows it when it moves:

    Client(["/run/nextcall.sock", "10.0.0.2:7443"], cafile="ca.pem",
           certfile="agent.pem", keyfile="agent.key")

An address is a Unix socket path, or ``host:port`` / ``[v6]:port`` for TCP (TLS unless
``tls=False``). docs/client.md describes the failover rules and what a resent request
means for each operation.
"""

from __future__ import annotations

import errno
import itertools
import json
import re
import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any

DEFAULT_SOCKET = "./run/nextcall.sock"
#: waits between connect attempts while the daemon's listen queue is full: doubling from
#: the first to the last, within the client's timeout
CONNECT_RETRY_FIRST_S = 0.001
CONNECT_RETRY_MAX_S = 0.05
#: how long a client with several addresses looks for the active daemon
DEFAULT_FAILOVER_TIMEOUT_S = 15.0
#: how long one address may take to connect and answer ``ping`` while the client looks
DEFAULT_CONNECT_TIMEOUT_S = 5.0
#: pauses between rounds over the addresses when none was active: doubling up to the last
FAILOVER_PAUSE_FIRST_S = 0.05
FAILOVER_PAUSE_MAX_S = 1.0

_HOST_PORT = re.compile(r"(?:\[(?P<v6>[0-9A-Za-z:.%]+)\]|(?P<host>[^:/\[\]\s]+)):(?P<port>\d{1,5})")


def parse_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` when ``address`` is a TCP address, None for a Unix socket path.

    Anything containing ``/`` or not of the form ``host:port`` / ``[v6]:port`` is a path,
    so ``./run/nextcall.sock`` and ``nextcall.sock`` stay paths.
    """
    m = _HOST_PORT.fullmatch(address)
    if m is None or "/" in address or not 0 < int(m["port"]) < 65536:
        return None
    return (m["v6"] or m["host"], int(m["port"]))


class ClientError(Exception):
    """The daemon refused a request; ``code``, ``message`` and ``field`` say why.

    ``active`` is the address of the active daemon when a daemon that is not serving
    (a standby) answered ``unavailable`` and knew it.
    """

    def __init__(self, code: str, message: str, field: str | None = None,
                 active: str | None = None) -> None:
        self.code = code
        self.message = message
        self.field = field
        self.active = active
        super().__init__(f"{code}: {message}" + (f" (field {field})" if field else ""))


class NoActiveDaemon(ConnectionError):
    """No address led to an active daemon within the failover timeout.

    A ``ConnectionError`` (an ``OSError``), like a refused connection to one daemon;
    ``tried`` maps each address tried in the last round to what it said or why it failed.
    """

    def __init__(self, tried: dict[str, str], waited_s: float) -> None:
        self.tried = dict(tried)
        what = "; ".join(f"{a}: {why}" for a, why in tried.items())
        super().__init__(f"no active nextcall daemon after {waited_s:g} s ({what})")


def _connect_unix(path: str, timeout: float | None) -> socket.socket:
    """A socket connected to ``path``, retrying a full listen queue within ``timeout``.

    A socket with a timeout connects without blocking, and a Unix socket whose listen
    queue is full then fails at once with ``EAGAIN``: the daemon is there, only busy
    accepting a burst of connections. That is retried, with a short growing pause. A
    refused or missing socket (no daemon listening) is not retried: it fails at once.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = CONNECT_RETRY_FIRST_S
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError as exc:
            s.close()
            if exc.errno != errno.EAGAIN or deadline is None or \
                    time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, CONNECT_RETRY_MAX_S)
            continue
        return s


def _why(exc: BaseException) -> str:
    """A short reason for a failed address, for ``NoActiveDaemon``."""
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        return exc.strerror
    return str(exc) or type(exc).__name__


def _is_active(answer: dict[str, Any]) -> bool:
    """A ``ping`` answer from a daemon that serves: ``state`` active, or no ``state`` at
    all (a daemon without high availability, or an older one)."""
    return bool(answer.get("ok")) and answer.get("state") in (None, "active")


class Client:
    """One connection to the active daemon; requests carry increasing ids and answers
    are matched by id.

    Args:
        address: a Unix socket path or ``host:port``, or a list of them.
        timeout: seconds each socket operation may take (None: no limit).
        failover_timeout: how long to look for an active daemon, at connect and after
            losing one. Default 15 s with several addresses; 0 with one. 0 means no
            failover: ``call`` never resends, and with one address ``connect`` sends no
            ``ping`` (the plain client of one daemon).
        connect_timeout: while looking, how long one address may take to accept the
            connection and answer ``ping`` (at most ``timeout``).
        tls: TLS for ``host:port`` addresses (False: plaintext, for loopback tests).
        cafile, certfile, keyfile, server_hostname: TLS: the CA that signs the
            daemons' certificates (default: the system's), this client's certificate
            and key, and the name to check the daemons' certificates against (default:
            the address's host).
        ssl_context: a ready TLS context instead of ``cafile``/``certfile``/``keyfile``.
    """

    def __init__(self, address: str | Sequence[str] = DEFAULT_SOCKET,
                 timeout: float | None = 30.0, *, failover_timeout: float | None = None,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S, tls: bool = True,
                 cafile: str | None = None, certfile: str | None = None,
                 keyfile: str | None = None, server_hostname: str | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.addresses = [address] if isinstance(address, str) else list(address)
        if not self.addresses or not all(self.addresses):
            raise ValueError("a Client needs at least one non-empty address")
        self.timeout = timeout
        self.failover_timeout = (failover_timeout if failover_timeout is not None else
                                 DEFAULT_FAILOVER_TIMEOUT_S if len(self.addresses) > 1 else 0.0)
        self.connect_timeout = connect_timeout if timeout is None else \
            min(connect_timeout, timeout)
        self.tls = tls
        self.cafile, self.certfile, self.keyfile = cafile, certfile, keyfile
        self.server_hostname = server_hostname
        #: how many times ``call`` reconnected after losing its daemon
        self.failovers = 0
        self._ssl = ssl_context
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._address: str | None = None
        self._hint: str | None = None
        self._ids = itertools.count(1)
        self._pending: dict[Any, dict[str, Any]] = {}
        self._sent: set[int] = set()
        self._subscriptions: dict[str, dict[str, Any]] = {}
        self._replay = False

    @property
    def address(self) -> str | None:
        """The address this client is connected to (None when not connected)."""
        return self._address if self._sock is not None else None

    @property
    def path(self) -> str:
        """The connected address, else the first one given (the name before lists)."""
        return self.address or self.addresses[0]

    @property
    def _chooses(self) -> bool:
        """Whether connecting asks each daemon whether it is the active one."""
        return len(self.addresses) > 1 or self.failover_timeout > 0

    def connect(self) -> Client:
        """Open the connection to the active daemon (``with Client(...)`` does this).

        With one address and no failover this is one connect, whose error is raised as
        is. Otherwise each address is asked ``ping`` in turn and the first active one
        kept; a standby's ``active`` address is tried next, and rounds repeat, with a
        short growing pause, until ``failover_timeout`` has passed.

        Raises:
            OSError: with one address and no failover: ``FileNotFoundError``,
                ``ConnectionRefusedError``, ``BlockingIOError`` (listen queue full for
                ``timeout``), a TLS error. Otherwise ``NoActiveDaemon``.
            ssl.SSLError: a TLS file could not be loaded.
        """
        self.close()
        if not self._chooses:
            sock = self._open(self.addresses[0], self.timeout)
            self._adopt(sock, sock.makefile("rb"), self.addresses[0])
            return self
        if self.tls and any(parse_address(a) for a in self.addresses):
            self._tls_context()  # a bad CA or key file fails here, once, with its own error
        self._discover(self.failover_timeout)
        return self

    def close(self) -> None:
        """Close the connection."""
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None
        self._sent.clear()

    def __enter__(self) -> Client:
        return self.connect() if self._sock is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, op: str, **fields: Any) -> int:
        """Send a request without waiting; returns its id (pipelining).

        Pipelined requests are never resent: a lost connection raises from ``receive``.
        """
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        rid = next(self._ids)
        line = json.dumps({"id": rid, "op": op, **fields}, separators=(",", ":")) + "\n"
        self._sock.sendall(line.encode())
        self._sent.add(rid)
        return rid

    def receive(self, rid: int) -> dict[str, Any]:
        """The answer to request ``rid`` (answers may arrive out of order).

        Raises:
            ConnectionError: the connection ended before the answer came.
        """
        if self._file is None:
            raise ConnectionError("not connected")
        while rid not in self._pending:
            line = self._file.readline()
            if not line:
                raise ConnectionError(f"the daemon at {self._address} closed the connection")
            msg = json.loads(line)
            if "event" in msg:
                continue
            self._pending[msg.get("id")] = msg
            self._sent.discard(msg.get("id"))
        return self._pending.pop(rid)

    def call(self, op: str, *, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its answer, following the active daemon.

        With failover on, a lost connection (closed, reset) or an ``unavailable`` answer
        from a daemon that no longer serves sends the same op and fields again, with a
        fresh id, to the active daemon found within ``failover_timeout``. A read that
        times out (``timeout``, else the client's) is not a lost connection: it raises.

        Raises:
            ClientError: the daemon answered with an error.
            NoActiveDaemon: the daemon was lost and no active one was found in time.
            ConnectionError: the connection was lost and the request may not be resent
                (no failover, pipelined requests in flight, a staged import).
        """
        if self._sock is None:
            self.connect()
        give_up_at: float | None = None
        while True:
            hint: str | None = None
            try:
                self._replay_subscriptions()
                msg = self._exchange(op, fields, timeout)
            except ConnectionError as exc:
                self._check_resendable(op, fields, exc)
            else:
                if msg.get("ok") or not self._moved(msg):
                    return self._result(op, fields, msg)
                self._check_resendable(op, fields, None)
                hint = msg["error"].get("active")
            if give_up_at is None:
                give_up_at = time.monotonic() + self.failover_timeout
            self._fail_over(hint, give_up_at)

    # ------------------------------------------------------------------ one exchange

    def _exchange(self, op: str, fields: dict[str, Any],
                  timeout: float | None) -> dict[str, Any]:
        """One request and its answer on the current connection (no failover)."""
        if self._sock is None:
            raise ConnectionError("not connected")
        sock = self._sock
        if timeout is not None:
            sock.settimeout(timeout)
        rid: int | None = None
        try:
            rid = self.send(op, **fields)
            return self.receive(rid)
        except ConnectionError:
            if rid is not None:
                self._sent.discard(rid)
            raise
        finally:
            if timeout is not None:
                sock.settimeout(self.timeout)

    def _result(self, op: str, fields: dict[str, Any], msg: dict[str, Any]) -> dict[str, Any]:
        """The answer, or its error raised; a subscription is kept to replay after a
        failover."""
        if not msg.get("ok"):
            err = msg.get("error") or {}
            raise ClientError(err.get("code", "unknown"), err.get("message", ""),
                              err.get("field"), err.get("active"))
        if op == "subscribe":
            self._subscriptions[json.dumps(fields, sort_keys=True)] = dict(fields)
        return msg

    def _moved(self, msg: dict[str, Any]) -> bool:
        """Whether an error answer means this daemon no longer serves: ``unavailable``
        naming the active daemon, or from a daemon whose ``ping`` now says standby (or
        that is gone). A storage failure of an active daemon is not a move."""
        err = msg.get("error") or {}
        if self.failover_timeout <= 0 or err.get("code") != "unavailable":
            return False
        if err.get("active"):
            return True
        try:
            return not _is_active(self._exchange("ping", {}, None))
        except OSError:
            return True

    def _check_resendable(self, op: str, fields: dict[str, Any],
                          lost: ConnectionError | None) -> None:
        """Raise unless the request may be sent again to another daemon.

        Raises:
            ConnectionError: ``lost`` itself without failover; a new one naming why the
                request is not resent (a ``ClientError`` answer is raised by the caller).
        """
        where = self._address
        if self.failover_timeout <= 0:
            if lost is not None:
                raise lost
            return
        if self._sent:
            raise ConnectionError(
                f"lost the daemon at {where} with {len(self._sent)} pipelined requests "
                "in flight; their outcome is unknown and nothing was resent") from lost
        if op == "records.import" and fields.get("stage"):
            raise ConnectionError(
                f"lost the daemon at {where} during the staged import "
                f"{fields['stage']!r}: the batches staged on that connection are gone; "
                "start the import again") from lost

    # ------------------------------------------------------------------ finding the active

    def _fail_over(self, hint: str | None, give_up_at: float) -> None:
        """Drop this connection and connect to the active daemon.

        Raises:
            NoActiveDaemon: none found before ``give_up_at``.
        """
        self.close()
        if hint:
            self._hint = hint
        self._discover(max(0.0, give_up_at - time.monotonic()))
        self.failovers += 1
        self._replay = bool(self._subscriptions)

    def _discover(self, wait_s: float) -> None:
        """Connect to the first active daemon, in rounds over the addresses, for up to
        ``wait_s`` (one round at least).

        Raises:
            NoActiveDaemon: no round found one.
        """
        deadline = time.monotonic() + wait_s
        pause = FAILOVER_PAUSE_FIRST_S
        while True:
            tried: dict[str, str] = {}
            if self._round(tried):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoActiveDaemon(tried, wait_s)
            time.sleep(min(pause, left))
            pause = min(pause * 2, FAILOVER_PAUSE_MAX_S)

    def _round(self, tried: dict[str, str]) -> bool:
        """Try the last named active, then each address in order, each once; an address
        a standby names is tried next. True when connected."""
        queue = ([self._hint] if self._hint else []) + self.addresses
        while queue:
            address = queue.pop(0)
            if address in tried:
                continue
            hint, tried[address] = self._try(address)
            if self._sock is not None:
                return True
            if hint and hint not in tried:
                self._hint = hint
                queue.insert(0, hint)
        return False

    def _try(self, address: str) -> tuple[str | None, str]:
        """Connect to ``address`` and ask ``ping``; keep the connection if it is active.

        Returns the active address the daemon named (or None) and what it said.
        """
        try:
            sock = self._open(address, self.connect_timeout)
        except OSError as exc:
            return None, _why(exc)
        file = sock.makefile("rb")
        try:
            sock.sendall(b'{"id":"probe","op":"ping"}\n')
            answer = self._first_answer(file)
        except (OSError, ValueError) as exc:
            file.close()
            sock.close()
            return None, _why(exc)
        if _is_active(answer):
            self._adopt(sock, file, address)
            return None, "active"
        file.close()
        sock.close()
        err = answer.get("error") or {}
        hint = answer.get("active") or err.get("active")
        hint = hint if isinstance(hint, str) and hint else None
        said = (f"{answer.get('state')}" if answer.get("ok") else
                f"{err.get('code')}: {err.get('message')}")
        return hint, said + (f" (active: {hint})" if hint else "")

    @staticmethod
    def _first_answer(file: Any) -> dict[str, Any]:
        """The first answer line (a daemon that refuses the connection answers with
        id null before closing, so the id is not matched)."""
        while True:
            line = file.readline()
            if not line:
                raise ConnectionError("closed the connection")
            msg = json.loads(line)
            if isinstance(msg, dict) and "event" not in msg:
                return msg

    def _open(self, address: str, timeout: float | None) -> socket.socket:
        """A socket connected to ``address``: TLS done for TCP unless plaintext."""
        tcp = parse_address(address)
        if tcp is None:
            return _connect_unix(address, timeout)
        s = socket.create_connection(tcp, timeout=timeout)
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                s = self._tls_context().wrap_socket(
                    s, server_hostname=self.server_hostname or tcp[0])
        except BaseException:
            s.close()
            raise
        return s

    def _tls_context(self) -> ssl.SSLContext:
        """The TLS context, made once: the daemons' CA and this client's certificate."""
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=self.cafile)
            if self.certfile:
                ctx.load_cert_chain(self.certfile, self.keyfile)
            self._ssl = ctx
        return self._ssl

    def _adopt(self, sock: socket.socket, file: Any, address: str) -> None:
        """Make ``sock`` this client's connection; a standby's hint has served."""
        sock.settimeout(self.timeout)
        self._sock, self._file, self._address = sock, file, address
        self._hint = None

    def _replay_subscriptions(self) -> None:
        """After a failover, subscribe again on the new connection (events sent while
        no daemon served are lost)."""
        if not self._replay:
            return
        for fields in list(self._subscriptions.values()):
            self._result("subscribe", fields, self._exchange("subscribe", fields, None))
        self._replay = False

"""A small blocking client for the nextcall socket. Standard library only, so any
integration (an agent desktop, dialer glue) can vendor this one file.

    with Client("/run/nextcall.sock") as c:
        lease = c.call("next", agent="alice")["leases"][0]
        c.call("dispose", lease=lease["token"], code="NA")
"""

from __future__ import annotations

import errno
import itertools
import json
import socket
import time
from typing import Any

DEFAULT_SOCKET = "./run/nextcall.sock"
#: waits between connect attempts while the daemon's listen queue is full: doubling from
#: the first to the last, within the client's timeout
CONNECT_RETRY_FIRST_S = 0.001
CONNECT_RETRY_MAX_S = 0.05


class ClientError(Exception):
    """The daemon refused a request; ``code``, ``message`` and ``field`` say why."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        self.code = code
        self.message = message
        self.field = field
        super().__init__(f"{code}: {message}" + (f" (field {field})" if field else ""))


class Client:
    """One connection; requests carry increasing ids and answers are matched by id."""

    def __init__(self, path: str = DEFAULT_SOCKET, timeout: float | None = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._ids = itertools.count(1)
        self._pending: dict[Any, dict[str, Any]] = {}

    def connect(self) -> Client:
        """Open the connection (``with Client(...)`` does this).

        A socket with a timeout connects without blocking, and a Unix socket whose listen
        queue is full then fails at once with ``EAGAIN``: the daemon is there, only busy
        accepting a burst of connections. That is retried, with a short growing pause,
        until ``timeout`` has passed. A refused or missing socket (no daemon listening) is
        not retried: it fails at once.

        Raises:
            OSError: ``FileNotFoundError``, ``ConnectionRefusedError``, or
                ``BlockingIOError`` when the queue stayed full for ``timeout``.
        """
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        pause = CONNECT_RETRY_FIRST_S
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            try:
                s.connect(self.path)
            except OSError as exc:
                s.close()
                if exc.errno != errno.EAGAIN or deadline is None or \
                        time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, CONNECT_RETRY_MAX_S)
                continue
            break
        self._sock = s
        self._file = s.makefile("rb")
        return self

    def close(self) -> None:
        """Close the connection."""
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None

    def __enter__(self) -> Client:
        return self.connect() if self._sock is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, op: str, **fields: Any) -> int:
        """Send a request without waiting; returns its id (pipelining)."""
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        rid = next(self._ids)
        line = json.dumps({"id": rid, "op": op, **fields}, separators=(",", ":")) + "\n"
        self._sock.sendall(line.encode())
        return rid

    def receive(self, rid: int) -> dict[str, Any]:
        """The answer to request ``rid`` (answers may arrive out of order)."""
        while rid not in self._pending:
            line = self._file.readline()
            if not line:
                raise ConnectionError("the daemon closed the connection")
            msg = json.loads(line)
            if "event" in msg:
                continue
            self._pending[msg.get("id")] = msg
        return self._pending.pop(rid)

    def call(self, op: str, *, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its answer.

        Raises:
            ClientError: the daemon answered with an error.
        """
        if timeout is not None and self._sock is not None:
            self._sock.settimeout(timeout)
        msg = self.receive(self.send(op, **fields))
        if timeout is not None and self._sock is not None:
            self._sock.settimeout(self.timeout)
        if not msg.get("ok"):
            err = msg.get("error") or {}
            raise ClientError(err.get("code", "unknown"), err.get("message", ""),
                              err.get("field"))
        return msg

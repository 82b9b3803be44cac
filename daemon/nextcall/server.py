"""The asyncio Unix-socket server: accept, frame, dispatch, answer.

Framing is newline-delimited JSON with a hard line limit. A well-framed bad request gets
an error and the connection stays; an oversize line loses the framing (asyncio drops the
buffer), so it gets ``too_large`` and the connection is closed. Requests on one
connection run concurrently (a long-polling ``next`` does not block a ``dispose`` behind
it), up to ``max_inflight``; they start in arrival order, and every change is applied to
the core before its first await, so pipelined requests take effect in order.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

from . import protocol as P
from .config import Settings
from .core.errors import NextcallError, TooLarge
from .service import Peer, Service, role_for

logger = logging.getLogger(__name__)

WRITE_TIMEOUT_S = 30.0
DRAIN_AT_BYTES = 256 * 1024
_ids = itertools.count(1)


def peer_credentials(writer: asyncio.StreamWriter) -> tuple[int, int, int]:
    """(pid, uid, gid) of the connected peer via SO_PEERCRED."""
    sock = writer.get_extra_info("socket")
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("=iII", raw)
        return pid, uid, gid
    except (OSError, AttributeError):
        return 0, -1, -1


class Connection:
    """One client connection: its reader loop, in-flight requests and a write lock."""

    def __init__(self, server: Server, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        pid, uid, gid = peer_credentials(writer)
        self.peer = Peer(next(_ids), pid, uid, gid,
                         role_for(server.settings, uid, gid))
        # event lines (subscribe) go through the same atomic line writer as answers
        self.peer.send = self.send
        self.tasks: set[asyncio.Task[None]] = set()
        self.sem = asyncio.Semaphore(server.settings.daemon.max_inflight)
        self.lock = asyncio.Lock()
        self.closing = False

    async def send(self, data: bytes) -> None:
        """Write one line. Writes are atomic on the loop; only a peer that stops reading
        (buffer past ``DRAIN_AT_BYTES``) is waited for, and dropped after the timeout."""
        w = self.writer
        if w.is_closing():
            return
        w.write(data)
        if w.transport.get_write_buffer_size() <= DRAIN_AT_BYTES:
            return
        async with self.lock:  # concurrent drain() calls are not allowed
            try:
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await w.drain()
            except (TimeoutError, ConnectionError):
                self.closing = True
                w.close()

    async def run(self) -> None:
        """Read lines until EOF, an oversize line, or shutdown."""
        service = self.server.service
        try:
            while not self.closing and not self.server.stopping:
                try:
                    line = await self.reader.readline()
                except ValueError:
                    # asyncio.LimitOverrunError surfaces as ValueError; the buffer is gone
                    await self.send(P.encode_error(None, TooLarge(
                        f"request lines are limited to {self.server.settings.daemon.max_line_bytes}"
                        " bytes; closing the connection", field=None)))
                    break
                except ConnectionError:
                    break
                if not line:
                    break
                if not line.endswith(b"\n"):
                    # EOF inside a line: the client is gone and the request incomplete
                    logger.info("request_truncated conn=%d bytes=%d", self.peer.conn_id,
                                len(line))
                    break
                if not line.strip():
                    continue
                await self.sem.acquire()
                task = asyncio.create_task(self.handle(line), name=f"req-{self.peer.conn_id}")
                self.tasks.add(task)
                task.add_done_callback(self._done)
        finally:
            # a long-polling next must not lease a record to a client that has left
            self.peer.gone.set()
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=self.server.drain_timeout_s)
            service.discard_connection(self.peer.conn_id)
            self.writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), 2.0)
            except (TimeoutError, ConnectionError, OSError):
                pass

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.sem.release()

    async def handle(self, line: bytes) -> None:
        """Decode, dispatch and answer one request; nothing escapes."""
        req_id: P.RequestId = None
        op = "?"
        metrics = self.server.metrics
        t0 = asyncio.get_running_loop().time()
        try:
            req_id, op, req = P.decode(line)
            body = await self.server.service.dispatch(op, req, self.peer)
            out = P.encode_ok(req_id, body)
            code = "ok"
        except NextcallError as err:
            req_id = getattr(err, "req_id", req_id)
            out = P.encode_error(req_id, err)
            code = err.code
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a bug must not take the connection down
            logger.exception("request_failed op=%s", op)
            out = P.encode_error(req_id, NextcallError("internal error; see the daemon log"))
            code = "internal"
        if metrics is not None:
            metrics(op, code, asyncio.get_running_loop().time() - t0)
        await self.send(out)


class Server:
    """Listens on a Unix socket (its own, or one handed over by systemd)."""

    def __init__(self, settings: Settings, service: Service,
                 metrics: Callable[[str, str, float], None] | None = None) -> None:
        self.settings = settings
        self.service = service
        self.metrics = metrics
        self.stopping = False
        self.drain_timeout_s = settings.daemon.drain_timeout_s
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[Connection] = set()
        self._conn_tasks: set[asyncio.Task[Any]] = set()
        self.path: str | None = None
        self._own_socket = False

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on ``sock`` (socket activation) or on the configured path."""
        # asyncio's limit counts the bytes before the newline: max_line_bytes includes it
        limit = self.settings.daemon.max_line_bytes - 1
        if sock is not None:
            sock.setblocking(False)
            extra: dict[str, Any] = {}
            if sys.version_info >= (3, 13):
                # never unlink a socket systemd owns (python/cpython#133354)
                extra["cleanup_socket"] = False
            self._server = await asyncio.start_unix_server(self._accept, sock=sock,
                                                           limit=limit, **extra)
            self.path = sock.getsockname() or "(inherited)"
            return
        path = self.settings.daemon.socket
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if os.path.exists(path):
            # a stale socket from a crash; refuse to steal a live one
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)
            else:
                probe.close()
                raise OSError(f"another daemon is listening on {path}")
            finally:
                probe.close()
        old = os.umask(0o777 & ~int(self.settings.daemon.socket_mode, 8))
        try:
            self._server = await asyncio.start_unix_server(self._accept, path=path,
                                                           limit=limit)
        finally:
            os.umask(old)
        os.chmod(path, int(self.settings.daemon.socket_mode, 8))
        self.path = path
        self._own_socket = True

    async def _accept(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        conn = Connection(self, reader, writer)
        self._conns.add(conn)
        task = asyncio.current_task()
        if task is not None:
            self._conn_tasks.add(task)
        try:
            await conn.run()
        finally:
            self._conns.discard(conn)
            if task is not None:
                self._conn_tasks.discard(task)

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), close connections."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.closing = True
        pending = [t for c in self._conns for t in c.tasks]
        if pending:
            await asyncio.wait(pending, timeout=self.drain_timeout_s)
        for conn in list(self._conns):
            conn.writer.close()
        if self._conn_tasks:
            await asyncio.wait(list(self._conn_tasks), timeout=self.drain_timeout_s)
        for t in list(self._conn_tasks):
            t.cancel()
        if self._own_socket and self.path and os.path.exists(self.path):
            os.unlink(self.path)

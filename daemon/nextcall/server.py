"""The asyncio server: accept, frame, dispatch, answer, on the Unix socket and, with
``[tcp]``, over TLS (``listeners.py``: where it listens; ``roles.py``: who a peer is).

A connection is an ``asyncio.Protocol``, not a stream: lines are cut from the bytes as
they arrive and dispatched at once, in arrival order, so every change is applied to the
core in the order the client sent it. A request whose answer waits for a commit (or a
database read, or a long poll) leaves a ``Reply`` behind and the next line is read
meanwhile; no task is made for a request unless its handler is a coroutine. Answers are
queued per connection and written together: after each line batch, after each group
commit, and otherwise once per loop iteration.

Framing is newline-delimited JSON with a hard line limit. A well-framed bad request gets
an error and the connection stays; a line over the limit cannot be resynchronised, so it
gets ``too_large`` and the connection is closed. A client that stops reading is paused
(flow control) and dropped after ``WRITE_TIMEOUT_S``.

Limits (docs/protocol.md#limits): at most ``max_connections`` connections (one more gets
an ``unavailable`` line and is closed); a request line must be complete within
``partial_line_timeout_s`` of its first byte; the answers queued for clients that do not
read are capped in total (``max_buffered_bytes``), the connections holding the most
dropped first.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, cast

from . import protocol as P
from .config import Settings
from .core.errors import BadRequest, NextcallError, TooLarge, Unavailable
from .limits import ConnectionObserver, Unobserved, to_drop
from .listeners import (
    HandshakeFailures,
    listen_tcp,
    listen_unix,
    reload_certificate,
    server_context,
)
from .ops import MODELS, REGISTRY, dispatch
from .ops.base import Body
from .pacing import CommitPacing
from .roles import TCP, TLS, UNIX, Peer, identify
from .service import Service

logger = logging.getLogger(__name__)

WRITE_TIMEOUT_S = 30.0
#: ``connection_refused`` is logged at most this often (a flood must not flood the log)
REFUSAL_LOG_EVERY_S = 10.0
_ids = itertools.count(1)


class Reply:
    """Answers one request, exactly once."""

    __slots__ = ("conn", "req_id", "op", "t0", "sent")

    def __init__(self, conn: Connection, req_id: P.RequestId, op: str, t0: float) -> None:
        self.conn = conn
        self.req_id = req_id
        self.op = op
        self.t0 = t0
        self.sent = False

    def __call__(self, result: Body | bytes | NextcallError) -> None:
        if self.sent:
            return
        self.sent = True
        code = "ok"
        try:
            if type(result) is bytes:
                data = P.encode_ok_raw(self.req_id, result)
            elif isinstance(result, NextcallError):
                data, code = P.encode_error(self.req_id, result), result.code
            else:
                data = P.encode_ok(self.req_id, result)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - every request gets exactly one answer line
            logger.exception("answer_unencodable op=%s", self.op)
            data, code = P.encode_internal(self.req_id), "internal"
        conn = self.conn
        metrics = conn.server.metrics
        if metrics is not None:
            metrics(self.op, code, conn.server.loop.time() - self.t0)
        conn.done_one(data)


class Connection(asyncio.Protocol):
    """One client connection: framing, in-flight accounting, queued answers."""

    def __init__(self, server: Server, kind: str = UNIX) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer = Peer(next(_ids), 0, -1, -1, transport=kind)
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._dirty = False
        self.inflight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self._eof = False
        self._read_paused = False
        self._write_paused = False
        self._write_timer: asyncio.TimerHandle | None = None
        self._processing = False
        #: the incomplete line in ``_buf`` began then (loop time); its deadline's timer
        self._partial_since = 0.0
        self._partial_timer: asyncio.TimerHandle | None = None
        #: turned away at accept (``max_connections``): never served nor counted
        self.refused = False
        #: buffered lines are to be processed at the next loop iteration
        self._process_soon = False
        self.closed = asyncio.Event()

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = cast(asyncio.Transport, transport)
        server = self.server
        if server.stopping:
            # a TLS handshake that finished after the stop began: never served
            self.refused = self.closing = True
            self.transport.close()
            return
        if len(server.conns) >= server.max_connections:
            self.refused = self.closing = True
            server.refuse(self.transport)
            return
        identify(self.peer, self.transport, server.settings)
        # event lines (subscribe) go through the same queue as answers
        self.peer.send = self.send
        server.conns.add(self)
        server.observer.connection_opened()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if not self._buf and data.find(b"\n") == len(data) - 1 and \
                len(data) <= self.server.max_line_bytes and \
                self.inflight < self.server.max_inflight:
            # the common case: exactly one whole request
            if len(data) > 1 and data.strip():
                self.inflight += 1
                self.server.inflight += 1
                self._processing = True
                try:
                    self.server.handle(self, data)
                finally:
                    self._processing = False
                if self.inflight >= self.server.max_inflight:
                    self._set_reading()
        else:
            # a new line starts in this chunk: the buffer was empty, or a line ended
            progress = not self._buf or b"\n" in data
            self._buf += data
            self._process()
            if self._buf or self._partial_timer is not None:
                self._watch_partial(progress)
        if self._dirty:
            self.flush()

    def eof_received(self) -> bool:
        if self._buf.strip():
            # EOF inside a line: the client is gone and the request incomplete
            logger.info("request_truncated conn=%d bytes=%d", self.peer.conn_id,
                        len(self._buf))
        self._buf.clear()
        self._eof = True
        # a half-closed client still gets the answers of what it sent, but a long poll
        # must not lease a record to a client that has left
        self.peer.gone = True
        self.server.service.end_waits(self.peer.conn_id)
        if self.inflight == 0 or self.peer.transport == TLS:
            self.flush()  # TLS has no half-close: the SSL protocol closes after this
            return False
        return True  # keep writing; closed once the last answer is out

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer.gone = True
        self.closing = True
        if self._write_timer is not None:
            self._write_timer.cancel()
        if self._partial_timer is not None:
            self._partial_timer.cancel()
        self.server.write_paused.discard(self)
        if self.refused:
            self.closed.set()
            return
        self.server.conns.discard(self)
        self.server.observer.connection_closed()
        self.server.service.discard_connection(self.peer.conn_id)
        self.closed.set()

    def pause_writing(self) -> None:
        # the client does not read: stop reading its requests, and give up on it if it
        # does not catch up
        self._write_paused = True
        self.server.write_paused.add(self)
        self._set_reading()
        self._write_timer = self.server.loop.call_later(WRITE_TIMEOUT_S, self._write_stuck)

    def resume_writing(self) -> None:
        self._write_paused = False
        self.server.write_paused.discard(self)
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self._set_reading()

    def _write_stuck(self) -> None:
        logger.warning("client_not_reading conn=%d action=closing", self.peer.conn_id)
        self.server.observer.connection_dropped("write_timeout")
        self.abort()

    # ------------------------------------------------------------------ requests
    def _process(self) -> None:
        self._processing = True
        try:
            self._process_lines()
        finally:
            self._processing = False

    def _process_lines(self) -> None:
        buf = self._buf
        limit = self.server.max_line_bytes
        max_inflight = self.server.max_inflight
        start = 0
        while self.inflight < max_inflight and not self.closing:
            i = buf.find(b"\n", start)
            if i < 0:
                break
            if i + 1 - start > limit:
                start = len(buf)
                self._too_large(limit)
                break
            line = bytes(buf[start:i + 1])
            start = i + 1
            if line.strip():
                self.inflight += 1
                self.server.inflight += 1
                self.server.handle(self, line)
        if start:
            del buf[:start]
        if len(buf) >= limit and not self.closing and buf.find(b"\n", 0, limit) < 0:
            buf.clear()
            self._too_large(limit)
        self._set_reading()

    def _too_large(self, limit: int) -> None:
        self.server.observer.connection_dropped("too_large")
        self.queue(P.encode_error(None, TooLarge(
            f"request lines are limited to {limit} bytes; closing the connection",
            field=None)))
        self.close()

    def _watch_partial(self, progress: bool) -> None:
        """After reading: an incomplete line in the buffer must be completed within
        ``partial_line_timeout_s`` of its first byte (one timer, re-armed lazily); a
        completed line restarts the count for the next one."""
        if not self._buf or self.closing:
            if self._partial_timer is not None:
                self._partial_timer.cancel()
                self._partial_timer = None
            return
        loop = self.server.loop
        if self._partial_timer is None:
            self._partial_since = loop.time()
            self._partial_timer = loop.call_later(self.server.partial_line_timeout_s,
                                                  self._partial_due)
        elif progress:
            self._partial_since = loop.time()

    def _partial_due(self) -> None:
        self._partial_timer = None
        if not self._buf or self.closing:
            return
        loop, timeout = self.server.loop, self.server.partial_line_timeout_s
        if self._read_paused or b"\n" in self._buf:
            # the daemon stopped reading, not the client: its time starts again
            self._partial_since = loop.time()
        left = self._partial_since + timeout - loop.time()
        if left > 0:
            self._partial_timer = loop.call_later(left, self._partial_due)
            return
        logger.info("request_incomplete conn=%d bytes=%d timeout_s=%g action=closing",
                    self.peer.conn_id, len(self._buf), timeout)
        self._buf.clear()
        self.server.observer.connection_dropped("partial_line")
        self.queue(P.encode_error(None, BadRequest(
            f"request line not completed within {timeout:g} s; closing the connection",
            field=None)))
        self.close()

    def _set_reading(self) -> None:
        t = self.transport
        if t is None or self.closing:
            return
        want_pause = self._write_paused or self.inflight >= self.server.max_inflight
        if want_pause and not self._read_paused:
            self._read_paused = True
            t.pause_reading()
        elif not want_pause and self._read_paused:
            self._read_paused = False
            t.resume_reading()
            # the daemon held the rest of a partial line back: its time starts now
            self._partial_since = self.server.loop.time()

    def run_task(self, coro: Coroutine[Any, Any, Body], reply: Reply) -> None:
        """Run an async handler; its result (or error) answers ``reply``."""
        task = self.server.loop.create_task(_answer(coro, reply),
                                            name=f"req-{self.peer.conn_id}-{reply.op}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def done_one(self, data: bytes) -> None:
        """One request answered: queue its line, read on if we had paused."""
        self.inflight -= 1
        self.server.inflight -= 1
        self._out.append(data)
        if not self._dirty:
            self._dirty = True
            self.server.dirty(self)
        if self._processing:
            return  # answered while its line was being dispatched: _process reads on
        if self._buf and not self.closing:
            # never from inside the caller: an answer may come from a commit made while
            # another handler runs (a lone write commits at once), and that handler's
            # instant and state must not change under it
            if not self._process_soon:
                self._process_soon = True
                self.server.loop.call_soon(self._process_later)
        elif self._read_paused:
            self._set_reading()
        if self._eof and self.inflight == 0:
            self.flush()
            self.close()

    def _process_later(self) -> None:
        self._process_soon = False
        if self._buf and not self.closing and not self._processing:
            self._process()

    # ------------------------------------------------------------------ writing
    def queue(self, data: bytes) -> None:
        """Queue one line; it is written with the others of this loop iteration."""
        self._out.append(data)
        if not self._dirty:
            self._dirty = True
            self.server.dirty(self)

    def flush(self) -> None:
        """Write what is queued, in one write."""
        self._dirty = False
        out = self._out
        if not out:
            return
        self._out = []
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(out[0] if len(out) == 1 else b"".join(out))
        if self._write_paused:
            self.server.check_buffered()

    def buffered(self) -> int:
        """Bytes of answers written and not yet taken by the kernel (or still queued)."""
        t = self.transport
        queued = sum(map(len, self._out))
        return queued if t is None else queued + t.get_write_buffer_size()

    async def send(self, data: bytes) -> None:
        """Write one event line (``subscribe``)."""
        self.queue(data)
        self.flush()

    def close(self) -> None:
        """Close after writing what is queued."""
        self.closing = True
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now."""
        self.closing = True
        self.server.write_paused.discard(self)
        if self.transport is not None:
            self.transport.abort()


async def _answer(coro: Coroutine[Any, Any, Body], reply: Reply) -> None:
    try:
        body = await coro
    except NextcallError as err:
        reply(err)
    except asyncio.CancelledError:
        reply(Unavailable("the daemon is stopping"))
        raise
    except Exception:  # noqa: BLE001 - a bug must not take the connection down
        logger.exception("request_failed op=%s", reply.op)
        reply(NextcallError("internal error; see the daemon log"))
    else:
        reply(body)
    reply.conn.flush()


class Server:
    """Listens on a Unix socket (its own, or one handed over by systemd)."""

    def __init__(self, settings: Settings, service: Service,
                 metrics: Callable[[str, str, float], None] | None = None,
                 observer: ConnectionObserver | None = None) -> None:
        self.settings = settings
        self.service = service
        self.metrics = metrics
        self.observer: ConnectionObserver = observer or Unobserved()
        self.stopping = False
        d = settings.daemon
        self.drain_timeout_s = d.drain_timeout_s
        self.max_line_bytes = d.max_line_bytes
        self.max_inflight = d.max_inflight
        self.max_connections = d.max_connections
        self.partial_line_timeout_s = d.partial_line_timeout_s
        self.max_buffered_bytes = d.max_buffered_bytes
        #: connections whose client does not keep up (the transport paused our writes):
        #: only they hold more than a transport's high-water mark of answers
        self.write_paused: set[Connection] = set()
        self._refused_since_log = 0
        self._refusal_logged_at = -REFUSAL_LOG_EVERY_S
        #: requests read and not yet answered, on every connection
        self.inflight = 0
        #: inline commits or the writer thread (``SqlStore.commit_now_when``)
        self.pacing = CommitPacing()
        #: the Unix listener, then the TCP one (``[tcp]``)
        self._servers: list[asyncio.AbstractServer] = []
        #: the TCP listener's bound (host, port) (port 0 in the config: the one chosen)
        self.tcp_address: tuple[str, int] | None = None
        #: its TLS context, for certificate reloads (None: no TLS listener)
        self.tls_context: ssl.SSLContext | None = None
        self.conns: set[Connection] = set()
        self._dirty: list[Connection] = []
        self._flush_handle: asyncio.Handle | None = None
        self.path: str | None = None
        self._own_socket = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the server runs on."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # ------------------------------------------------------------------ dispatch
    def handle(self, conn: Connection, line: bytes) -> None:
        """Decode and dispatch one request line; exactly one answer follows."""
        t0 = self.loop.time()
        try:
            req_id, op, req = P.decode(line, MODELS)
        except NextcallError as err:
            reply = Reply(conn, getattr(err, "req_id", None), "?", t0)
            reply(err)
            return
        except Exception:  # noqa: BLE001 - a decoder bug still gets its one answer
            logger.exception("request_failed op=?")
            Reply(conn, None, "?", t0)(NextcallError("internal error; see the daemon log"))
            return
        reply = Reply(conn, req_id, op, t0)
        service = self.service
        try:
            if not service.ready:
                raise Unavailable("the daemon is starting")
            dispatch(service, REGISTRY[op], req, conn.peer, reply, conn.run_task)
        except NextcallError as err:
            reply(err)
        except Exception:  # noqa: BLE001 - a bug must not take the connection down
            logger.exception("request_failed op=%s", op)
            reply(NextcallError("internal error; see the daemon log"))

    def calm(self) -> bool:
        """Whether this write may commit at once on the loop (``pacing.CommitPacing``)."""
        return self.pacing.calm(self.inflight)

    def dirty(self, conn: Connection) -> None:
        """``conn`` has answers queued: write them before this loop iteration ends."""
        self._dirty.append(conn)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every connection's queued answers (one write each)."""
        self._flush_handle = None
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.flush()

    # ------------------------------------------------------------------ limits
    def refuse(self, transport: asyncio.Transport) -> None:
        """``max_connections`` are open: one error line, then close (logged at most every
        ``REFUSAL_LOG_EVERY_S``, with the number refused meanwhile)."""
        self.observer.connection_refused()
        transport.write(P.encode_error(None, Unavailable(
            f"too many connections (max_connections = {self.max_connections}); "
            "try again later")))
        transport.close()
        self._refused_since_log += 1
        now = self.loop.time()
        if now - self._refusal_logged_at >= REFUSAL_LOG_EVERY_S:
            logger.warning("connection_refused reason=max_connections limit=%d refused=%d",
                           self.max_connections, self._refused_since_log)
            self._refusal_logged_at, self._refused_since_log = now, 0

    def check_buffered(self) -> None:
        """Keep the answers buffered for clients that do not read under
        ``max_buffered_bytes`` in total: drop the connections holding the most first (the
        others, and every client that reads, go on)."""
        if not self.write_paused:
            return
        limit = self.max_buffered_bytes
        held = [(c.buffered(), c) for c in self.write_paused]
        total = sum(size for size, _ in held)
        for size, conn in to_drop(held, limit) if total > limit else ():
            logger.warning("client_not_reading conn=%d buffered_bytes=%d total_bytes=%d "
                           "limit=%d action=dropping", conn.peer.conn_id, size, total, limit)
            self.observer.connection_dropped("buffered_output")
            conn.abort()

    # ------------------------------------------------------------------ lifecycle
    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on ``sock`` (socket activation) or on the configured path, then on
        ``[tcp] listen`` when set.

        Raises:
            OSError: a socket cannot be bound; ValueError: a ``[tcp]`` file no longer
            loads. What was listening is closed by ``stop``.
        """
        loop, cfg, tcp = self.loop, self.settings.daemon, self.settings.tcp
        server, self.path, self._own_socket = await listen_unix(
            loop, lambda: Connection(self), cfg, sock)
        self._servers.append(server)
        if not tcp.active:
            return
        if tcp.tls:
            self.tls_context = server_context(tcp, HandshakeFailures(self.observer))
        kind = TLS if tcp.tls else TCP
        server, self.tcp_address = await listen_tcp(
            loop, lambda: Connection(self, kind), tcp, cfg, self.tls_context)
        self._servers.append(server)
        logger.info("tcp_listening address=%s port=%d transport=%s", *self.tcp_address, kind)

    def apply_settings(self, settings: Settings) -> None:
        """A reload: new ``[auth]`` for connections opened from now on, and the TLS
        certificate read again from its files (``[tcp]`` itself needs a restart)."""
        self.settings = settings
        if self.tls_context is not None:
            reload_certificate(self.tls_context, settings.tcp)

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), close connections."""
        self.stopping = True
        for server in self._servers:
            server.close()
        conns = list(self.conns)
        for conn in conns:
            conn.closing = True
            if conn.transport is not None and not conn._read_paused:
                conn.transport.pause_reading()
        loop = self.loop
        deadline = loop.time() + self.drain_timeout_s
        while any(c.inflight for c in conns) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in conns:
            for t in list(conn.tasks):
                t.cancel()
            conn.flush()
            if conn.transport is not None:
                conn.transport.close()
        if conns:
            await asyncio.wait([loop.create_task(c.closed.wait()) for c in conns],
                               timeout=self.drain_timeout_s)
        if self._own_socket and self.path and os.path.exists(self.path):
            os.unlink(self.path)

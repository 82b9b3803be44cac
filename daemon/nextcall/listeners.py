"""Where the server listens: its Unix socket (its own, or the one systemd hands over) and
the optional TCP listener of ``[tcp]``, TLS with client certificates or, on loopback only,
plaintext. Every listener feeds the same ``server.Connection`` protocol: one framing, one
set of limits, one protocol.

The TLS handshake is the event loop's (asyncio's or uvloop's SSL protocol): a connection
exists for the server only once its client has shown a certificate that ``client_cafile``
signed, so ``max_connections`` counts served clients, and a handshake must finish within
``partial_line_timeout_s`` (the same bound as a request line's). Both loops drop a failed
handshake silently; the one hook both call is the context's SSL object class, so its
``do_handshake`` reports each failure: counted (``nextcall_tls_handshake_failures_total``)
and logged at most once every ``FAILURE_LOG_EVERY_S`` (a scanner must not flood the log).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any

from .config import DaemonCfg
from .files import make_dirs, socket_dir_mode
from .limits import ConnectionObserver, listen_backlog
from .tlscfg import MIN_TLS, TcpCfg, load_key_pair

logger = logging.getLogger(__name__)

#: ``tls_handshake_failed`` is logged at most this often, with the count since the last
FAILURE_LOG_EVERY_S = 10.0
#: how long a closing TLS connection waits for the client's close_notify after sending
#: its own (the loop's default is 30 s). Its answers are written by then; an idle client
#: (an agent between calls reads nothing) would otherwise hold every stop that long.
TLS_SHUTDOWN_S = 1.0

Factory = Callable[[], asyncio.BaseProtocol]


async def listen_unix(loop: asyncio.AbstractEventLoop, factory: Factory, cfg: DaemonCfg,
                      sock: socket.socket | None) -> tuple[asyncio.AbstractServer, str, bool]:
    """Listen on ``sock`` (socket activation) or on ``cfg.socket``; returns the server,
    the path, and whether the daemon made the socket file (and so removes it at stop).

    Raises:
        OSError: another daemon listens on the path, or it cannot be bound.
    """
    backlog = listen_backlog(cfg.listen_backlog)
    if sock is not None:
        sock.setblocking(False)
        extra: dict[str, Any] = {}
        if sys.version_info >= (3, 13):
            # never unlink a socket systemd owns (python/cpython#133354)
            extra["cleanup_socket"] = False
        # asyncio listens again with this backlog (its default would be 100)
        server = await loop.create_unix_server(factory, sock=sock, backlog=backlog, **extra)
        return server, sock.getsockname() or "(inherited)", False
    path = cfg.socket
    socket_mode = int(cfg.socket_mode, 8)
    make_dirs(os.path.dirname(os.path.abspath(path)), socket_dir_mode(socket_mode))
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
    old = os.umask(0o777 & ~socket_mode)
    try:
        server = await loop.create_unix_server(factory, path=path, backlog=backlog)
    finally:
        os.umask(old)
    os.chmod(path, socket_mode)
    return server, path, True


async def listen_tcp(loop: asyncio.AbstractEventLoop, factory: Factory, tcp: TcpCfg,
                     cfg: DaemonCfg, ctx: ssl.SSLContext | None
                     ) -> tuple[asyncio.AbstractServer, tuple[str, int]]:
    """Listen on ``[tcp] listen``, with TLS when ``ctx`` is given; returns the server and
    the (host, port) it is bound to (the port the kernel chose for port 0).

    Raises:
        OSError: the address cannot be bound.
    """
    host, port = tcp.address()
    tls: dict[str, Any] = {}
    if ctx is not None:
        tls = {"ssl": ctx, "ssl_handshake_timeout": cfg.partial_line_timeout_s,
               "ssl_shutdown_timeout": min(TLS_SHUTDOWN_S, cfg.drain_timeout_s)}
    server = await loop.create_server(factory, host, port,
                                      backlog=listen_backlog(cfg.listen_backlog), **tls)
    bound = server.sockets[0].getsockname()  # uvloop's server has its sockets too
    return server, (bound[0], bound[1])


class HandshakeFailures:
    """Counts failed TLS handshakes and logs them, one line at most every
    ``FAILURE_LOG_EVERY_S`` with the number since the last. Called from inside the SSL
    protocol: never raises."""

    def __init__(self, observer: ConnectionObserver) -> None:
        self.observer = observer
        self._since_log = 0
        self._logged_at = -FAILURE_LOG_EVERY_S

    def __call__(self, exc: ssl.SSLError) -> None:
        try:
            self.observer.tls_handshake_failed()
            self._since_log += 1
            now = time.monotonic()
            if now - self._logged_at < FAILURE_LOG_EVERY_S:
                return
            # OpenSSL's reason code names the failure (PEER_DID_NOT_RETURN_A_CERTIFICATE,
            # CERTIFICATE_VERIFY_FAILED, ...); only a verification failure has detail
            reason = getattr(exc, "reason", None) or type(exc).__name__
            detail = getattr(exc, "verify_message", None) or ""
            logger.warning("tls_handshake_failed reason=%s detail=%r failed=%d",
                           reason, detail, self._since_log)
            self._logged_at, self._since_log = now, 0
        except Exception:  # noqa: BLE001 - a report must not break the SSL protocol
            logger.debug("tls_handshake_report_failed", exc_info=True)


def _reporting(report: Callable[[ssl.SSLError], None]) -> type[ssl.SSLObject]:
    """An SSL object class whose handshake reports its failure (not its "want more
    bytes" steps) before raising it on, unchanged."""

    class ReportingSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise
            except ssl.SSLError as exc:
                report(exc)
                raise

    return ReportingSSLObject


def server_context(tcp: TcpCfg, report: Callable[[ssl.SSLError], None]) -> ssl.SSLContext:
    """The TLS server context of ``[tcp]``: TLS 1.2 or later, the daemon's certificate,
    and a client certificate required and verified against ``client_cafile``.

    Raises:
        ValueError: a file no longer loads (the config checked it when it was read).
    """
    if not (tcp.certfile and tcp.keyfile and tcp.client_cafile):
        raise ValueError("[tcp] TLS needs certfile, keyfile and client_cafile")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_TLS
    ctx.verify_mode = ssl.CERT_REQUIRED
    load_key_pair(tcp.certfile, tcp.keyfile, ctx)
    try:
        ctx.load_verify_locations(cafile=tcp.client_cafile)
    except (OSError, ValueError) as exc:
        raise ValueError(f"tcp.client_cafile: cannot load {tcp.client_cafile!r}: {exc}"
                         ) from None
    ctx.sslobject_class = _reporting(report)
    return ctx


def reload_certificate(ctx: ssl.SSLContext, tcp: TcpCfg) -> bool:
    """Load ``certfile`` and ``keyfile`` again into the live ``ctx``, for the handshakes
    that follow (a renewed certificate at the same paths, without a restart). They are
    loaded into a throwaway context first: a pair that does not load, or a key that is not
    the certificate's, leaves ``ctx`` as it was. Returns whether it was reloaded (logged
    either way)."""
    if not (tcp.certfile and tcp.keyfile):
        return False
    try:
        load_key_pair(tcp.certfile, tcp.keyfile)
        load_key_pair(tcp.certfile, tcp.keyfile, ctx)
    except ValueError as exc:
        logger.error("tls_certificate_reload_failed problem=%r action=keeping_old", str(exc))
        return False
    logger.info("tls_certificate_reloaded certfile=%s", tcp.certfile)
    return True

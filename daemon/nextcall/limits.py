"""Connection limits the server enforces (docs/protocol.md#limits), as far as they need no
socket: the listen backlog, which connections to drop when the answers queued for
clients that do not read exceed ``max_buffered_bytes``, and what the server reports about
connections (the metrics implement it). Standard library only."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol, TypeVar

logger = logging.getLogger(__name__)

#: the kernel's cap on a listen backlog (a larger request is silently cut to it)
SOMAXCONN_PATH = "/proc/sys/net/core/somaxconn"
#: why the daemon closed a connection itself (the label of the dropped counter):
#: a line over ``max_line_bytes``, a line not completed in ``partial_line_timeout_s``, a
#: client that read nothing for the write timeout, over ``max_buffered_bytes`` in total
DROP_REASONS = ("too_large", "partial_line", "write_timeout", "buffered_output")

C = TypeVar("C")


class ConnectionObserver(Protocol):
    """What the server reports about connections. Called on the event loop: be quick,
    never raise."""

    def connection_opened(self) -> None:
        """A connection was accepted and is served."""

    def connection_closed(self) -> None:
        """A served connection ended."""

    def connection_refused(self) -> None:
        """A connection was refused: ``max_connections`` were open."""

    def connection_dropped(self, reason: str) -> None:
        """The daemon closed a connection for ``reason`` (one of ``DROP_REASONS``)."""

    def tls_handshake_failed(self) -> None:
        """A TLS client was refused in the handshake (no certificate, an unknown CA, not
        TLS at all)."""


class Unobserved:
    """The observer when metrics are off: ignores everything."""

    def connection_opened(self) -> None:
        """Ignored."""

    def connection_closed(self) -> None:
        """Ignored."""

    def connection_refused(self) -> None:
        """Ignored."""

    def connection_dropped(self, reason: str) -> None:
        """Ignored."""

    def tls_handshake_failed(self) -> None:
        """Ignored."""


def listen_backlog(configured: int, somaxconn_path: str = SOMAXCONN_PATH) -> int:
    """The backlog to listen with: ``configured``, or the kernel's ``somaxconn`` when that
    is smaller (the kernel would cut it silently; this way the log says so)."""
    try:
        with open(somaxconn_path, encoding="ascii") as f:
            cap = int(f.read())
    except (OSError, ValueError):
        return configured
    if 0 < cap < configured:
        logger.info("listen_backlog_capped configured=%d somaxconn=%d", configured, cap)
        return cap
    return configured


def to_drop(buffered: Iterable[tuple[int, C]], limit: int) -> list[tuple[int, C]]:
    """Which connections to drop so that the bytes they hold, summed, fall to ``limit``
    or below: those holding the most first. ``buffered`` pairs each connection with its
    bytes; the answer keeps those pairs (none when the total is within the limit).

    Dropping the largest first frees the most memory for the fewest dropped clients, and
    never touches a client that reads (it holds no more than a transport's high-water
    mark, and is not counted).
    """
    pairs = list(buffered)
    total = sum(size for size, _ in pairs)
    if total <= limit:
        return []
    pairs.sort(key=lambda pair: pair[0], reverse=True)
    out = []
    for pair in pairs:
        if total <= limit:
            break
        out.append(pair)
        total -= pair[0]
    return out

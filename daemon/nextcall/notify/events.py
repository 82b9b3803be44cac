"""Which connections receive which agents' events (the ``subscribe`` op).

Subscriptions live only as long as their connection: the server forgets them when it
closes (``Service.discard_connection``), so an event is never written to a dead peer
and nothing about them is persisted. One connection may subscribe for several agents,
and one agent may be subscribed on several connections (a desktop and a phone).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .. import protocol as P

logger = logging.getLogger(__name__)

#: writes one line to a connection (``server.Connection.send``)
Sender = Callable[[bytes], Awaitable[None]]


class Subscriptions:
    """Connections by agent, and agents by connection. Only the event loop touches it."""

    def __init__(self) -> None:
        self._senders: dict[int, Sender] = {}
        self._agents_of: dict[int, set[str]] = {}
        self._conns_of: dict[str, set[int]] = {}

    def add(self, conn_id: int, agent: str, send: Sender) -> int:
        """Subscribe connection ``conn_id`` to ``agent``'s events; returns how many
        connections now receive them."""
        self._senders[conn_id] = send
        self._agents_of.setdefault(conn_id, set()).add(agent)
        conns = self._conns_of.setdefault(agent, set())
        conns.add(conn_id)
        return len(conns)

    def discard(self, conn_id: int) -> None:
        """Forget every subscription of a closed connection."""
        self._senders.pop(conn_id, None)
        for agent in self._agents_of.pop(conn_id, ()):
            conns = self._conns_of.get(agent)
            if conns is not None:
                conns.discard(conn_id)
                if not conns:
                    del self._conns_of[agent]

    def connections(self, agent: str) -> int:
        """How many connections receive ``agent``'s events."""
        return len(self._conns_of.get(agent, ()))

    async def publish(self, event: str, body: dict[str, Any], agents: Iterable[str]) -> int:
        """Send one ``event`` line to every connection subscribed to any of ``agents``
        (once per connection, naming the subscribed agents it is for in ``agents``).
        Returns the number of connections written to."""
        targets: dict[int, list[str]] = {}
        for agent in sorted(set(agents)):
            for conn_id in self._conns_of.get(agent, ()):
                targets.setdefault(conn_id, []).append(agent)
        sends = []
        for conn_id, names in targets.items():
            send = self._senders.get(conn_id)
            if send is not None:
                sends.append(send(P.encode_event(event, {**body, "agents": names})))
        results = await asyncio.gather(*sends, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                logger.warning("event_send_failed event=%s error=%r", event, r)
        return sum(1 for r in results if not isinstance(r, BaseException))

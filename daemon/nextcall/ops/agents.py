"""Agents: who works which campaigns and teams, and who hears their reminders.

A login is durable (an ``agents`` row) so that a restart keeps who works where; a logout
sends the agent's personal-then-team callbacks to its team.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import protocol as P
from ..core import transitions
from ..core.errors import NotFound, Unavailable
from ..roles import Peer
from .base import Body, Reply

if TYPE_CHECKING:
    from ..service import Service

logger = logging.getLogger(__name__)


def login(svc: Service, req: P.LoginReq, peer: Peer, reply: Reply) -> None:
    """``agent.login``: the campaigns and teams an agent works (persisted)."""
    s, changes = transitions.login(svc.engine, req.agent, req.campaigns, req.teams,
                                   svc.clock())
    svc.notify()
    svc.commit_then(changes, reply, lambda: {"agent": req.agent,
                                              "campaigns": list(s.campaigns),
                                              "teams": list(s.teams)})


def logout(svc: Service, req: P.LogoutReq, peer: Peer, reply: Reply) -> None:
    """``agent.logout``: the agent's personal-then-team callbacks go to its team."""
    s = svc.engine.agents.get(req.agent)
    if s is None:
        raise NotFound(f"agent {req.agent!r} never logged in", field="agent")
    changes = transitions.logout(svc.engine, req.agent, svc.clock())
    svc.notify()
    svc.commit_then(changes, reply, lambda: {"agent": req.agent, "logged_in": False})


def subscribe(svc: Service, req: P.SubscribeReq, peer: Peer) -> Body:
    """``subscribe``: this connection receives ``agent``'s reminder events."""
    if peer.send is None:
        raise Unavailable("this connection cannot carry events")
    n = svc.subscriptions.add(peer.conn_id, req.agent, peer.send)
    logger.info("events_subscribed conn=%d agent_connections=%d", peer.conn_id, n)
    return {"agent": req.agent, "subscribed": True, "connections": n, "events": ["reminder"]}

"""Agents: who works which campaigns and teams, and who hears their reminders.

A login is durable (an ``agents`` row) so that a restart keeps who works where; a logout
sends the agent's personal-then-team callbacks to its team.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from ..core import transitions
from ..core.errors import NotFound, Unavailable
from ..protocol import Name, Request
from ..roles import Peer
from .base import Body, Reply

if TYPE_CHECKING:
    from ..service import Service

logger = logging.getLogger(__name__)


class LoginReq(Request):
    """``agent.login``."""

    agent: Name
    campaigns: Annotated[list[Name], Field(min_length=1, max_length=100)]
    teams: Annotated[list[Name], Field(max_length=100)] = []


class LogoutReq(Request):
    """``agent.logout``."""

    agent: Name


class SubscribeReq(Request):
    """``subscribe``: send ``agent``'s reminder events on this connection until it
    closes (a connection may subscribe for several agents)."""

    agent: Name


def login(svc: Service, req: LoginReq, peer: Peer, reply: Reply) -> None:
    """``agent.login``: the campaigns and teams an agent works (persisted)."""
    s, changes = transitions.login(svc.engine, req.agent, req.campaigns, req.teams,
                                   svc.clock())
    svc.notify()
    svc.commit_then(changes, reply, lambda: {"agent": req.agent,
                                              "campaigns": list(s.campaigns),
                                              "teams": list(s.teams)})


def logout(svc: Service, req: LogoutReq, peer: Peer, reply: Reply) -> None:
    """``agent.logout``: the agent's personal-then-team callbacks go to its team."""
    s = svc.engine.agents.get(req.agent)
    if s is None:
        raise NotFound(f"agent {req.agent!r} never logged in", field="agent")
    changes = transitions.logout(svc.engine, req.agent, svc.clock())
    svc.notify()
    svc.commit_then(changes, reply, lambda: {"agent": req.agent, "logged_in": False})


def subscribe(svc: Service, req: SubscribeReq, peer: Peer) -> Body:
    """``subscribe``: this connection receives ``agent``'s reminder events."""
    if peer.send is None:
        raise Unavailable("this connection cannot carry events")
    n = svc.subscriptions.add(peer.conn_id, req.agent, peer.send)
    logger.info("events_subscribed conn=%d agent_connections=%d", peer.conn_id, n)
    return {"agent": req.agent, "subscribed": True, "connections": n, "events": ["reminder"]}
